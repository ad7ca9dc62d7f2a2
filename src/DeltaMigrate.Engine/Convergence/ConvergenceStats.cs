namespace DeltaMigrate.Engine.Convergence;

/// <summary>What the convergence policy saw and did during one migration.</summary>
public sealed record ConvergenceStats
{
    public required ConvergeMode Policy { get; init; }

    /// <summary>Why pre-copy was found stalled (None: it was not, or the policy is Never and never looked).</summary>
    public StallReason StallReason { get; init; }

    /// <summary>QEMU's dirty-sync count and the time since the start when the stall was first detected.</summary>
    public int? StalledAtRound { get; init; }
    public TimeSpan? StalledAt { get; init; }

    /// <summary>At the stall: bytes the guest dirtied per second, and stream bytes the link drained per second.</summary>
    public double? DirtyBytesPerSecond { get; init; }
    public double? DrainBytesPerSecond { get; init; }

    /// <summary>The levels QEMU applied (its cpu-throttle-percentage), from when to when since the start.</summary>
    public IReadOnlyList<ThrottleStep> ThrottleSteps { get; init; } = [];

    public int MaxThrottlePercent { get; init; }

    /// <summary>How long the guest ran throttled at all.</summary>
    public TimeSpan ThrottledTime { get; init; }

    /// <summary>
    /// Fraction (0-1) of the guest's CPU time the throttle withheld over the whole migration: each
    /// level times its duration, over the migration's time. A guest that idles part of the time
    /// loses less work than this.
    /// </summary>
    public double GuestSlowdown { get; init; }
}
