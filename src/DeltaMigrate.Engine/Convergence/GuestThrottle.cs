namespace DeltaMigrate.Engine.Convergence;

/// <summary>
/// The throttle's steps: when a stall is detected it asks for the percentage that would bring the
/// dirty rate under half the drain rate if the guest's writing scaled with its CPU time (at least
/// <see cref="InitialPercent"/>), then <see cref="IncrementPercent"/> more every <see cref="RoundsPerStep"/>
/// rounds that are still stalled, up to <see cref="MaxPercent"/>. It also records the levels QEMU
/// really applied, from query-migrate's cpu-throttle-percentage, since QEMU applies a new level
/// only at its next dirty sync.
/// </summary>
public sealed class GuestThrottle
{
    /// <summary>QEMU's limits for cpu-throttle-initial, -increment and max-cpu-throttle.</summary>
    public const int QemuMinimumPercent = 1;
    public const int QemuMaximumPercent = 99;

    // Aim for a dirty rate of half the drain rate: rounds then halve, and the rest soon fits.
    private const double Headroom = 0.5;

    private readonly List<ThrottleStep> _applied = [];
    private int? _appliedPercent;
    private TimeSpan _appliedSince;
    private int _lastStepRound;

    public GuestThrottle(int initialPercent = 20, int incrementPercent = 20, int maxPercent = QemuMaximumPercent, int roundsPerStep = 3)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(initialPercent, QemuMinimumPercent);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(maxPercent, QemuMaximumPercent);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxPercent, initialPercent);
        ArgumentOutOfRangeException.ThrowIfLessThan(incrementPercent, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(roundsPerStep, 1);
        InitialPercent = initialPercent;
        IncrementPercent = incrementPercent;
        MaxPercent = maxPercent;
        RoundsPerStep = roundsPerStep;
    }

    public int InitialPercent { get; }
    public int IncrementPercent { get; }
    public int MaxPercent { get; }

    /// <summary>Rounds a level is given to take effect (QEMU applies it at a dirty sync) before the next step.</summary>
    public int RoundsPerStep { get; }

    /// <summary>The level last asked of QEMU; null before the first stall.</summary>
    public int? RequestedPercent { get; private set; }

    /// <summary>
    /// The percentage that would bring <paramref name="dirtyBytesPerSecond"/> under half of
    /// <paramref name="drainBytesPerSecond"/>, assuming the guest dirties in proportion to its CPU time.
    /// </summary>
    public static int NeededPercent(double? dirtyBytesPerSecond, double? drainBytesPerSecond)
    {
        if (dirtyBytesPerSecond is not { } dirty || drainBytesPerSecond is not { } drain || dirty <= 0)
        {
            return 0;
        }

        var needed = 1 - (Headroom * drain / dirty);
        return (int)Math.Clamp(Math.Ceiling(needed * 100), 0, QemuMaximumPercent);
    }

    /// <summary>After a round: the new level to ask of QEMU, or null to leave it.</summary>
    public int? Decide(int round, StallReason reason, double? dirtyBytesPerSecond, double? drainBytesPerSecond)
    {
        if (reason == StallReason.None)
        {
            return null;
        }

        if (RequestedPercent is not { } current)
        {
            _lastStepRound = round;
            return RequestedPercent = Math.Clamp(NeededPercent(dirtyBytesPerSecond, drainBytesPerSecond), InitialPercent, MaxPercent);
        }

        if (current >= MaxPercent || round - _lastStepRound < RoundsPerStep)
        {
            return null;
        }

        _lastStepRound = round;
        return RequestedPercent = Math.Min(MaxPercent, current + IncrementPercent);
    }

    /// <summary>QEMU's cpu-throttle-percentage in a sample (null or 0: not throttled).</summary>
    public void ObserveApplied(long? percent, TimeSpan elapsed)
    {
        int? now = percent is > 0 ? (int)percent.Value : null;
        if (now == _appliedPercent)
        {
            return;
        }

        if (_appliedPercent is { } previous)
        {
            _applied.Add(new ThrottleStep(previous, _appliedSince, elapsed));
        }

        _appliedPercent = now;
        _appliedSince = elapsed;
    }

    /// <summary>The levels QEMU applied, the current one closed at <paramref name="end"/>.</summary>
    public IReadOnlyList<ThrottleStep> Steps(TimeSpan end) =>
        _appliedPercent is { } open && end > _appliedSince ? [.. _applied, new ThrottleStep(open, _appliedSince, end)] : [.. _applied];

    /// <summary>The parameters that make QEMU's auto-converge apply exactly <paramref name="percent"/> at its next trigger.</summary>
    /// <remarks>
    /// QEMU has no command to set the throttle; auto-converge sets cpu-throttle-initial first, then
    /// min(current + increment, max-cpu-throttle). With initial = max = the level and the largest
    /// increment, each trigger lands on the level (up or down), and a trigger threshold of 1 % lets
    /// every dirty sync that has seen a second pass trigger.
    /// </remarks>
    public static Dictionary<string, object> QemuParameters(int percent) => new()
    {
        ["cpu-throttle-initial"] = (long)percent,
        ["cpu-throttle-increment"] = (long)QemuMaximumPercent,
        ["max-cpu-throttle"] = (long)percent,
        ["throttle-trigger-threshold"] = 1L,
    };

    /// <summary>
    /// Before a stall: auto-converge must be on from the start (QEMU refuses capability changes during
    /// a migration), so it is held at QEMU's smallest level, and only where the guest dirtied more
    /// bytes than QEMU sent in two periods.
    /// </summary>
    public static Dictionary<string, object> ArmedQemuParameters() => new()
    {
        ["cpu-throttle-initial"] = (long)QemuMinimumPercent,
        ["cpu-throttle-increment"] = (long)QemuMinimumPercent,
        ["max-cpu-throttle"] = (long)QemuMinimumPercent,
        ["throttle-trigger-threshold"] = 100L,
    };
}
