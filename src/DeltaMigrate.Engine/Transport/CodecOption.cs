namespace DeltaMigrate.Engine.Transport;

/// <summary>A codec and, for zstd, its level: one choice the sender can make for a frame.</summary>
public readonly record struct CodecOption(WireCodec Codec, int Level = 0)
{
    public static readonly CodecOption Raw = new(WireCodec.Raw);
    public static readonly CodecOption Lz4 = new(WireCodec.Lz4);

    public static CodecOption Zstd(int level) => new(WireCodec.Zstd, level);

    /// <summary>"raw", "lz4", "zstd 3": the name in results and logs.</summary>
    public string Name => Codec switch
    {
        WireCodec.Raw => "raw",
        WireCodec.Lz4 => "lz4",
        _ => Level == 0 ? "zstd" : $"zstd {Level}", // the receiver does not know the level
    };

    public override string ToString() => Name;
}
