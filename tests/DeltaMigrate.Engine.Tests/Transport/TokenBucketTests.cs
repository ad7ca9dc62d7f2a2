using DeltaMigrate.Engine.Transport;

namespace DeltaMigrate.Engine.Tests.Transport;

public sealed class TokenBucketTests
{
    // Timestamps in milliseconds (frequency 1000) so the arithmetic is easy to follow.
    private const long Frequency = 1000;

    [Fact]
    public void Burst_IsFree_ThenTheRateApplies()
    {
        var bucket = new TokenBucket(bytesPerSecond: 1000, burstBytes: 500, startTimestamp: 0, Frequency);

        Assert.Equal(TimeSpan.Zero, bucket.Take(500, now: 0));
        Assert.Equal(TimeSpan.FromMilliseconds(100), bucket.Take(100, now: 0));
        // 100 ms later the debt is paid; another 100 bytes costs another 100 ms.
        Assert.Equal(TimeSpan.FromMilliseconds(100), bucket.Take(100, now: 100));
    }

    [Fact]
    public void LargeTake_GoesIntoDebt_AndIsPaidBack()
    {
        var bucket = new TokenBucket(bytesPerSecond: 1000, burstBytes: 100, startTimestamp: 0, Frequency);

        Assert.Equal(TimeSpan.FromMilliseconds(900), bucket.Take(1000, now: 0));
        // Sender waited the 900 ms: the next take starts from an empty bucket.
        Assert.Equal(TimeSpan.FromMilliseconds(500), bucket.Take(500, now: 900));
    }

    [Fact]
    public void IdleTime_RefillsOnlyUpToTheBurst()
    {
        var bucket = new TokenBucket(bytesPerSecond: 1000, burstBytes: 200, startTimestamp: 0, Frequency);
        bucket.Take(200, now: 0);

        // An hour idle still only buys the 200-byte burst.
        Assert.Equal(TimeSpan.Zero, bucket.Take(200, now: 3_600_000));
        Assert.Equal(TimeSpan.FromMilliseconds(50), bucket.Take(50, now: 3_600_000));
    }

    [Fact]
    public void SteadyStream_AveragesToTheRate()
    {
        var bucket = new TokenBucket(bytesPerSecond: 4_000_000, burstBytes: TokenBucket.DefaultBurst(4_000_000), startTimestamp: 0, Frequency);
        long now = 0;
        for (int i = 0; i < 100; i++)
        {
            now += (long)bucket.Take(262_144, now).TotalMilliseconds;
        }

        // 100 frames of 256 KiB at 4 MB/s = 6.55 s, minus the 0.4 MB burst = 6.45 s.
        Assert.InRange(now, 6_450, 6_460);
    }

    [Fact]
    public void DefaultBurst_IsATenthOfASecond_AtLeast64KiB()
    {
        Assert.Equal(400_000, TokenBucket.DefaultBurst(4_000_000));
        Assert.Equal(64 * 1024, TokenBucket.DefaultBurst(1000));
    }
}
