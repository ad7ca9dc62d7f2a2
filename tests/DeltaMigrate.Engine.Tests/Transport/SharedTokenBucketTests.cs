using DeltaMigrate.Engine.Migration;
using DeltaMigrate.Engine.Transport;

namespace DeltaMigrate.Engine.Tests.Transport;

public sealed class SharedTokenBucketTests
{
    [Fact]
    public void TwoSenders_ShareOneRate()
    {
        // Milliseconds as ticks. Two tunnels alternate frames of 1,000 bytes at a shared 10,000 bytes/s.
        long now = 0;
        var bucket = new SharedTokenBucket(bytesPerSecond: 10_000, burstBytes: 1_000, () => now, frequency: 1000);
        var waited = new long[2];
        for (int i = 0; i < 20; i++)
        {
            var wait = (long)bucket.Take(1_000).TotalMilliseconds;
            waited[i % 2] += wait;
            now += wait;
        }

        // 20,000 bytes at 10,000 bytes/s: 2 s, less the 1,000-byte burst; each sender waited about half.
        Assert.Equal(1_900, now);
        Assert.InRange(waited[0], 900, 1_000);
        Assert.InRange(waited[1], 900, 1_000);
    }

    [Fact]
    public async Task ConcurrentTakes_AreAllCounted()
    {
        long frozen = 0;
        var bucket = new SharedTokenBucket(bytesPerSecond: 1_000, burstBytes: 1_000, () => frozen, frequency: 1000);
        await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => Task.Run(() =>
        {
            for (int i = 0; i < 10_000; i++)
            {
                bucket.Take(1);
            }
        })));

        // No take is lost to a race: 80,000 bytes drawn from a 1,000-byte bucket with the clock stopped.
        Assert.Equal(1_000 - 80_000, bucket.Tokens);
    }

    [Fact]
    public void BandwidthShare_DividesByTheMigrationsRunning()
    {
        var share = new BandwidthShare(12_000_000);
        Assert.Equal(12_000_000, share.PerMigration);
        var a = share.Join();
        var b = share.Join();
        using var c = share.Join();
        Assert.Equal(4_000_000, share.PerMigration);
        a.Dispose();
        a.Dispose();
        Assert.Equal(6_000_000, share.PerMigration);
        b.Dispose();
        Assert.Equal(12_000_000, share.PerMigration);
    }
}
