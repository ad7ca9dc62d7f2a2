using System.Diagnostics;
using System.Text.Json;
using DeltaMigrate.Engine.Logging;
using DeltaMigrate.Engine.Qmp;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace DeltaMigrate.Engine.Planning;

/// <summary>
/// Samples a running VM over QMP (use its second, query monitor so it works beside a migration or
/// another client): QEMU's own calc-dirty-rate, plus successive pmemsave snapshots of RAM compared
/// page by page, which give a dirty rate of our own, the hot set, XBZRLE delta sizes and LZ4 sizes.
/// </summary>
public static class MemorySampler
{
    private const int PageSize = MemoryProfile.PageSize;

    /// <summary>Pages of QEMU's "MB" (MiB) in its dirty-rate figure.</summary>
    private const double PagesPerMiB = 1048576.0 / PageSize;

    private static readonly TimeSpan SnapshotTimeout = TimeSpan.FromMinutes(2);

    /// <summary>The same, logging to a host's <see cref="IEngineLogSink"/> (the cmdlets: no logging types cross into PowerShell's load context).</summary>
    public static Task<MemoryProfile> SampleAsync(string qmpSocket, SamplingOptions options, IEngineLogSink log, IProgress<string>? progress = null, CancellationToken cancellationToken = default) =>
        SampleAsync(qmpSocket, options, SinkLogger.From(log), progress, cancellationToken);

    public static async Task<MemoryProfile> SampleAsync(string qmpSocket, SamplingOptions options, ILogger? logger = null, IProgress<string>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(qmpSocket);
        ArgumentNullException.ThrowIfNull(options);
        int snapshots = options.Snapshots ?? (options.Duration >= TimeSpan.FromSeconds(2) ? 3 : 2);
        ArgumentOutOfRangeException.ThrowIfLessThan(snapshots, 2, nameof(options));
        logger ??= NullLogger.Instance;

        await using var qmp = await QmpClient.ConnectUnixAsync(qmpSocket, logger, null, cancellationToken).ConfigureAwait(false);
        long memory = (await qmp.QueryMemorySizeSummaryAsync(cancellationToken).ConfigureAwait(false)).BaseMemory;
        long sampled = Math.Min(memory, options.MaxSnapshotBytes) / PageSize * PageSize;
        if (sampled <= 0)
        {
            throw new EngineException("NoGuestMemory", ErrorKind.InvalidState, $"QEMU at {qmpSocket} reports no guest RAM to sample.");
        }

        int calcSeconds = (int)Math.Clamp(Math.Round(options.Duration.TotalSeconds), 1, 60);
        bool qemuMeasuring = await StartDirtyRateAsync(qmp, calcSeconds, logger, cancellationToken).ConfigureAwait(false);

        var folder = Path.Combine(options.TempPath ?? Path.GetTempPath(), "deltamigrate-measure-" + Guid.NewGuid().ToString("n")[..8]);
        Directory.CreateDirectory(folder);
        try
        {
            // The guest runs free for Duration / (snapshots - 1) between the end of one snapshot and the start of
            // the next (a snapshot may stall it, see Snapshots), so the whole sample takes Duration plus the
            // snapshots. Each interval is counted start to start: pmemsave reads RAM in order at a steady pace,
            // so every page is captured that long after its previous capture.
            var files = new string[snapshots];
            var taken = new TimeSpan[snapshots];
            var clock = Stopwatch.StartNew();
            var spacing = options.Duration / (snapshots - 1);
            var due = TimeSpan.Zero;
            for (int i = 0; i < snapshots; i++)
            {
                if (clock.Elapsed < due)
                {
                    await Task.Delay(due - clock.Elapsed, cancellationToken).ConfigureAwait(false);
                }

                files[i] = Path.Combine(folder, $"ram{i}.bin");
                progress?.Report($"Snapshot {i + 1} of {snapshots} ({sampled / 1048576} MiB)");
                taken[i] = clock.Elapsed;
                await qmp.ExecuteAsync("pmemsave", new { val = 0L, size = sampled, filename = files[i] }, SnapshotTimeout, cancellationToken).ConfigureAwait(false);
                logger.LogDebug("Snapshot {Index} of {Bytes} bytes took {Milliseconds:0} ms", i + 1, sampled, (clock.Elapsed - taken[i]).TotalMilliseconds);
                due = clock.Elapsed + spacing;
                if (!File.Exists(files[i]) || new FileInfo(files[i]).Length != sampled)
                {
                    throw new EngineException("SnapshotFailed", ErrorKind.InvalidState,
                        $"pmemsave did not write {sampled} bytes to {files[i]}: can QEMU write to {folder}?")
                    { Target = files[i] };
                }
            }

            double? qemuRate = null;
            if (qemuMeasuring)
            {
                progress?.Report("Waiting for QEMU's dirty-rate measurement");
                qemuRate = await ReadDirtyRateAsync(qmp, TimeSpan.FromSeconds(calcSeconds + 15), logger, cancellationToken).ConfigureAwait(false);
            }

            progress?.Report("Comparing snapshots");
            SnapshotAnalysis analysis = await Task.Run(() => AnalyzeFiles(files, sampled), cancellationToken).ConfigureAwait(false);
            var intervals = taken.Zip(taken.Skip(1), (a, b) => b - a).ToArray();
            return ToProfile(analysis, intervals, memory, qemuRate, clock.Elapsed);
        }
        finally
        {
            try
            {
                Directory.Delete(folder, recursive: true);
            }
            catch (IOException e)
            {
                logger.LogWarning("Could not delete the snapshots in {Folder}: {Error}", folder, e.Message);
            }
        }
    }

    /// <summary>Turns a snapshot comparison into the predictor's inputs, scaled from the sampled RAM to all of it.</summary>
    public static MemoryProfile ToProfile(SnapshotAnalysis analysis, IReadOnlyList<TimeSpan> intervals, long memoryBytes, double? qemuDirtyPagesPerSecond, TimeSpan duration)
    {
        ArgumentNullException.ThrowIfNull(analysis);
        ArgumentNullException.ThrowIfNull(intervals);
        double scale = analysis.Pages > 0 ? (double)(memoryBytes / PageSize) / analysis.Pages : 1;
        double changed = analysis.ChangedPages.Sum();
        double seconds = intervals.Take(analysis.ChangedPages.Count).Sum(i => i.TotalSeconds);
        return new MemoryProfile
        {
            MemoryBytes = memoryBytes,
            ZeroPageFraction = analysis.ZeroPageFraction,
            Lz4BytesPerPage = analysis.MeanLz4Bytes ?? PageSize,
            Lz4BytesPerDirtyPage = analysis.MeanChangedLz4Bytes ?? analysis.MeanLz4Bytes ?? PageSize,
            DirtyPagesPerSecond = seconds > 0 ? changed / seconds * scale : 0,
            QemuDirtyPagesPerSecond = qemuDirtyPagesPerSecond,
            HotSetPages = (long)Math.Round(analysis.HotSetPages * scale),
            RedirtyFraction = analysis.RedirtyFraction,
            MeanDeltaBytes = analysis.MeanDeltaBytes ?? PageSize,
            DeltaOverflowFraction = analysis.DeltaOverflowFraction ?? 0,
            Duration = duration,
        };
    }

    private static SnapshotAnalysis AnalyzeFiles(IReadOnlyList<string> files, long sampled)
    {
        var streams = files.Select(f => (Stream)new FileStream(f, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20, FileOptions.SequentialScan)).ToList();
        try
        {
            // LZ4 on at most 64 Ki pages of RAM and XBZRLE on at most 64 Ki changed pages an interval: seconds, not minutes, on a big guest.
            int stride = (int)Math.Max(1, sampled / PageSize / 65536);
            return SnapshotAnalyzer.Analyze(streams, stride, 65536);
        }
        finally
        {
            foreach (var stream in streams)
            {
                stream.Dispose();
            }
        }
    }

    /// <summary>Starts calc-dirty-rate (page-sampling, QEMU's default mode); false when QEMU refuses.</summary>
    private static async Task<bool> StartDirtyRateAsync(QmpClient qmp, int seconds, ILogger logger, CancellationToken ct)
    {
        // More sampled pages than QEMU's default 256 per GiB: a small guest would otherwise be judged on a few dozen pages.
        object[] attempts = [new Dictionary<string, object> { ["calc-time"] = seconds, ["sample-pages"] = 8192 }, new Dictionary<string, object> { ["calc-time"] = seconds }];
        foreach (var arguments in attempts)
        {
            try
            {
                await qmp.ExecuteAsync("calc-dirty-rate", arguments, null, ct).ConfigureAwait(false);
                return true;
            }
            catch (QmpCommandException e)
            {
                logger.LogDebug("calc-dirty-rate refused: {Error}", e.Message);
            }
        }

        logger.LogWarning("QEMU did not start a dirty-rate measurement (calc-dirty-rate); only our own snapshot figures are used.");
        return false;
    }

    /// <summary>Polls query-dirty-rate until it says measured; QEMU's MB/s as pages per second, or null.</summary>
    private static async Task<double?> ReadDirtyRateAsync(QmpClient qmp, TimeSpan timeout, ILogger logger, CancellationToken ct)
    {
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < timeout)
        {
            JsonElement info = await qmp.ExecuteAsync("query-dirty-rate", null, null, ct).ConfigureAwait(false);
            if (QmpJson.GetString(info, "status") == "measured")
            {
                return QmpJson.GetInt64(info, "dirty-rate") is { } mib ? mib * PagesPerMiB : null;
            }

            await Task.Delay(TimeSpan.FromMilliseconds(200), ct).ConfigureAwait(false);
        }

        logger.LogWarning("QEMU's dirty-rate measurement did not finish within {Seconds} s.", timeout.TotalSeconds);
        return null;
    }
}
