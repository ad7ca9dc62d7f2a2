using DeltaMigrate.Engine.Convergence;

namespace DeltaMigrate.Engine.Tests.Convergence;

public class GuestThrottleTests
{
    [Fact]
    public void NoStallNoThrottle()
    {
        var throttle = new GuestThrottle();
        Assert.Null(throttle.Decide(5, StallReason.None, 20e6, 10e6));
        Assert.Null(throttle.RequestedPercent);
    }

    [Fact]
    public void TheFirstStepBringsTheDirtyRateUnderHalfTheDrainRate()
    {
        // 9.7 MB/s dirtied, 8.7 MB/s drained (the recorded stall): 1 - 0.5 x 8.7 / 9.7 = 55.2 % -> 56 %.
        Assert.Equal(56, GuestThrottle.NeededPercent(9.7e6, 8.7e6));
        Assert.Equal(56, new GuestThrottle().Decide(5, StallReason.NotShrinking, 9.7e6, 8.7e6));

        // A guest far slower than the link still gets the initial step; one 100 times faster gets QEMU's maximum.
        Assert.Equal(20, new GuestThrottle().Decide(5, StallReason.NotShrinking, 4e6, 8e6));
        Assert.Equal(99, new GuestThrottle().Decide(5, StallReason.LimitUnreachable, 800e6, 8e6));
        Assert.Equal(20, new GuestThrottle().Decide(5, StallReason.NotShrinking, null, null));
    }

    [Fact]
    public void StepsUpEveryFewStalledRoundsToTheMaximum()
    {
        var throttle = new GuestThrottle(initialPercent: 20, incrementPercent: 30, maxPercent: 99, roundsPerStep: 3);
        var asked = new List<(int Round, int Percent)>();
        for (var round = 5; round <= 30; round++)
        {
            if (throttle.Decide(round, StallReason.NotShrinking, 4e6, 8e6) is { } percent)
            {
                asked.Add((round, percent));
            }
        }

        Assert.Equal([(5, 20), (8, 50), (11, 80), (14, 99)], asked);
        Assert.Equal(99, throttle.RequestedPercent);
    }

    [Fact]
    public void ProgressHoldsTheLevel()
    {
        var throttle = new GuestThrottle(roundsPerStep: 2);
        Assert.Equal(20, throttle.Decide(5, StallReason.NotShrinking, 4e6, 8e6));
        Assert.Null(throttle.Decide(7, StallReason.None, 4e6, 8e6));
        Assert.Null(throttle.Decide(9, StallReason.None, 4e6, 8e6));
        Assert.Equal(40, throttle.Decide(10, StallReason.NotShrinking, 4e6, 8e6));
    }

    [Fact]
    public void QemuIsAskedToLandExactlyOnTheLevel()
    {
        var parameters = GuestThrottle.QemuParameters(56);
        Assert.Equal(56L, parameters["cpu-throttle-initial"]);
        Assert.Equal(56L, parameters["max-cpu-throttle"]);
        Assert.Equal(99L, parameters["cpu-throttle-increment"]);
        Assert.Equal(1L, parameters["throttle-trigger-threshold"]);
        Assert.Equal(1L, GuestThrottle.ArmedQemuParameters()["max-cpu-throttle"]);
    }

    [Fact]
    public void RecordsTheLevelsQemuAppliedWithTheirTimes()
    {
        var throttle = new GuestThrottle();
        throttle.ObserveApplied(null, TimeSpan.FromSeconds(1));
        throttle.ObserveApplied(56, TimeSpan.FromSeconds(10));
        throttle.ObserveApplied(56, TimeSpan.FromSeconds(12));
        throttle.ObserveApplied(96, TimeSpan.FromSeconds(14));
        throttle.ObserveApplied(0, TimeSpan.FromSeconds(20));
        throttle.ObserveApplied(99, TimeSpan.FromSeconds(21));

        var steps = throttle.Steps(TimeSpan.FromSeconds(25));
        Assert.Equal(
            [new ThrottleStep(56, TimeSpan.FromSeconds(10), TimeSpan.FromSeconds(14)),
             new ThrottleStep(96, TimeSpan.FromSeconds(14), TimeSpan.FromSeconds(20)),
             new ThrottleStep(99, TimeSpan.FromSeconds(21), TimeSpan.FromSeconds(25))],
            steps);
    }
}
