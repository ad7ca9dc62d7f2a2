using DeltaMigrate.Engine.Convergence;

namespace DeltaMigrate.Engine.Tests.Convergence;

public class StallDetectorTests
{
    private const long MiB = 1024 * 1024;
    private static readonly TimeSpan Limit = TimeSpan.FromMilliseconds(200);

    // Rounds 1-8 of a recorded migration (Delta, -Bandwidth 8MB, guest 'ws=32 hot=8 rate=50000 pattern=random'):
    // after the first pass the remainder sits near the 8 MiB hot set while the link drains ~8.6 MB/s.
    private static readonly RoundObservation[] Recorded =
    [
        new(1, TimeSpan.FromSeconds(0.077), 132_648_960, 156_130, 429),
        new(2, TimeSpan.FromSeconds(5.561), 8_134_656, 34_576_537, 34_083_132),
        new(3, TimeSpan.FromSeconds(6.381), 7_610_368, 42_501_449, 41_474_415),
        new(4, TimeSpan.FromSeconds(7.484), 7_077_888, 51_448_289, 50_785_389),
        new(5, TimeSpan.FromSeconds(8.256), 7_479_296, 57_924_481, 57_276_853),
        new(6, TimeSpan.FromSeconds(9.107), 7_213_056, 65_328_193, 64_358_413),
        new(7, TimeSpan.FromSeconds(9.932), 7_606_272, 72_342_033, 71_308_867),
        new(8, TimeSpan.FromSeconds(10.911), 6_684_672, 80_410_609, 79_505_151),
    ];

    [Fact]
    public void TheRecordedFlatRoundsStallAfterThreeRoundsWithoutProgress()
    {
        var detector = new StallDetector(Limit);
        var verdicts = Recorded.Select(detector.Observe).ToList();

        // Round 2 sets the mark; 3, 4 and 5 each shrink less than 10 % below the best so far.
        Assert.All(verdicts.Take(4), v => Assert.Equal(StallReason.None, v));
        Assert.Equal(StallReason.NotShrinking, verdicts[4]);
        Assert.True(detector.Stalled);
        Assert.Equal(2, detector.LastProgressRound);
        Assert.InRange(detector.DrainBytesPerSecond!.Value, 8e6, 9.5e6);
        Assert.True(detector.EstimatedDowntime > Limit);
    }

    [Fact]
    public void ShrinkingRoundsNeverStall()
    {
        var detector = new StallDetector(Limit);
        var elapsed = 0.0;
        var stream = 0L;
        var remaining = 64 * MiB;
        for (var round = 1; round <= 12; round++)
        {
            // 10 MB/s drains each remainder; the guest dirties a third of what was sent meanwhile.
            var seconds = remaining / 10e6;
            elapsed += seconds;
            stream += remaining;
            remaining /= 3;
            Assert.Equal(StallReason.None, detector.Observe(new RoundObservation(round, TimeSpan.FromSeconds(elapsed), remaining, stream, stream)));
        }

        Assert.False(detector.Stalled);
    }

    [Fact]
    public void ARemainderThatGrowsIsUnreachableAfterTwoRounds()
    {
        // The guest dirties 12 MB/s, the link drains 8 MB/s: every round is longer than the one before.
        var detector = new StallDetector(Limit);
        var verdicts = new List<StallReason>();
        double elapsed = 4, remaining = 16e6;
        long stream = 32_000_000;
        verdicts.Add(detector.Observe(new RoundObservation(1, TimeSpan.FromSeconds(0.1), 134_000_000, 0, 0)));
        for (var round = 2; round <= 5; round++)
        {
            verdicts.Add(detector.Observe(new RoundObservation(round, TimeSpan.FromSeconds(elapsed), (long)remaining, stream, stream)));
            var seconds = remaining / 8e6;
            elapsed += seconds;
            stream += (long)remaining;
            remaining = 12e6 * seconds;
        }

        // Round 2's remainder was dirtied during the first pass (slower than the link); rounds 3 and 4 outgrow the link.
        Assert.Equal([StallReason.None, StallReason.None, StallReason.None, StallReason.LimitUnreachable, StallReason.LimitUnreachable], verdicts);
        Assert.True(detector.DirtyBytesPerSecond >= detector.DrainBytesPerSecond);
    }

    [Fact]
    public void FlatRoundsThatFitTheDowntimeLimitAreQemusToFinish()
    {
        // 1 MB left at 10 MB/s drains in 100 ms: under the 200 ms limit, so QEMU stops the guest itself.
        var detector = new StallDetector(Limit);
        for (var round = 1; round <= 8; round++)
        {
            var verdict = detector.Observe(new RoundObservation(round, TimeSpan.FromSeconds(round * 0.1), 1_000_000, round * 1_000_000L, round * 1_000_000L));
            Assert.Equal(StallReason.None, verdict);
        }

        Assert.True(detector.EstimatedDowntime <= Limit);
    }

    [Fact]
    public void ARoundSeenTwiceCountsOnce()
    {
        var detector = new StallDetector(Limit, flatRounds: 1);
        detector.Observe(Recorded[0]);
        detector.Observe(Recorded[1]);
        Assert.Equal(StallReason.None, detector.Observe(Recorded[1] with { Elapsed = Recorded[1].Elapsed + TimeSpan.FromSeconds(1) }));
        Assert.Equal(StallReason.NotShrinking, detector.Observe(Recorded[2]));
    }
}
