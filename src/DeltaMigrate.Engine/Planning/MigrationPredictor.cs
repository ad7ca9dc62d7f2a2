using DeltaMigrate.Engine.Convergence;
using DeltaMigrate.Engine.Migration;

namespace DeltaMigrate.Engine.Planning;

/// <summary>
/// A simple pre-copy model: when does delta compression pay.
/// </summary>
/// <remarks>
/// <para>Round 1 sends all of RAM: a zero page costs <see cref="ZeroPageBytes"/>; a non-zero page
/// 4096 bytes (+ header) for None and Native, its LZ4 size for Lz4 and Delta.</para>
/// <para>Each later round sends the pages dirtied while the previous round ran:
/// min(dirty rate x previous round's duration, hot set). Per page: None 4096; Lz4 the LZ4 size
/// of a changed page; Native raw in round 2 (QEMU turns XBZRLE on only after the first full pass)
/// and from round 3 an XBZRLE delta for the cache-hit fraction min(1, cache / hot set), raw for
/// the rest and for overflows; Delta (our cache fills in the first pass) a delta for the hit
/// fraction, the LZ4 size for misses and overflows.</para>
/// <para>A round whose bytes fit in bandwidth x max downtime is the final stop-and-copy: the
/// migration converges and the downtime is those bytes over the link. Native is judged as QEMU
/// judges it: the remainder counted raw (4096 a page) must fit, although the wire carries deltas
/// (QEMU's estimate misjudges: see qemu-traps.md), so Native converges later than its wire bytes
/// suggest. Past the time limit the prediction gives up: Converges is false, and Downtime is the
/// forced stop-and-copy of what is dirty then.</para>
/// <para>Not modelled: CPU cost of the encoders, LZ4 over deltas (conservative for Delta), TCP
/// overhead, page re-dirty locality beyond the hot-set cap. -Converge Throttle is predicted apart (ThrottleEngages...): a guest
/// whose writing scales with its CPU time, which overstates what a throttle does to a guest that mostly idles.</para>
/// </remarks>
public static class MigrationPredictor
{
    /// <summary>Per-page header in QEMU's stream (offset and flags).</summary>
    public const int PageHeaderBytes = 8;

    /// <summary>A zero page in QEMU's stream: header plus the fill byte.</summary>
    public const int ZeroPageBytes = 9;

    private const int PageSize = MemoryProfile.PageSize;
    private const int MaxRounds = 100_000;

    /// <summary>Predicts every mode asked for.</summary>
    public static IEnumerable<MigrationPrediction> Predict(string vmName, MemoryProfile profile, IEnumerable<CompressionMode> modes, PredictionOptions options) =>
        modes.Select(mode => Predict(vmName, profile, mode, options));

    public static MigrationPrediction Predict(string vmName, MemoryProfile profile, CompressionMode mode, PredictionOptions options)
    {
        ArgumentNullException.ThrowIfNull(profile);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(options.Bandwidth);

        double bandwidth = options.Bandwidth;
        double budget = bandwidth * options.MaxDowntime.TotalSeconds; // bytes the final copy may take
        double limit = options.TimeLimit.TotalSeconds;
        long pages = Math.Max(1, profile.PageCount);
        double hotSet = Math.Clamp(profile.HotSetPages, 0, pages);
        double rate = Math.Max(0, profile.DirtyPagesPerSecond);
        long? cache = CacheFor(mode, profile.MemoryBytes, options);
        double hit = cache is { } c && hotSet > 0 ? Math.Min(1, (double)c / PageSize / hotSet) : 1;

        // Round 1: all of RAM.
        double zeroPages = pages * Math.Clamp(profile.ZeroPageFraction, 0, 1);
        double firstPage = mode is CompressionMode.Lz4 or CompressionMode.Delta ? Math.Min(profile.Lz4BytesPerPage, PageSize) + PageHeaderBytes : PageSize + PageHeaderBytes;
        double roundBytes = zeroPages * ZeroPageBytes + (pages - zeroPages) * firstPage;
        double elapsed = roundBytes / bandwidth;
        double wire = roundBytes;
        double lastDuration = elapsed;
        int round = 1;
        double bestRound = double.MaxValue;
        int flatRounds = 0;
        int outgrowing = 0;
        double? stallAt = null;

        while (true)
        {
            round++;
            // Pages dirtied while the previous round ran; a guest that rewrites its hot set cannot dirty more than it.
            double dirty = Math.Min(rate * lastDuration, hotSet > 0 ? hotSet : pages);
            double perPage = PageCost(mode, round, profile, hit);
            roundBytes = dirty * perPage;

            // QEMU decides on raw bytes for Native; the others decide on what crosses the wire.
            double judged = mode == CompressionMode.Native ? dirty * (PageSize + PageHeaderBytes) : roundBytes;
            bool fits = judged <= budget;
            // The time limit falls inside this round: the guest is paused then and what is dirty is copied (forced).
            bool givingUp = !fits && (elapsed + (roundBytes / bandwidth) > limit || round >= MaxRounds);
            if (!fits && stallAt is null && round > 2)
            {
                // As StallDetector: 3 rounds without shrinking 10 % below the best, or 2 in a row whose dirt came
                // at least as fast as the link drains (the round takes as long as the one it was dirtied in).
                flatRounds = dirty * PageSize < bestRound * 0.9 ? 0 : flatRounds + 1;
                outgrowing = roundBytes / bandwidth >= lastDuration * 0.9999 ? outgrowing + 1 : 0;
                if (flatRounds >= 3 || outgrowing >= 2)
                {
                    stallAt = Math.Min(elapsed + (roundBytes / bandwidth), limit);
                }
            }

            bestRound = Math.Min(bestRound, dirty * PageSize);
            if (fits || givingUp)
            {
                double downtime = roundBytes / bandwidth;
                var throttle = fits ? null : PredictThrottle(mode, profile, hit, bandwidth, budget, hotSet > 0 ? hotSet : pages, stallAt ?? Math.Min(elapsed, limit), limit, dirty);
                return new MigrationPrediction
                {
                    VMName = vmName,
                    Mode = mode,
                    Bandwidth = options.Bandwidth,
                    MaxDowntime = options.MaxDowntime,
                    Converges = fits,
                    TotalTime = TimeSpan.FromSeconds((fits ? elapsed : Math.Max(elapsed, limit)) + downtime),
                    Downtime = TimeSpan.FromSeconds(downtime),
                    Rounds = round,
                    WireBytes = (long)Math.Round(wire + roundBytes),
                    CacheSize = cache,
                    SuggestedCacheSize = cache is null ? null : SuggestCacheSize(profile.HotSetBytes),
                    MemoryBytes = profile.MemoryBytes,
                    DirtyPagesPerSecond = profile.DirtyPagesPerSecond,
                    QemuDirtyPagesPerSecond = profile.QemuDirtyPagesPerSecond,
                    HotSetBytes = profile.HotSetBytes,
                    RedirtyFraction = profile.RedirtyFraction,
                    MeanDeltaBytes = profile.MeanDeltaBytes,
                    DeltaOverflowFraction = profile.DeltaOverflowFraction,
                    Lz4Ratio = profile.Lz4Ratio,
                    ZeroPageFraction = profile.ZeroPageFraction,
                    Profile = profile,
                    ThrottleEngages = throttle is not null,
                    ThrottleEngagesAfter = throttle is null ? null : TimeSpan.FromSeconds(throttle.Value.EngagesAt),
                    ThrottlePercent = throttle?.Percent,
                    ThrottledTime = throttle is null ? null : TimeSpan.FromSeconds(throttle.Value.Throttled),
                    ConvergesWithThrottle = throttle?.Converges,
                    TotalTimeWithThrottle = throttle is null ? null : TimeSpan.FromSeconds(throttle.Value.Total),
                    GuestSlowdown = throttle is null ? null : throttle.Value.Percent / 100.0 * throttle.Value.Throttled / Math.Max(throttle.Value.Total, 1e-9),
                };
            }

            lastDuration = roundBytes / bandwidth;
            elapsed += lastDuration;
            wire += roundBytes;
        }
    }

    /// <summary>
    /// The throttle from the stall on: the level that brings the dirty wire rate under half the link
    /// (as <see cref="GuestThrottle"/> chooses it, at least its initial step, at most QEMU's 99 %),
    /// assuming the guest dirties in proportion to its CPU time; then rounds at the slowed rate until
    /// the remainder fits, or the time limit.
    /// </summary>
    private static (double EngagesAt, int Percent, double Throttled, bool Converges, double Total)? PredictThrottle(CompressionMode mode, MemoryProfile profile,
        double hit, double bandwidth, double budget, double cap, double engagesAt, double limit, double dirtyAtStall)
    {
        double rate = Math.Max(0, profile.DirtyPagesPerSecond);
        double perPage = PageCost(mode, 3, profile, hit);
        double judgedPerPage = mode == CompressionMode.Native ? PageSize + PageHeaderBytes : perPage;
        var throttle = new GuestThrottle();
        int percent = Math.Clamp(GuestThrottle.NeededPercent(rate * perPage, bandwidth), throttle.InitialPercent, throttle.MaxPercent);
        double slowed = rate * (1 - (percent / 100.0));
        double dirty = dirtyAtStall;
        double elapsed = engagesAt;
        for (int round = 0; round < MaxRounds; round++)
        {
            double duration = dirty * perPage / bandwidth;
            if (dirty * judgedPerPage <= budget)
            {
                return (engagesAt, percent, elapsed - engagesAt + duration, true, elapsed + duration);
            }

            if (elapsed + duration > limit)
            {
                break;
            }

            elapsed += duration;
            dirty = Math.Min(slowed * duration, cap);
        }

        return (engagesAt, percent, Math.Max(0, limit - engagesAt), false, limit);
    }

    /// <summary>Wire bytes of one re-sent page in a round after the first.</summary>
    internal static double PageCost(CompressionMode mode, int round, MemoryProfile profile, double cacheHit)
    {
        double raw = PageSize + PageHeaderBytes;
        double lz4 = Math.Min(profile.Lz4BytesPerDirtyPage, PageSize) + PageHeaderBytes;
        double overflow = Math.Clamp(profile.DeltaOverflowFraction, 0, 1);
        double delta = Math.Min(profile.MeanDeltaBytes, PageSize) + PageHeaderBytes;
        return mode switch
        {
            CompressionMode.None => raw,
            CompressionMode.Lz4 => lz4,
            CompressionMode.Native when round <= 2 => raw,
            CompressionMode.Native => (cacheHit * (1 - overflow) * delta) + ((1 - (cacheHit * (1 - overflow))) * raw),
            CompressionMode.Delta => (cacheHit * (1 - overflow) * delta) + ((1 - (cacheHit * (1 - overflow))) * lz4),
            _ => raw,
        };
    }

    /// <summary>The cache a mode works with: Native QEMU's (64 MiB by default), Delta ours (half the RAM, 64 MiB..2 GiB).</summary>
    public static long? CacheFor(CompressionMode mode, long memoryBytes, PredictionOptions options) => mode switch
    {
        CompressionMode.Native => options.NativeCacheSize ?? MigrationOptions.DefaultCacheSize,
        CompressionMode.Delta => options.DeltaCacheSize ?? Math.Clamp(memoryBytes / 2, MigrationOptions.DefaultCacheSize, 2L << 30),
        _ => null,
    };

    /// <summary>Smallest power of two at least the hot set (one page at least).</summary>
    public static long SuggestCacheSize(long hotSetBytes)
    {
        long size = PageSize;
        while (size < hotSetBytes && size < (1L << 62))
        {
            size <<= 1;
        }

        return size;
    }
}
