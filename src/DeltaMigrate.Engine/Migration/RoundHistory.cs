using DeltaMigrate.Engine.Delta;

namespace DeltaMigrate.Engine.Migration;

/// <summary>
/// Turns what a migration observed into its rounds: the transcoder's passes where it saw the stream
/// (exact), else the polls where QEMU's dirty-sync count moved on (counters differenced between them).
/// </summary>
public static class RoundHistory
{
    /// <summary>Rounds from the stream's passes; <paramref name="streamOffset"/> is when the stream's clock started on the migration's.</summary>
    public static IReadOnlyList<MigrationRound> FromPasses(IReadOnlyList<StreamPass> passes, TimeSpan streamOffset, IReadOnlyList<MigrationSample> samples)
    {
        ArgumentNullException.ThrowIfNull(passes);
        ArgumentNullException.ThrowIfNull(samples);
        var rounds = new MigrationRound[passes.Count];
        for (var i = 0; i < passes.Count; i++)
        {
            var pass = passes[i];
            var start = streamOffset + pass.Start;
            var at = SampleAt(samples, start);
            rounds[i] = new MigrationRound
            {
                Round = pass.Pass,
                Elapsed = start,
                Duration = pass.Duration,
                Exact = true,
                BytesRemaining = at?.BytesRemaining ?? 0,
                DirtyPagesRate = at?.DirtyPagesRate ?? 0,
                ThroughputMbps = at?.ThroughputMbps ?? 0,
                StreamBytes = pass.StreamBytes,
                SentBytes = pass.OutputBytes,
                WireBytes = WireAt(samples, start + pass.Duration) - WireAt(samples, start),
                RawPages = pass.RawPages,
                XbzrlePages = pass.XbzrlePages,
                ZeroPages = pass.ZeroPages,
                UnchangedPages = pass.UnchangedPages,
            };
        }

        return rounds;
    }

    /// <summary>Rounds from the polls: a round begins at the first sample with its dirty-sync count and ends where the next begins.</summary>
    public static IReadOnlyList<MigrationRound> FromSamples(IReadOnlyList<MigrationSample> samples)
    {
        ArgumentNullException.ThrowIfNull(samples);
        var starts = new List<MigrationSample>();
        foreach (var sample in samples)
        {
            if (sample.Round > 0 && (starts.Count == 0 || sample.Round > starts[^1].Round))
            {
                starts.Add(sample);
            }
        }

        var rounds = new MigrationRound[starts.Count];
        for (var i = 0; i < starts.Count; i++)
        {
            var from = starts[i];
            var to = i + 1 < starts.Count ? starts[i + 1] : samples[^1];
            rounds[i] = new MigrationRound
            {
                Round = from.Round,
                Elapsed = from.Elapsed,
                Duration = to.Elapsed - from.Elapsed,
                BytesRemaining = from.BytesRemaining,
                DirtyPagesRate = from.DirtyPagesRate,
                ThroughputMbps = from.ThroughputMbps,
                StreamBytes = to.StreamBytes - from.StreamBytes,
                SentBytes = to.StreamBytes - from.StreamBytes,
                WireBytes = to.WireBytes - from.WireBytes,
                RawPages = to.RawPages - from.RawPages,
                XbzrlePages = to.XbzrlePages - from.XbzrlePages,
                ZeroPages = to.ZeroPages - from.ZeroPages,
                UnchangedPages = to.UnchangedPages - from.UnchangedPages,
            };
        }

        return rounds;
    }

    // The last sample taken at or before the time (the first one before any was taken).
    private static MigrationSample? SampleAt(IReadOnlyList<MigrationSample> samples, TimeSpan time)
    {
        MigrationSample? found = samples.Count > 0 ? samples[0] : null;
        foreach (var sample in samples)
        {
            if (sample.Elapsed > time)
            {
                break;
            }

            found = sample;
        }

        return found;
    }

    // Wire bytes at a time, interpolated between the samples around it.
    private static long WireAt(IReadOnlyList<MigrationSample> samples, TimeSpan time)
    {
        if (samples.Count == 0)
        {
            return 0;
        }

        var before = new MigrationSample { Elapsed = TimeSpan.Zero, Round = 0, BytesRemaining = 0 };
        foreach (var sample in samples)
        {
            if (sample.Elapsed >= time)
            {
                var span = (sample.Elapsed - before.Elapsed).Ticks;
                return span <= 0 ? sample.WireBytes
                    : before.WireBytes + (long)((sample.WireBytes - before.WireBytes) * ((double)(time - before.Elapsed).Ticks / span));
            }

            before = sample;
        }

        return samples[^1].WireBytes;
    }
}
