using DeltaMigrate.Engine.Migration;
using DeltaMigrate.Engine.Planning;

namespace DeltaMigrate.Engine.Tests.Planning;

public class MigrationPredictorTests
{
    private const long MiB = 1024 * 1024;
    private static readonly CompressionMode[] AllModes = [CompressionMode.None, CompressionMode.Native, CompressionMode.Lz4, CompressionMode.Delta];

    private static MemoryProfile Profile(double dirtyPagesPerSecond, long hotSetPages, double meanDelta = 40, double overflow = 0, double lz4 = 4096) => new()
    {
        MemoryBytes = 1024 * MiB,
        ZeroPageFraction = 0.5,
        Lz4BytesPerPage = lz4,
        Lz4BytesPerDirtyPage = lz4,
        DirtyPagesPerSecond = dirtyPagesPerSecond,
        HotSetPages = hotSetPages,
        MeanDeltaBytes = meanDelta,
        DeltaOverflowFraction = overflow,
    };

    [Theory]
    [InlineData(CompressionMode.None)]
    [InlineData(CompressionMode.Native)]
    [InlineData(CompressionMode.Lz4)]
    [InlineData(CompressionMode.Delta)]
    public void AnIdleVMConvergesInTheFirstRoundsInEveryMode(CompressionMode mode)
    {
        var prediction = MigrationPredictor.Predict("idle", Profile(0, 0), mode, new PredictionOptions());

        Assert.True(prediction.Converges);
        Assert.InRange(prediction.Rounds, 1, 2);
        Assert.Equal(TimeSpan.Zero, prediction.Downtime);
        // Round 1 sends half the pages whole (or LZ4'd at 4096: random) and half as zero pages.
        Assert.InRange(prediction.WireBytes, 512 * MiB, 520 * MiB);
        Assert.InRange(prediction.TotalTime.TotalSeconds, 4.2, 4.5); // ~537 MB at 125 MB/s
    }

    [Fact]
    public void ADirtyRateAboveTheLinksPageRateNeverConvergesWithNone()
    {
        // 100 Mbit/s carries about 3,000 pages/s; the guest dirties 20,000 pages/s over a 256 MiB hot set.
        var options = new PredictionOptions { Bandwidth = 12_500_000 };
        var prediction = MigrationPredictor.Predict("busy", Profile(20_000, 65_536), CompressionMode.None, options);

        Assert.False(prediction.Converges);
        Assert.True(prediction.Downtime > options.MaxDowntime);
        Assert.True(prediction.TotalTime >= options.TimeLimit);
    }

    [Fact]
    public void WithSmallDeltasDeltaConvergesWhereNoneDoesNot()
    {
        var options = new PredictionOptions { Bandwidth = 12_500_000 };
        var profile = Profile(20_000, 16_384, meanDelta: 40); // 64 MiB hot set, 16 bytes changed a page

        var none = MigrationPredictor.Predict("vm", profile, CompressionMode.None, options);
        var delta = MigrationPredictor.Predict("vm", profile, CompressionMode.Delta, options);

        Assert.False(none.Converges);
        Assert.True(delta.Converges);
        Assert.True(delta.Downtime <= options.MaxDowntime);
        Assert.True(delta.WireBytes < none.WireBytes);
        Assert.Equal(64 * MiB, delta.SuggestedCacheSize);
        Assert.Null(none.SuggestedCacheSize);
    }

    [Fact]
    public void NativeIsJudgedOnRawBytesAndStartsDeltasInTheThirdRound()
    {
        var options = new PredictionOptions { Bandwidth = 12_500_000 };
        var profile = Profile(20_000, 16_384, meanDelta: 40);

        var native = MigrationPredictor.Predict("vm", profile, CompressionMode.Native, options);
        var delta = MigrationPredictor.Predict("vm", profile, CompressionMode.Delta, options);

        // Round 2 goes raw (XBZRLE starts after the first pass), and QEMU counts the remainder raw, so the
        // 64 MiB hot set does not count as fitting until rounds of deltas have shrunk what is dirty.
        Assert.True(delta.Converges);
        Assert.Equal(2, delta.Rounds);
        Assert.True(native.Rounds > 3, $"Native converged in {native.Rounds} rounds");
        Assert.True(native.TotalTime > delta.TotalTime + TimeSpan.FromSeconds(5));
        Assert.Equal(4096 + MigrationPredictor.PageHeaderBytes, MigrationPredictor.PageCost(CompressionMode.Native, 2, profile, 1));
        Assert.True(MigrationPredictor.PageCost(CompressionMode.Native, 3, profile, 1) < 100);
    }

    [Fact]
    public void ASmallCacheMakesDeltaPayLess()
    {
        var profile = Profile(20_000, 65_536, meanDelta: 40); // 256 MiB hot set
        var options = new PredictionOptions { Bandwidth = 12_500_000 };
        var big = MigrationPredictor.Predict("vm", profile, CompressionMode.Delta, options);
        var small = MigrationPredictor.Predict("vm", profile, CompressionMode.Delta, options with { DeltaCacheSize = 16 * MiB });

        Assert.Equal(512 * MiB, big.CacheSize);
        Assert.True(small.WireBytes > big.WireBytes || (big.Converges && !small.Converges));
        Assert.Equal(256 * MiB, big.SuggestedCacheSize);
    }

    [Fact]
    public void MoreBandwidthNeverPredictsALongerTime()
    {
        var profiles = new[]
        {
            Profile(0, 0),
            Profile(2_000, 2_048),
            Profile(20_000, 16_384),
            Profile(50_000, 65_536, meanDelta: 300, overflow: 0.2, lz4: 1500),
            Profile(200_000, 262_144, meanDelta: 4000, overflow: 0.9),
        };
        long[] bandwidths = [1_000_000, 5_000_000, 12_500_000, 30_000_000, 62_500_000, 125_000_000, 250_000_000, 1_250_000_000];
        foreach (var profile in profiles)
        {
            foreach (var mode in AllModes)
            {
                var previous = TimeSpan.MaxValue;
                foreach (var bandwidth in bandwidths)
                {
                    var p = MigrationPredictor.Predict("vm", profile, mode, new PredictionOptions { Bandwidth = bandwidth });
                    Assert.True(p.TotalTime <= previous, $"{mode} at {bandwidth} B/s: {p.TotalTime} > {previous} (rate {profile.DirtyPagesPerSecond})");
                    previous = p.TotalTime;
                }
            }
        }
    }

    [Theory]
    [InlineData(0, 4096)]
    [InlineData(4096, 4096)]
    [InlineData(4097, 8192)]
    [InlineData(8 * MiB, 8 * MiB)]
    [InlineData(7_600_000, 8 * MiB)]
    public void SuggestedCacheIsTheSmallestPowerOfTwoThatHoldsTheHotSet(long hotSet, long expected) =>
        Assert.Equal(expected, MigrationPredictor.SuggestCacheSize(hotSet));

    [Fact]
    public void DefaultCachesAreQemusForNativeAndHalfTheRamForDelta()
    {
        var options = new PredictionOptions();
        Assert.Equal(64 * MiB, MigrationPredictor.CacheFor(CompressionMode.Native, 8192 * MiB, options));
        Assert.Equal(64 * MiB, MigrationPredictor.CacheFor(CompressionMode.Delta, 64 * MiB, options));
        Assert.Equal(512 * MiB, MigrationPredictor.CacheFor(CompressionMode.Delta, 1024 * MiB, options));
        Assert.Equal(2048 * MiB, MigrationPredictor.CacheFor(CompressionMode.Delta, 16384 * MiB, options));
        Assert.Null(MigrationPredictor.CacheFor(CompressionMode.Lz4, 1024 * MiB, options));
    }

    [Fact]
    public void APredictionCarriesItsSample_SoAnotherLinkCanBePredictedFromTheSavedJson()
    {
        var slow = new PredictionOptions { Bandwidth = 12_500_000 };
        var fast = new PredictionOptions { Bandwidth = 125_000_000 };
        var first = MigrationPredictor.Predict("vm", Profile(20_000, 16_384), CompressionMode.Delta, slow);

        var json = System.Text.Json.JsonSerializer.Serialize(first.Profile);
        var saved = System.Text.Json.JsonSerializer.Deserialize<MemoryProfile>(json)!;
        var again = MigrationPredictor.Predict("vm", saved, CompressionMode.Delta, fast);

        Assert.Equal(MigrationPredictor.Predict("vm", Profile(20_000, 16_384), CompressionMode.Delta, fast) with { Profile = null }, again with { Profile = null });
        Assert.True(again.TotalTime < first.TotalTime);
    }

    [Fact]
    public void AStalledPreCopyIsPredictedToBeThrottledAndToConverge()
    {
        // 20,000 pages/s (82 MB/s) over a 100 Mbit/s link: the throttle must withhold 1 - 0.5 x 12.5 / 82 = 93 % of the guest's CPU.
        // The first pass takes 43 s, each later one 21.5 s (the 256 MiB hot set): the stall shows at round 4, after 107 s.
        var options = new PredictionOptions { Bandwidth = 12_500_000, TimeLimit = TimeSpan.FromSeconds(600) };
        var prediction = MigrationPredictor.Predict("busy", Profile(20_000, 65_536), CompressionMode.None, options);

        Assert.False(prediction.Converges);
        Assert.True(prediction.ThrottleEngages);
        Assert.Equal(93, prediction.ThrottlePercent);
        Assert.True(prediction.ConvergesWithThrottle);
        Assert.InRange(prediction.ThrottleEngagesAfter!.Value.TotalSeconds, 100, 115);
        Assert.True(prediction.ThrottledTime > TimeSpan.Zero);
        Assert.InRange(prediction.TotalTimeWithThrottle!.Value.TotalSeconds, 115, 200);
        Assert.InRange(prediction.GuestSlowdown!.Value, 0.001, 0.93);
    }

    [Fact]
    public void APreCopyThatConvergesNeverEngagesTheThrottle()
    {
        var prediction = MigrationPredictor.Predict("vm", Profile(20_000, 16_384, meanDelta: 40), CompressionMode.Delta, new PredictionOptions { Bandwidth = 12_500_000 });

        Assert.True(prediction.Converges);
        Assert.False(prediction.ThrottleEngages);
        Assert.Null(prediction.ThrottlePercent);
        Assert.Null(prediction.ConvergesWithThrottle);
    }

    [Fact]
    public void AGuestHundredsOfTimesFasterThanTheLinkIsNotSavedByQemusMaximumThrottle()
    {
        // At 99 % the guest still dirties 1 % of 2,000,000 pages/s: 82 MB/s, more than the link.
        var prediction = MigrationPredictor.Predict("wild", Profile(2_000_000, 65_536), CompressionMode.None, new PredictionOptions { Bandwidth = 12_500_000 });

        Assert.True(prediction.ThrottleEngages);
        Assert.Equal(99, prediction.ThrottlePercent);
        Assert.False(prediction.ConvergesWithThrottle);
    }
}
