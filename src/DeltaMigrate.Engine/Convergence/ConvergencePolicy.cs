using DeltaMigrate.Engine.Qmp;
using Microsoft.Extensions.Logging;

namespace DeltaMigrate.Engine.Convergence;

/// <summary>
/// -Converge for one migration: the <see cref="StallDetector"/> watches the rounds, and under
/// Throttle a stall steps the <see cref="GuestThrottle"/>, which QEMU's auto-converge applies to
/// the vCPUs. The engine decides when and how far because it sees what QEMU cannot: the drain rate
/// of our compressed tunnel and the -MaxDowntime target; QEMU does the throttling, the only part
/// that needs to be inside QEMU (TCG and KVM alike).
/// </summary>
public sealed class ConvergencePolicy
{
    private readonly ILogger _logger;
    private readonly string _vmName;
    private readonly StallDetector _detector;
    private readonly GuestThrottle _throttle = new();
    private StallReason _firstReason;
    private int? _stalledAtRound;
    private TimeSpan? _stalledAt;
    private double? _dirtyAtStall;
    private double? _drainAtStall;

    public ConvergencePolicy(ConvergeMode mode, TimeSpan downtimeLimit, string vmName, ILogger logger)
    {
        Mode = mode;
        _detector = new StallDetector(downtimeLimit);
        _vmName = vmName;
        _logger = logger;
    }

    public ConvergeMode Mode { get; }

    /// <summary>The level QEMU applies now (its cpu-throttle-percentage), 0 when not throttled.</summary>
    public int CurrentPercent { get; private set; }

    /// <summary>Capabilities to set before migrate: Throttle needs auto-converge on from the start.</summary>
    public void AddCapabilities(IDictionary<string, bool> capabilities)
    {
        if (Mode == ConvergeMode.Throttle)
        {
            capabilities["auto-converge"] = true;
        }
    }

    public void AddParameters(IDictionary<string, object> parameters)
    {
        if (Mode == ConvergeMode.Throttle)
        {
            foreach (var (name, value) in GuestThrottle.ArmedQemuParameters())
            {
                parameters[name] = value;
            }
        }
    }

    /// <summary>Every query-migrate sample: QEMU's applied level; on a new round, the detector and maybe a new step.</summary>
    public async Task OnSampleAsync(QmpClient source, MigrationInfo info, TimeSpan elapsed, RoundObservation? newRound, CancellationToken cancellationToken)
    {
        CurrentPercent = (int)(info.CpuThrottlePercentage ?? 0);
        _throttle.ObserveApplied(info.CpuThrottlePercentage, elapsed);
        if (newRound is null)
        {
            return;
        }

        var reason = _detector.Observe(newRound);
        if (reason != StallReason.None && _stalledAtRound is null)
        {
            _firstReason = reason;
            _stalledAtRound = newRound.Round;
            _stalledAt = newRound.Elapsed;
            _dirtyAtStall = _detector.DirtyBytesPerSecond;
            _drainAtStall = _detector.DrainBytesPerSecond;
            _logger.LogWarning("{VM}: pre-copy stalled at round {Round} ({Reason}): {Remaining} bytes left, the guest dirties {Dirty:0} bytes/s, the link drains {Drain:0} bytes/s, the final copy would take {Estimate}{Action}",
                _vmName, newRound.Round, reason, newRound.RemainingBytes, _detector.DirtyBytesPerSecond, _detector.DrainBytesPerSecond, _detector.EstimatedDowntime,
                Mode == ConvergeMode.Throttle ? "; throttling the guest" : " (-Converge Never: waiting for -Timeout)");
        }

        if (Mode != ConvergeMode.Throttle || _throttle.Decide(newRound.Round, reason, _detector.DirtyBytesPerSecond, _detector.DrainBytesPerSecond) is not { } percent)
        {
            return;
        }

        _logger.LogInformation("{VM}: throttle to {Percent} % of vCPU time withheld (round {Round}, {Reason})", _vmName, percent, newRound.Round, reason);
        await source.MigrateSetParametersAsync(GuestThrottle.QemuParameters(percent), cancellationToken);
    }

    public ConvergenceStats Stats(TimeSpan totalTime)
    {
        var steps = _throttle.Steps(totalTime);
        var withheld = steps.Sum(s => s.Percent / 100.0 * s.Duration.TotalSeconds);
        return new ConvergenceStats
        {
            Policy = Mode,
            StallReason = _firstReason,
            StalledAtRound = _stalledAtRound,
            StalledAt = _stalledAt,
            DirtyBytesPerSecond = _dirtyAtStall,
            DrainBytesPerSecond = _drainAtStall,
            ThrottleSteps = steps,
            MaxThrottlePercent = steps.Count == 0 ? 0 : steps.Max(s => s.Percent),
            ThrottledTime = TimeSpan.FromSeconds(steps.Sum(s => s.Duration.TotalSeconds)),
            GuestSlowdown = totalTime > TimeSpan.Zero ? Math.Clamp(withheld / totalTime.TotalSeconds, 0, 1) : 0,
        };
    }
}
