using DeltaMigrate.Engine.Delta;
using DeltaMigrate.Engine.Migration;

namespace DeltaMigrate.Engine.Tests.Migration;

public sealed class RoundHistoryTests
{
    private static MigrationSample Sample(double seconds, int round, long remaining, long stream, long wire, long raw) => new()
    {
        Elapsed = TimeSpan.FromSeconds(seconds),
        Round = round,
        BytesRemaining = remaining,
        StreamBytes = stream,
        WireBytes = wire,
        RawPages = raw,
    };

    [Fact]
    public void SampledRoundsBeginWhereTheDirtySyncCountMovesAndCountOnlyTheirOwnPages()
    {
        MigrationSample[] samples =
        [
            Sample(0.2, 1, 900, 100, 50, 10),
            Sample(0.4, 1, 700, 300, 150, 30),
            Sample(0.6, 2, 400, 600, 300, 60),
            Sample(0.8, 2, 300, 700, 350, 70),
            Sample(1.0, 4, 100, 1000, 500, 100), // round 3 fell between two polls: it is not invented
            Sample(1.2, 4, 0, 1100, 550, 110),
        ];

        var rounds = RoundHistory.FromSamples(samples);

        Assert.Equal([1, 2, 4], rounds.Select(r => r.Round));
        Assert.All(rounds, r => Assert.False(r.Exact));
        Assert.Equal([500L, 400, 100], rounds.Select(r => r.StreamBytes));
        Assert.Equal([50L, 40, 10], rounds.Select(r => r.RawPages));
        Assert.Equal([900L, 400, 100], rounds.Select(r => r.BytesRemaining));
        Assert.Equal(0.4, rounds[0].Duration.TotalSeconds, 6);
    }

    [Fact]
    public void StreamRoundsKeepTheTranscodersCountsAndTakeQemusEstimateFromTheSampleBefore()
    {
        MigrationSample[] samples =
        [
            Sample(1.0, 1, 1000, 0, 0, 0),
            Sample(2.0, 1, 500, 0, 1000, 0),
            Sample(3.0, 2, 200, 0, 2000, 0),
        ];
        StreamPass[] passes =
        [
            Pass(1, start: 0.0, duration: 1.5, raw: 250),
            Pass(2, start: 1.5, duration: 0.5, raw: 3),
        ];

        // The stream's clock started 0.5 s into the migration.
        var rounds = RoundHistory.FromPasses(passes, TimeSpan.FromSeconds(0.5), samples);

        Assert.Equal([1, 2], rounds.Select(r => r.Round));
        Assert.All(rounds, r => Assert.True(r.Exact));
        Assert.Equal([250L, 3], rounds.Select(r => r.RawPages));
        Assert.Equal([0.5, 2.0], rounds.Select(r => r.Elapsed.TotalSeconds));
        Assert.Equal([1000L, 500], rounds.Select(r => r.BytesRemaining));

        // Wire bytes interpolated between the samples (0 up to 1 s, 1000 at 2 s, 2000 at 3 s): 0.5-2.0 s and 2.0-2.5 s.
        Assert.Equal(1000, rounds[0].WireBytes);
        Assert.Equal(500, rounds[1].WireBytes);
    }

    private static StreamPass Pass(int pass, double start, double duration, long raw) => new()
    {
        Pass = pass,
        Start = TimeSpan.FromSeconds(start),
        Duration = TimeSpan.FromSeconds(duration),
        StreamBytes = raw * 4096,
        OutputBytes = raw * 4096,
        RawPages = raw,
        XbzrlePages = 0,
        ZeroPages = 0,
        UnchangedPages = 0,
        XbzrleBytes = 0,
    };
}
