using System.Diagnostics;
using System.Globalization;
using System.Text;
using DeltaMigrate.Benchmarks.PageCaches;

namespace DeltaMigrate.Benchmarks;

/// <summary>
/// Closed-loop simulation of pre-copy migration to compare page cache replacement policies (<see cref="IPageCache"/>: production's and the study's).
/// Run: dotnet run -c Release --project tests/DeltaMigrate.Benchmarks -- --cache-study
/// </summary>
/// <remarks>
/// Round 1 sends the whole working set (zero pages are ignored); every later round sends, in increasing page order,
/// the pages dirtied during the previous round. A re-sent page that hits the cache costs 50 bytes (it changed, so a
/// small XBZRLE record), anything else 4096. Round duration = bytes / link speed, and the guest dirties pages for
/// that long, so a better hit rate shortens rounds and shrinks the next dirty set. Converged = the dirty set left
/// would take at most 300 ms of link time (costed with the cache); "never" = not within 120 simulated seconds.
/// </remarks>
public static class PageCacheStudy
{
    private const int PageSize = 4096;
    private const long VmPages = 512L * 1024 * 1024 / PageSize;
    private const int HitCost = 50;
    private const double DowntimeSeconds = 0.3;
    private const double TimeLimitSeconds = 120;

    /// <summary>One simulated guest workload.</summary>
    /// <param name="Name">Short label.</param>
    /// <param name="HotMiB">Hot set, dirtied uniformly at random.</param>
    /// <param name="DirtyRate">Writes per second into the hot set (pages).</param>
    /// <param name="LinkMbit">Link speed.</param>
    /// <param name="CacheMiB">Cache capacity.</param>
    /// <param name="SweepRate">Pages per second of a sequential sweep over a 256 MiB cold region (0 = none).</param>
    public sealed record Workload(string Name, int HotMiB, int DirtyRate, int LinkMbit, int CacheMiB, int SweepRate);

    /// <summary>What one run measured.</summary>
    public sealed record Result(long Resent, long ResentHits, long Round2, long Round2Hits, int Rounds, bool Converged, double Seconds, long Bytes)
    {
        public double HitRate => Resent == 0 ? 0 : (double)ResentHits / Resent;

        public double Round2HitRate => Round2 == 0 ? 0 : (double)Round2Hits / Round2;
    }

    /// <summary>Policies compared; "QEMU" is direct-mapped that neither fills nor uses the cache in the first pass.</summary>
    public static readonly (string Name, string Policy, bool FillFirstPass)[] Variants =
    [
        ("QEMU", nameof(StudyPolicy.DirectMapped), false),
        ("Direct", nameof(StudyPolicy.DirectMapped), true),
        ("Clock", nameof(StudyPolicy.Clock), true),
        ("SLRU", nameof(StudyPolicy.SegmentedLru), true),
        ("SetLRU16", nameof(StudyPolicy.SetAssociativeLru), true),
        ("GuardSLRU", PageCacheKind.Production, true),
    ];

    /// <summary>The workload grid of the study.</summary>
    public static IEnumerable<Workload> Grid()
    {
        foreach (int link in new[] { 100, 1000 })
        {
            foreach (int hot in new[] { 64, 128 })
            {
                foreach (int rate in new[] { 20_000, 60_000 })
                {
                    foreach (int cache in new[] { 64, 128, 256 })
                    {
                        yield return new Workload("uniform", hot, rate, link, cache, 0);
                    }
                }
            }

            foreach (int rate in new[] { 20_000, 60_000 })
            {
                foreach (int cache in new[] { 64, 128, 256 })
                {
                    yield return new Workload("scan", 32, rate, link, cache, 10_000);
                }
            }
        }
    }

    /// <summary>Entry point of --cache-study; prints a markdown table.</summary>
    public static void Run(string[] args)
    {
        var watch = Stopwatch.StartNew();
        var workloads = Grid().ToArray();
        var results = new Result[workloads.Length, Variants.Length];
        Parallel.For(0, workloads.Length * Variants.Length, new ParallelOptions { MaxDegreeOfParallelism = Math.Max(1, Environment.ProcessorCount) }, i =>
        {
            int w = i / Variants.Length;
            int v = i % Variants.Length;
            results[w, v] = Simulate(workloads[w], Variants[v].Policy, Variants[v].FillFirstPass, seed: 12345 + w);
        });

        var inv = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.AppendLine("Cell: re-sent hit % / round-2 hit % / rounds to converge (- = never in 120 s) / total MiB sent");
        sb.AppendLine();
        sb.Append("| workload | link | hot | dirty/s | cache |");
        foreach (var variant in Variants)
        {
            sb.Append(inv, $" {variant.Name} |");
        }

        sb.AppendLine();
        sb.Append("|---|---|---|---|---|");
        foreach (var unused in Variants)
        {
            sb.Append("---|");
        }

        sb.AppendLine();
        for (int w = 0; w < workloads.Length; w++)
        {
            var wl = workloads[w];
            string hot = wl.SweepRate > 0 ? $"{wl.HotMiB}M+sweep" : $"{wl.HotMiB}M";
            sb.Append(inv, $"| {wl.Name} | {(wl.LinkMbit >= 1000 ? $"{wl.LinkMbit / 1000}G" : $"{wl.LinkMbit}M")} | {hot} | {wl.DirtyRate / 1000}k | {wl.CacheMiB}M |");
            for (int v = 0; v < Variants.Length; v++)
            {
                var r = results[w, v];
                string rounds = r.Converged ? r.Rounds.ToString(inv) : "-";
                sb.Append(inv, $" {r.HitRate * 100:0}/{r.Round2HitRate * 100:0}/{rounds}/{r.Bytes / (1024 * 1024)} |");
            }

            sb.AppendLine();
        }

        // Summary: mean re-sent hit rate and converged count per policy.
        sb.AppendLine();
        sb.Append("| summary |");
        foreach (var variant in Variants)
        {
            sb.Append(inv, $" {variant.Name} |");
        }

        sb.AppendLine();
        sb.Append("|---|");
        foreach (var unused in Variants)
        {
            sb.Append("---|");
        }

        sb.AppendLine();
        AppendSummary(sb, "mean re-sent hit %", workloads.Length, results, r => r.HitRate * 100, "0.0");
        AppendSummary(sb, "mean round-2 hit %", workloads.Length, results, r => r.Round2HitRate * 100, "0.0");
        AppendSummary(sb, "converged runs", workloads.Length, results, r => r.Converged ? 1 : 0, "0", sum: true);
        AppendSummary(sb, "total GiB (all runs)", workloads.Length, results, r => r.Bytes / (1024.0 * 1024 * 1024), "0.0", sum: true);
        Console.Write(sb.ToString());
        Console.WriteLine(string.Create(inv, $"({workloads.Length * Variants.Length} runs in {watch.Elapsed.TotalSeconds:0.0} s)"));
    }

    private static void AppendSummary(StringBuilder sb, string label, int count, Result[,] results, Func<Result, double> value, string format, bool sum = false)
    {
        sb.Append(CultureInfo.InvariantCulture, $"| {label} |");
        for (int v = 0; v < Variants.Length; v++)
        {
            double total = 0;
            for (int w = 0; w < count; w++)
            {
                total += value(results[w, v]);
            }

            sb.Append(CultureInfo.InvariantCulture, $" {(sum ? total : total / count).ToString(format, CultureInfo.InvariantCulture)} |");
        }

        sb.AppendLine();
    }

    /// <summary>Runs one migration of <paramref name="workload"/> with the given cache policy.</summary>
    public static Result Simulate(Workload workload, string policy, bool fillFirstPass, int seed)
    {
        var rng = new Random(seed);
        var cache = PageCacheKind.Create(policy, (long)workload.CacheMiB * 1024 * 1024, VmPages, PageSize);
        var content = new byte[PageSize];
        const int coldPages = 256 * 1024 * 1024 / PageSize;
        int hotCount = workload.HotMiB * 1024 * 1024 / PageSize;

        // Layout. Uniform: working set = pages [0, 256 MiB), hot set a random subset of it.
        // Scan: cold region [0, 256 MiB) swept sequentially, hot set random pages of [256 MiB, 512 MiB).
        int[] hot;
        var dirty = new bool[VmPages];
        var sent = new bool[VmPages];
        if (workload.SweepRate == 0)
        {
            hot = Sample(rng, 0, coldPages, hotCount);
            Array.Fill(dirty, true, 0, coldPages);
        }
        else
        {
            hot = Sample(rng, coldPages, (int)VmPages - coldPages, hotCount);
            Array.Fill(dirty, true, 0, coldPages);
            foreach (int p in hot)
            {
                dirty[p] = true;
            }
        }

        double link = workload.LinkMbit * 1e6 / 8; // bytes/s
        double time = 0;
        long bytes = 0;
        long resent = 0, resentHits = 0, round2 = 0, round2Hits = 0;
        int sweepPos = 0;
        double sweepCarry = 0;
        int round = 0;
        while (true)
        {
            round++;
            if (round > 1)
            {
                long remaining = 0;
                for (long p = 0; p < VmPages; p++)
                {
                    if (dirty[p])
                    {
                        remaining += cache.Contains(p) ? HitCost : PageSize;
                    }
                }

                if (remaining <= DowntimeSeconds * link)
                {
                    bytes += remaining;
                    return new Result(resent, resentHits, round2, round2Hits, round - 1, true, time, bytes);
                }

                if (time >= TimeLimitSeconds)
                {
                    return new Result(resent, resentHits, round2, round2Hits, round - 1, false, time, bytes);
                }
            }

            long roundBytes = 0;
            bool useCache = fillFirstPass || round > 1;
            for (long p = 0; p < VmPages; p++)
            {
                if (!dirty[p])
                {
                    continue;
                }

                dirty[p] = false;
                bool hit = false;
                if (sent[p])
                {
                    hit = useCache && cache.TryGet(p, out _);
                    resent++;
                    if (round == 2)
                    {
                        round2++;
                    }

                    if (hit)
                    {
                        resentHits++;
                        if (round == 2)
                        {
                            round2Hits++;
                        }
                    }
                }

                sent[p] = true;
                roundBytes += hit ? HitCost : PageSize;
                if (useCache)
                {
                    content[(int)(p & 4095)]++;
                    cache.Store(p, content);
                }
            }

            bytes += roundBytes;
            double duration = roundBytes / link;
            time += duration;

            // The guest ran for the round: hot writes uniformly at random, the sweep moves on.
            long writes = (long)(workload.DirtyRate * duration);
            for (long i = 0; i < writes; i++)
            {
                dirty[hot[rng.Next(hot.Length)]] = true;
            }

            if (workload.SweepRate > 0)
            {
                sweepCarry += workload.SweepRate * duration;
                long steps = Math.Min((long)sweepCarry, coldPages);
                sweepCarry -= (long)sweepCarry;
                for (long i = 0; i < steps; i++)
                {
                    dirty[sweepPos] = true;
                    sweepPos = sweepPos + 1 == coldPages ? 0 : sweepPos + 1;
                }
            }

            cache.NextRound();
        }
    }

    private static int[] Sample(Random rng, int start, int length, int count)
    {
        var all = new int[length];
        for (int i = 0; i < length; i++)
        {
            all[i] = start + i;
        }

        rng.Shuffle(all);
        var pick = all.AsSpan(0, count).ToArray();
        Array.Sort(pick);
        return pick;
    }
}
