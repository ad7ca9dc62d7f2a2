namespace DeltaMigrate.Engine.Migration;

public enum MigrationStatus
{
    Completed,
    Failed,
    Cancelled,
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

    /// <summary>QEMU's measured link speed, in Mbit/s.</summary>
    public required double ThroughputMbps { get; init; }
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

    /// <summary>State of each side afterwards as QEMU reports it (running, paused, postmigrate...).</summary>
    public string? SourceState { get; init; }
    public string? DestinationState { get; init; }

    public required TimeSpan TotalTime { get; init; }

    /// <summary>How long the guest was frozen (QEMU's figure, or ours from the forced pause).</summary>
    public required TimeSpan Downtime { get; init; }
    public required TimeSpan SetupTime { get; init; }

    public required long MemorySize { get; init; }
    public required long BytesTransferred { get; init; }

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
}

/// <summary>Cache and encoding counters (QEMU's xbzrle-cache block for Native).</summary>
public sealed record CompressionStats
{
    public long CacheSize { get; init; }
    public long EncodedBytes { get; init; }
    public long CacheHits { get; init; }
    public long CacheMisses { get; init; }
    public double CacheMissRate { get; init; }
    public double EncodingRate { get; init; }
    public long Overflows { get; init; }
}
