using DeltaMigrate.Engine.Transport;

namespace DeltaMigrate.Engine.Migration;

/// <summary>Cache and encoding counters: QEMU's xbzrle-cache block for Native, our engine's for Delta and Lz4.</summary>
public sealed record CompressionStats
{
    public long CacheSize { get; init; }

    /// <summary>Bytes of XBZRLE deltas produced.</summary>
    public long EncodedBytes { get; init; }
    public long CacheHits { get; init; }
    public long CacheMisses { get; init; }
    public double CacheMissRate { get; init; }
    public long CacheEvictions { get; init; }
    public double EncodingRate { get; init; }

    /// <summary>Pages whose delta would not have been smaller than the page: sent whole.</summary>
    public long Overflows { get; init; }

    public long ZeroPages { get; init; }
    public long RawPages { get; init; }
    public long XbzrlePages { get; init; }

    /// <summary>Re-sent pages identical to what the destination holds: not sent at all.</summary>
    public long UnchangedPages { get; init; }

    /// <summary>QEMU's stream in, network out.</summary>
    public long StreamBytes { get; init; }
    public long WireBytes { get; init; }

    /// <summary>Stream bytes per wire byte.</summary>
    public double CompressionRatio => WireBytes > 0 ? (double)StreamBytes / WireBytes : 1;

    public long Frames { get; init; }
    public long CompressedFrames { get; init; }

    /// <summary>CPU time spent in the XBZRLE encoder and in the wire codecs (LZ4, zstd; probes included).</summary>
    public TimeSpan EncodeTime { get; init; }
    public TimeSpan CompressTime { get; init; }

    /// <summary>
    /// Tunnel modes: which wire codec carried how much (Data frames, stream bytes, wire bytes). Delta chooses
    /// per frame among raw, lz4 and zstd levels; Lz4 shows lz4 and raw (frames LZ4 did not shrink).
    /// </summary>
    public IReadOnlyList<CodecBytes> Codecs { get; init; } = [];
}
