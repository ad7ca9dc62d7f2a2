namespace DeltaMigrate.Engine.Planning;

/// <summary>How to sample a VM.</summary>
public sealed record SamplingOptions
{
    /// <summary>
    /// How long the guest runs between the first and the last snapshot, not counting the snapshots themselves
    /// (QEMU's calc-dirty-rate takes whole seconds, at least 1).
    /// </summary>
    public TimeSpan Duration { get; init; } = TimeSpan.FromSeconds(3);

    /// <summary>
    /// RAM snapshots taken, evenly over <see cref="Duration"/> (at least 2; 3 also measures re-dirty locality).
    /// Null: 3 from 2 s on, else 2, because a pmemsave of 128 MiB takes about 0.4 s under TCG and holds
    /// QEMU's big lock meanwhile, which stalls a guest that does port I/O: closely spaced snapshots would
    /// mostly measure the stall.
    /// </summary>
    public int? Snapshots { get; init; }

    /// <summary>At most this much RAM (from guest physical address 0) is snapshotted; the figures are scaled to all of RAM.</summary>
    public long MaxSnapshotBytes { get; init; } = 1L << 30;

    /// <summary>Where the snapshots go for the moment (deleted afterwards); null: the system temp folder.</summary>
    public string? TempPath { get; init; }
}
