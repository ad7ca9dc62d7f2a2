namespace DeltaMigrate.Engine.Transport;

/// <summary>How a Data frame's payload is packed on the wire (its id is in the frame's flags, see Protocol.cs).</summary>
public enum WireCodec : byte
{
    Raw = 0,
    Lz4 = 1,
    Zstd = 2,
}
