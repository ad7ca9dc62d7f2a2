using DeltaMigrate.Engine.Migration;

namespace DeltaMigrate.Engine.Planning;

/// <summary>What pre-copy would do in one mode over one link, by <see cref="MigrationPredictor"/>.</summary>
public sealed record MigrationPrediction
{
    public required string VMName { get; init; }
    public required CompressionMode Mode { get; init; }

    /// <summary>The link assumed, bytes per second.</summary>
    public required long Bandwidth { get; init; }
    public required TimeSpan MaxDowntime { get; init; }

    /// <summary>Pre-copy reaches a remainder that fits in the downtime before the time limit.</summary>
    public required bool Converges { get; init; }

    /// <summary>Until the destination runs; when it does not converge, the time limit plus the forced stop-and-copy (as with -TimeoutAction Pause).</summary>
    public required TimeSpan TotalTime { get; init; }

    /// <summary>The final stop-and-copy: its bytes over the link (forced, when it does not converge).</summary>
    public required TimeSpan Downtime { get; init; }

    /// <summary>Passes over memory, the final stop-and-copy included.</summary>
    public required int Rounds { get; init; }

    /// <summary>Bytes on the network in total.</summary>
    public required long WireBytes { get; init; }

    /// <summary>The page cache the prediction assumed (Native: QEMU's, Delta: ours); null for None and Lz4.</summary>
    public long? CacheSize { get; init; }

    /// <summary>Smallest power of two that holds the hot set (Native and Delta); null for None and Lz4.</summary>
    public long? SuggestedCacheSize { get; init; }

    // The measured inputs, so that a prediction can be read (and questioned) on its own.
    public long MemoryBytes { get; init; }
    public double DirtyPagesPerSecond { get; init; }
    public double? QemuDirtyPagesPerSecond { get; init; }
    public long HotSetBytes { get; init; }
    public double? RedirtyFraction { get; init; }
    public double MeanDeltaBytes { get; init; }
    public double DeltaOverflowFraction { get; init; }
    public double Lz4Ratio { get; init; }
    public double ZeroPageFraction { get; init; }

    /// <summary>
    /// -Converge Throttle (the default): whether its stall detector would engage, when (since the start),
    /// the throttle it would settle at (the share of vCPU time that brings the dirty rate under half the
    /// link), how long the guest would run throttled, and whether the migration then converges. Null
    /// values: the policy would not engage (pre-copy converges on its own).
    /// </summary>
    public bool ThrottleEngages { get; init; }
    public TimeSpan? ThrottleEngagesAfter { get; init; }
    public int? ThrottlePercent { get; init; }
    public TimeSpan? ThrottledTime { get; init; }
    public bool? ConvergesWithThrottle { get; init; }

    /// <summary>With the throttle: the whole migration's time, and the share of the guest's CPU time withheld over it.</summary>
    public TimeSpan? TotalTimeWithThrottle { get; init; }
    public double? GuestSlowdown { get; init; }

    /// <summary>The whole sample, to predict again for another link with <see cref="MigrationPredictor.Predict(string, MemoryProfile, IEnumerable{CompressionMode}, PredictionOptions)"/>.</summary>
    public MemoryProfile? Profile { get; init; }
}
