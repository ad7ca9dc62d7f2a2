namespace DeltaMigrate.Engine.Convergence;

/// <summary>A level of vCPU throttling QEMU applied (its cpu-throttle-percentage), and from when to when since the migration started.</summary>
public sealed record ThrottleStep(int Percent, TimeSpan Since, TimeSpan Until)
{
    public TimeSpan Duration => Until - Since;
}
