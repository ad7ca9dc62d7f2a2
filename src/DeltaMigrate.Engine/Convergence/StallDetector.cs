namespace DeltaMigrate.Engine.Convergence;

/// <summary>
/// Decides from QEMU's rounds whether pre-copy still converges. A round's remainder is what the guest
/// dirtied while the previous round was sent, so: remainder / previous round's duration is the dirty
/// rate, and stream bytes / time is the drain rate (the speed QEMU's stream leaves, which through our
/// tunnel is the compressed link's real speed). Stalled when the remainder would not fit the downtime
/// limit at that drain rate and either it stopped shrinking for <see cref="FlatRounds"/> rounds, or the
/// dirty rate reached the drain rate in <see cref="UnreachableRounds"/> rounds in a row.
/// </summary>
public sealed class StallDetector
{
    // Rounds the drain rate is averaged over: enough to smooth one slow round, few enough to follow a throttle.
    private const int DrainWindow = 3;

    private readonly List<RoundObservation> _rounds = [];
    private long _bestRemaining = long.MaxValue;
    private int _flat;
    private int _unreachable;

    public StallDetector(TimeSpan maxDowntime, int flatRounds = 3, int unreachableRounds = 2, double minimumShrink = 0.1)
    {
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(maxDowntime, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThan(flatRounds, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(unreachableRounds, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(minimumShrink);
        MaxDowntime = maxDowntime;
        FlatRounds = flatRounds;
        UnreachableRounds = unreachableRounds;
        MinimumShrink = minimumShrink;
    }

    /// <summary>The downtime QEMU must meet to stop the guest for the final copy.</summary>
    public TimeSpan MaxDowntime { get; }

    /// <summary>Rounds without the remainder shrinking by <see cref="MinimumShrink"/> before it is a stall.</summary>
    public int FlatRounds { get; }

    /// <summary>Rounds in a row with the dirty rate at or above the drain rate before it is a stall.</summary>
    public int UnreachableRounds { get; }

    /// <summary>Fraction by which a round must beat the best remainder so far to count as progress.</summary>
    public double MinimumShrink { get; }

    public StallReason Reason { get; private set; }

    public bool Stalled => Reason != StallReason.None;

    /// <summary>Stream bytes per second over the last rounds; null before two rounds.</summary>
    public double? DrainBytesPerSecond { get; private set; }

    /// <summary>Bytes the guest dirtied per second during the previous round; null before the second round.</summary>
    public double? DirtyBytesPerSecond { get; private set; }

    /// <summary>The final copy's duration if QEMU stopped the guest now: remainder over drain rate.</summary>
    public TimeSpan? EstimatedDowntime { get; private set; }

    /// <summary>The round that last saw the remainder shrink (or the first counted round).</summary>
    public int LastProgressRound { get; private set; }

    public StallReason Observe(RoundObservation round)
    {
        ArgumentNullException.ThrowIfNull(round);
        if (_rounds.Count > 0 && round.Round <= _rounds[^1].Round)
        {
            return Reason;
        }

        _rounds.Add(round);
        if (_rounds.Count < 2)
        {
            return Reason = StallReason.None;
        }

        var previous = _rounds[^2];
        var window = _rounds[Math.Max(0, _rounds.Count - 1 - DrainWindow)];
        var windowSeconds = (round.Elapsed - window.Elapsed).TotalSeconds;
        var roundSeconds = (round.Elapsed - previous.Elapsed).TotalSeconds;
        if (windowSeconds <= 0 || roundSeconds <= 0)
        {
            return Reason;
        }

        DrainBytesPerSecond = Math.Max(0, round.StreamBytes - window.StreamBytes) / windowSeconds;
        DirtyBytesPerSecond = round.RemainingBytes / roundSeconds;
        EstimatedDowntime = DrainBytesPerSecond > 0 ? TimeSpan.FromSeconds(round.RemainingBytes / DrainBytesPerSecond.Value) : TimeSpan.MaxValue;

        // Round 1 is the first pass over all of RAM: its "remainder" is unsent RAM, not dirt; progress is counted from round 2.
        if (previous.Round <= 1 && _bestRemaining == long.MaxValue)
        {
            _bestRemaining = round.RemainingBytes;
            LastProgressRound = round.Round;
            _unreachable = DirtyBytesPerSecond >= DrainBytesPerSecond ? 1 : 0;
            return Reason = _unreachable >= UnreachableRounds && !Fits ? StallReason.LimitUnreachable : StallReason.None;
        }

        if (round.RemainingBytes < _bestRemaining * (1 - MinimumShrink))
        {
            _bestRemaining = round.RemainingBytes;
            LastProgressRound = round.Round;
            _flat = 0;
        }
        else
        {
            _flat++;
            _bestRemaining = Math.Min(_bestRemaining, round.RemainingBytes);
        }

        _unreachable = DirtyBytesPerSecond >= DrainBytesPerSecond ? _unreachable + 1 : 0;

        // A remainder that fits is QEMU's to finish: not a stall, however flat the rounds were.
        Reason = Fits ? StallReason.None
            : _unreachable >= UnreachableRounds ? StallReason.LimitUnreachable
            : _flat >= FlatRounds ? StallReason.NotShrinking
            : StallReason.None;
        return Reason;
    }

    private bool Fits => EstimatedDowntime is { } estimate && estimate <= MaxDowntime;
}
