namespace DeltaMigrate.Engine.Migration;

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

    /// <summary>The convergence policy (-Converge): whether and when pre-copy stalled, the throttle's steps and what they cost the guest.</summary>
    public Convergence.ConvergenceStats? Convergence { get; init; }

    /// <summary>
    /// Every pre-copy round with its own counts. Delta mode counts them from the stream itself (exact, none
    /// missed); the other modes from QEMU's counters at the samples where its dirty-sync count moved on.
    /// </summary>
    public IReadOnlyList<MigrationRound> Rounds { get; init; } = [];

    /// <summary>QEMU's counters at every poll (each PollInterval), for a continuous curve of the migration.</summary>
    public IReadOnlyList<MigrationSample> Samples { get; init; } = [];

    public string? Error { get; init; }

    /// <summary>libvirt's own statistics of the job, when libvirt ran the migration (Move-KvmVM of a libvirt domain).</summary>
    public Libvirt.LibvirtJobStats? LibvirtJob { get; init; }
}
