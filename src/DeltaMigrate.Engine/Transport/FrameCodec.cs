using DeltaMigrate.Engine.Tunnel;
using K4os.Compression.LZ4;
using ZstdSharp;

namespace DeltaMigrate.Engine.Transport;

/// <summary>
/// Packs frame payloads with one <see cref="CodecOption"/> (sender). zstd is ZstdSharp, the managed port:
/// same ratio as the native libzstd and within the noise of its speed here, with no native library to
/// ship into PowerShell (docs/performance.md). Not thread-safe: one per sender.
/// </summary>
internal sealed class FrameEncoder : IDisposable
{
    private readonly Dictionary<int, Compressor> _zstd = [];

    /// <summary>The largest output any option may produce for <paramref name="length"/> input bytes.</summary>
    public static int MaxOutput(int length) => Math.Max(LZ4Codec.MaximumOutputSize(length), (int)Compressor.GetCompressBound(length));

    /// <summary>Encodes <paramref name="source"/> into <paramref name="destination"/>; returns the length, or -1 if it did not fit.</summary>
    public int Encode(CodecOption option, ReadOnlySpan<byte> source, Span<byte> destination)
    {
        switch (option.Codec)
        {
            case WireCodec.Lz4:
                return LZ4Codec.Encode(source, destination, LZ4Level.L00_FAST);
            case WireCodec.Zstd:
                if (!_zstd.TryGetValue(option.Level, out Compressor? zstd))
                {
                    _zstd[option.Level] = zstd = new Compressor(option.Level);
                }

                return zstd.TryWrap(source, destination, out int written) ? written : -1;
            default:
                throw new ArgumentOutOfRangeException(nameof(option), option, "Raw is not encoded.");
        }
    }

    public void Dispose()
    {
        foreach (Compressor zstd in _zstd.Values)
        {
            zstd.Dispose();
        }

        _zstd.Clear();
    }
}

/// <summary>
/// Unpacks a received frame's payload (receiver). The payload is authenticated, but it is still the
/// peer's: anything that does not decode to exactly the stated length is a <see cref="TunnelException"/>.
/// </summary>
internal sealed class FrameDecoder : IDisposable
{
    private readonly Decompressor _zstd = new();

    /// <summary>Decodes into <paramref name="destination"/> (exactly the frame's raw length); throws Corruption otherwise.</summary>
    public void Decode(WireCodec codec, ReadOnlySpan<byte> payload, Span<byte> destination, long frameNumber)
    {
        int decoded;
        try
        {
            decoded = codec switch
            {
                WireCodec.Lz4 => LZ4Codec.Decode(payload, destination),
                // A single-shot decode into a buffer of the stated size: the frame cannot make us allocate a window.
                WireCodec.Zstd => _zstd.Unwrap(payload, destination),
                _ => throw new ArgumentOutOfRangeException(nameof(codec), codec, "Raw is not decoded."),
            };
        }
        catch (ZstdException ex)
        {
            throw TunnelException.Corruption($"Frame {frameNumber} is not a valid zstd frame of its stated {destination.Length} bytes: {ex.Message}");
        }

        if (decoded != destination.Length)
        {
            throw TunnelException.Corruption($"Frame {frameNumber} does not decompress to its stated {destination.Length} bytes.");
        }
    }

    public void Dispose() => _zstd.Dispose();
}
