namespace DeltaMigrate.Engine.Migration;

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
