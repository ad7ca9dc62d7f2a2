using DeltaMigrate.Engine.Transport;

namespace DeltaMigrate.Engine.Migration;

public enum MigrationStatus
{
    Completed,
    Failed,
    Cancelled,

    /// <summary>Both copies paused after the commit's answer was lost; the error says which side to resume.</summary>
    InDoubt,
}

/// <summary>One pre-copy round: the sample taken when QEMU's dirty-sync count moved on.</summary>
public sealed record MigrationRound
{
    public required int Round { get; init; }

    /// <summary>Time since the migration started when the round was first seen.</summary>
    public required TimeSpan Elapsed { get; init; }

    public required long BytesTransferred { get; init; }

    public required long BytesRemaining { get; init; }

    /// <summary>QEMU's dirty page rate (pages/s) as it reported it at that point.</summary>
    public required long DirtyPagesRate { get; init; }

    /// <summary>QEMU's measured link speed, in Mbit/s (of its own stream: before our compression).</summary>
    public required double ThroughputMbps { get; init; }

    /// <summary>Bytes on the network so far (after delta and LZ4 in Delta and Lz4 modes).</summary>
    public long WireBytes { get; init; }

    /// <summary>Pages so far: sent whole, as XBZRLE deltas, or dropped because unchanged.</summary>
    public long RawPages { get; init; }
    public long XbzrlePages { get; init; }
    public long UnchangedPages { get; init; }
    public long CacheHits { get; init; }
}

/// <summary>A live sample while a migration runs (for Write-Progress).</summary>
public sealed record MigrationProgress
{
    public required string VMName { get; init; }
    public required string Status { get; init; }
    public required TimeSpan Elapsed { get; init; }
    public required int Round { get; init; }
    public required long BytesTransferred { get; init; }
    public required long BytesRemaining { get; init; }
    public required long MemorySize { get; init; }
    public required double ThroughputMbps { get; init; }
    public TimeSpan? ExpectedDowntime { get; init; }

    /// <summary>Bytes on the network so far (QEMU's count with its own transport).</summary>
    public long WireBytes { get; init; }

    /// <summary>Tunnel modes: the Data frames so far by wire codec (raw, lz4, zstd by level), stream and wire bytes each.</summary>
    public IReadOnlyList<CodecBytes> Codecs { get; init; } = [];

    /// <summary>0-100: how much of RAM has been sent at least once, then how close the remainder is to zero.</summary>
    public int PercentComplete =>
        MemorySize <= 0 ? 0 : (int)Math.Clamp(100.0 * (MemorySize - BytesRemaining) / MemorySize, 0, 99);
}

/// <summary>What a migration did, reported when it ends.</summary>
public sealed record MigrationResult
{
    public required string VMName { get; init; }
    public required MigrationStatus Status { get; init; }
    public required CompressionMode Mode { get; init; }
    public required string Source { get; init; }
    public required string Destination { get; init; }

    /// <summary>Shared by both sides' results (Receive-KvmVM's too), so logs of two hosts join on it.</summary>
    public Guid MigrationId { get; init; }

    /// <summary>UTC, when the migration began and when this result was made.</summary>
    public DateTimeOffset StartTime { get; init; }
    public DateTimeOffset EndTime { get; init; }

    /// <summary>This host's name, and the destination's host (this one for a VM on this host).</summary>
    public string? SourceHost { get; init; }
    public string? DestinationHost { get; init; }

    /// <summary>State of each side afterwards as QEMU reports it (running, paused, postmigrate...).</summary>
    public string? SourceState { get; init; }
    public string? DestinationState { get; init; }

    public required TimeSpan TotalTime { get; init; }

    /// <summary>How long the guest was frozen: from the source's STOP until the destination ran (or, staying paused, held the complete state) after the commit.</summary>
    public required TimeSpan Downtime { get; init; }
    public required TimeSpan SetupTime { get; init; }

    public required long MemorySize { get; init; }

    /// <summary>Bytes that crossed the network.</summary>
    public required long BytesTransferred { get; init; }

    /// <summary>Bytes of QEMU's own migration stream (equal to BytesTransferred without our tunnel).</summary>
    public long StreamBytes { get; init; }

    /// <summary>Pages sent whole, and their bytes.</summary>
    public long NormalPages { get; init; }
    public long NormalBytes { get; init; }

    /// <summary>Pages found all zero (QEMU's "duplicate"), sent as one byte each.</summary>
    public long ZeroPages { get; init; }

    /// <summary>QEMU's dirty bitmap syncs: one per pre-copy round.</summary>
    public int DirtySyncCount { get; init; }

    /// <summary>Average over the whole migration, in Mbit/s.</summary>
    public double ThroughputMbps { get; init; }

    /// <summary>Converged on its own; false when it finished only because the timeout paused the guest.</summary>
    public bool Converged { get; init; }
    public bool TimedOut { get; init; }

    public CompressionStats? Compression { get; init; }

    public IReadOnlyList<MigrationRound> Rounds { get; init; } = [];

    public string? Error { get; init; }

    /// <summary>libvirt's own statistics of the job, when libvirt ran the migration (Move-KvmVM of a libvirt domain).</summary>
    public Libvirt.LibvirtJobStats? LibvirtJob { get; init; }
}

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
