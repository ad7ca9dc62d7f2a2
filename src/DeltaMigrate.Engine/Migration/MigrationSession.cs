using System.Diagnostics;
using System.Text.Json;
using DeltaMigrate.Engine.Convergence;
using DeltaMigrate.Engine.Delta;
using DeltaMigrate.Engine.Logging;
using DeltaMigrate.Engine.Migration.Commit;
using DeltaMigrate.Engine.Qmp;
using DeltaMigrate.Engine.Transport;
using DeltaMigrate.Engine.Tunnel;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace DeltaMigrate.Engine.Migration;

/// <summary>
/// The sender's state machine of one live migration, after libvirt's protocol: prepare (the
/// destination checks itself against the source), perform (QEMU migrates; we watch the rounds),
/// finish (the destination's QEMU loaded the stream and is held paused), confirm (Commit: the
/// destination runs, then the source is removed). Until Commit is sent the source is resumed on any
/// failure, after the destination was removed; once it is sent, a lost answer leaves the source
/// paused and the result in doubt. So the two copies never run at once, and one always can.
/// </summary>
public sealed class MigrationSession
{
    private static readonly TimeSpan QmpConnectTimeout = TimeSpan.FromSeconds(10);

    // QEMU does not answer QMP while the guest is frozen for the final copy: allow for a long one.
    private static readonly TimeSpan QueryTimeout = TimeSpan.FromSeconds(120);

    // How long the destination may take to report Loaded, and to answer Commit, once the source completed.
    private static readonly TimeSpan FinishTimeout = TimeSpan.FromSeconds(90);
    private static readonly TimeSpan CommitTimeout = TimeSpan.FromSeconds(30);

    // QEMU caps max-bandwidth at SIZE_MAX; 1 TiB/s lifts the 128 MiB/s default without reaching it.
    private const long Unlimited = 1L << 40;

    // Samples kept per migration (about 10 minutes at the default 200 ms poll) before every other one goes.
    private const int MaxSamples = 3000;

    private readonly MigrationRequest _request;
    private readonly MigrationOptions _options;
    private readonly ILogger _logger;
    private readonly IProgress<MigrationProgress>? _progress;
    private readonly Guid _migrationId = Guid.NewGuid();
    private readonly DateTimeOffset _startTime = DateTimeOffset.UtcNow;
    private Func<long>? _wireBytes;
    private long _appliedBandwidth;
    private Func<IReadOnlyList<CodecBytes>>? _codecs;
    private readonly ConvergencePolicy _convergence;
    private long _clockOrigin;

    /// <summary>The same, logging to a host's <see cref="IEngineLogSink"/> (the cmdlets: no logging types cross into PowerShell's load context).</summary>
    public MigrationSession(MigrationRequest request, MigrationOptions options, IEngineLogSink log, IProgress<MigrationProgress>? progress = null)
        : this(request, options, SinkLogger.From(log), progress)
    {
    }

    public MigrationSession(MigrationRequest request, MigrationOptions options, ILogger? logger = null, IProgress<MigrationProgress>? progress = null)
    {
        _request = request;
        _options = options;
        _logger = logger ?? NullLogger.Instance;
        _progress = progress;
        _convergence = new ConvergencePolicy(options.Converge, QemuDowntimeLimit, request.VMName, _logger);
    }

    public async Task<MigrationResult> RunAsync(CancellationToken cancellationToken = default)
    {
        await using var source = await ConnectAsync(_request.SourceControlSocket, _request.VMName, cancellationToken);
        var sourceBefore = await PreflightSourceAsync(source, cancellationToken);
        var described = await DestinationVm.DescribeAsync(source, _request.VMName, cancellationToken);

        // The Delta cache is reserved before it is allocated (and before the destination is asked to
        // wait), and given back on every way out of this method.
        using var cache = _options.Compress == CompressionMode.Delta && _options.CacheBudget is { } budget
            ? await ReserveCacheAsync(budget, described.MemoryBytes, cancellationToken)
            : null;

        // Prepare: the destination checks itself before QEMU is touched (a wrong token, an unreachable
        // receiver, a mismatched machine fail here, with the source untouched).
        await using var link = await OpenLinkAsync(cancellationToken);
        var dataPath = UsesTunnel ? DataPath.Tunnel : DataPath.Qemu;
        var prepared = await link.PrepareAsync(dataPath, described, _migrationId, cancellationToken);
        var outgoing = _request.TunnelDirectory.OutgoingSocket(_request.VMName);
        await using var path = OutgoingPath.Create(dataPath, link, prepared, outgoing,
            _options.Compress == CompressionMode.Delta, cache?.Bytes ?? DeltaCacheBytes(described.MemoryBytes), _logger);

        // QEMU paces None and Native itself: counted in, this migration gets its part of -Bandwidth.
        using var seat = UsesTunnel ? null : _options.BandwidthShare?.Join();
        await ConfigureSourceAsync(source, cancellationToken);
        return await MigrateAsync(source, link, path, sourceBefore.Running, described.MemoryBytes, cancellationToken);
    }

    private bool UsesTunnel => _options.Compress is CompressionMode.Delta or CompressionMode.Lz4;

    private bool StaysPaused => _request.Destination is LocalVmTarget local && local.Record.StaysPaused;

    /// <summary>
    /// QEMU sizes its final copy to fill its downtime limit. Through our tunnel the guest also waits
    /// for the pipeline to drain and the destination to load, so QEMU gets two thirds of the budget.
    /// </summary>
    private TimeSpan QemuDowntimeLimit => UsesTunnel ? _options.MaxDowntime * 2 / 3 : _options.MaxDowntime;

    /// <summary>The page cache for Delta: the user's -CacheSize, else half the VM's RAM (64 MiB to 2 GiB).</summary>
    private long DeltaCacheBytes(long memorySize) =>
        _options.CacheSize ?? Math.Clamp(memorySize / 2, MigrationOptions.DefaultCacheSize, 2L << 30);

    private async Task<CacheBudget.CacheReservation> ReserveCacheAsync(CacheBudget budget, long memorySize, CancellationToken cancellationToken)
    {
        var exact = _options.CacheSize is not null;
        var wanted = DeltaCacheBytes(memorySize);
        if (budget.FreeBytes < Math.Min(wanted, exact ? wanted : CacheBudget.MinimumCache) && wanted <= budget.TotalBytes)
        {
            _logger.LogInformation("{VM}: waiting for a running migration to release page-cache memory ({Free} of {Total} budget bytes free, {Wanted} wanted)",
                _request.VMName, budget.FreeBytes, budget.TotalBytes, wanted);
        }

        var reservation = await budget.ReserveAsync(_request.VMName, wanted, exact, cancellationToken);
        if (reservation.Shrunk)
        {
            _logger.LogWarning("{VM}: page cache shrunk from {Wanted} to {Granted} bytes to fit the memory budget of {Total} bytes shared with {Others} running migration(s); give -MemoryBudget to allow more",
                _request.VMName, reservation.WantedBytes, reservation.Bytes, budget.TotalBytes, reservation.OtherHolders);
        }

        return reservation;
    }

    /// <summary>QEMU's max-bandwidth: this migration's share of -Bandwidth when several run, else -Bandwidth (or none).</summary>
    private long QemuBandwidth => _options.BandwidthShare?.PerMigration ?? _options.Bandwidth ?? Unlimited;

    /// <summary>Another migration started or ended: QEMU gets the new share (None and Native only).</summary>
    private async Task ApplyBandwidthShareAsync(QmpClient source, CancellationToken cancellationToken)
    {
        if (UsesTunnel || _options.BandwidthShare is null || QemuBandwidth == _appliedBandwidth)
        {
            return;
        }

        _appliedBandwidth = QemuBandwidth;
        _logger.LogDebug("{VM}: max-bandwidth now {Bandwidth} bytes/s (shared)", _request.VMName, _appliedBandwidth);
        await source.MigrateSetParametersAsync(new Dictionary<string, object> { ["max-bandwidth"] = _appliedBandwidth }, cancellationToken);
    }

    private async Task<DestinationLink> OpenLinkAsync(CancellationToken cancellationToken)
    {
        switch (_request.Destination)
        {
            case LocalVmTarget local:
                return await DestinationLink.StartLocalAsync(local, _options, _logger, cancellationToken);
            case RemoteTarget remote:
                var token = _options.Token ?? throw new EngineException("TokenRequired", ErrorKind.InvalidArgument,
                    $"A migration to {remote.Display} goes through Receive-KvmVM on that host: pass the -Token it printed (every mode needs it, since only the receiver can check, commit or remove the destination).")
                { Target = remote.Display };
                return await DestinationLink.ConnectRemoteAsync(remote, token, _options, _logger, cancellationToken);
            default:
                throw new ArgumentException($"Unknown destination {_request.Destination}");
        }
    }

    private async Task<QmpClient> ConnectAsync(string socket, string vmName, CancellationToken cancellationToken)
    {
        try
        {
            return await QmpClient.ConnectUnixAsync(socket, _logger, QmpConnectTimeout, cancellationToken);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            throw new EngineException("VMNotReachable", ErrorKind.ConnectionError,
                $"Cannot reach the QMP monitor of VM '{vmName}' at {socket}: {e.Message}. Check that the VM runs (Get-KvmVM) and that no other client holds its monitor.",
                e)
            { Target = vmName };
        }
    }

    private async Task<VmStatus> PreflightSourceAsync(QmpClient source, CancellationToken cancellationToken)
    {
        var status = await source.QueryStatusAsync(cancellationToken);
        if (status.Status is not ("running" or "paused" or "prelaunch"))
        {
            throw new EngineException("SourceNotMigratable", ErrorKind.InvalidState,
                $"VM '{_request.VMName}' is '{status.Status}'; only a running or paused VM can be migrated.")
            { Target = _request.VMName };
        }

        var migration = await source.QueryMigrateAsync(cancellationToken);
        if (migration.Status is "setup" or "active" or "pre-switchover" or "device" or "cancelling")
        {
            throw new EngineException("MigrationInProgress", ErrorKind.InvalidState,
                $"VM '{_request.VMName}' is already migrating (status '{migration.Status}'). Wait for it, or cancel it with Invoke-KvmQmp -Name {_request.VMName} -Command migrate_cancel.")
            { Target = _request.VMName };
        }

        var blockers = MigrationBlockers(migration)
            ?? (UsesTunnel ? await SectionsTheTranscoderCannotParseAsync(source, cancellationToken) : null);
        if (blockers is not null)
        {
            throw new EngineException("SourceNotMigratable", ErrorKind.InvalidState,
                $"VM '{_request.VMName}' cannot be migrated: {blockers}")
            { Target = _request.VMName };
        }

        return status;
    }

    /// <summary>Devices that block migration, as QEMU lists them (before anything is touched).</summary>
    private static string? MigrationBlockers(MigrationInfo info) =>
        QmpJson.TryGet(info.Raw, "blocked-reasons", out var reasons) && reasons.ValueKind == JsonValueKind.Array && reasons.GetArrayLength() > 0
            ? string.Join("; ", reasons.EnumerateArray().Select(r => r.GetString()))
            : null;

    /// <summary>Block migration and dirty bitmaps add live sections of their own; our stream reader knows only RAM.</summary>
    private async Task<string?> SectionsTheTranscoderCannotParseAsync(QmpClient source, CancellationToken cancellationToken)
    {
        var capabilities = await source.QueryMigrateCapabilitiesAsync(cancellationToken);
        var live = new[] { "block", "dirty-bitmaps" }.Where(c => capabilities.TryGetValue(c, out var on) && on).ToList();
        return live.Count == 0 ? null
            : $"its migration capabilities {string.Join(", ", live)} add live sections that -Compress {_options.Compress} does not carry. Use -Compress Native or None, or turn them off.";
    }

    private async Task ConfigureSourceAsync(QmpClient source, CancellationToken cancellationToken)
    {
        var capabilities = new Dictionary<string, bool>
        {
            ["events"] = true,
            ["xbzrle"] = _options.Compress == CompressionMode.Native,
            ["auto-converge"] = _options.AutoConverge,
        };
        _convergence.AddCapabilities(capabilities);
        await source.MigrateSetCapabilitiesAsync(capabilities, cancellationToken);

        var parameters = new Dictionary<string, object>
        {
            ["downtime-limit"] = (long)QemuDowntimeLimit.TotalMilliseconds,
            ["max-bandwidth"] = _appliedBandwidth = QemuBandwidth,
        };
        if (_options.Compress == CompressionMode.Native)
        {
            parameters["xbzrle-cache-size"] = _options.CacheSize ?? MigrationOptions.DefaultCacheSize;
        }

        if (UsesTunnel)
        {
            // Our tunnel paces the wire; QEMU should write as fast as we drain, so it measures the real link.
            parameters["max-bandwidth"] = Unlimited;
        }

        _convergence.AddParameters(parameters);
        await source.MigrateSetParametersAsync(parameters, cancellationToken);
    }

    /// <summary>Perform, then finish and confirm, or put everything back.</summary>
    private async Task<MigrationResult> MigrateAsync(QmpClient source, DestinationLink link, OutgoingPath path, bool sourceWasRunning, long memorySize,
        CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        _clockOrigin = Stopwatch.GetTimestamp();
        _logger.LogInformation("Migrating {VM} to {Destination} ({Uri}), mode {Mode}", _request.VMName, _request.Destination.Display, path.QemuUri, _options.Compress);

        // Downtime as the guest feels it: from the source's STOP (QEMU's timestamp, this host's clock)
        // until the destination answers that it runs (or holds the complete state, staying paused).
        var frozen = Observe(source.WaitForEventAsync("STOP", cancellationToken));
        path.Start();
        _wireBytes = path.Pipeline is { } pipeline ? () => pipeline.TunnelStats.WireBytes : null;
        _codecs = path.Pipeline is { } codecPipeline ? () => codecPipeline.TunnelStats.Codecs : null;
        await source.MigrateAsync(path.QemuUri, cancellationToken);

        var samples = new List<MigrationSample>();
        MigrationInfo? lastFull = null;
        MigrationInfo info;
        TimeSpan? pausedAt = null;
        var timedOut = false;
        var cancelRequested = false;
        var userCancelled = false;
        string? failure = null;
        while (true)
        {
            try
            {
                info = MigrationInfo.FromJson(await source.ExecuteAsync("query-migrate", null, QueryTimeout, cancellationToken));
                if (info.Ram is not null)
                {
                    lastFull = info;
                    var elapsed = clock.Elapsed;
                    var newRound = RecordSample(info, elapsed, samples, path);
                    if (!info.IsFinished)
                    {
                        await _convergence.OnSampleAsync(source, info, elapsed, newRound, cancellationToken);
                    }

                    Report(info, elapsed, memorySize);
                }

                if (info.IsFinished)
                {
                    break;
                }

                await ApplyBandwidthShareAsync(source, cancellationToken);

                if (!timedOut && _options.Timeout is { } limit && clock.Elapsed >= limit)
                {
                    timedOut = true;
                    if (_options.TimeoutAction == TimeoutAction.Pause)
                    {
                        _logger.LogWarning("{VM}: no convergence after {Limit}; pausing the guest to finish", _request.VMName, limit);
                        await source.StopAsync(cancellationToken);
                        pausedAt = clock.Elapsed;
                    }
                    else
                    {
                        _logger.LogWarning("{VM}: no convergence after {Limit}; cancelling", _request.VMName, limit);
                        path.ExpectCancel();
                        await source.MigrateCancelAsync(cancellationToken);
                        cancelRequested = true;
                    }
                }

                await Task.Delay(_options.PollInterval, cancellationToken);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                // Ctrl-C: cancel in QEMU; even if QEMU finished meanwhile, nothing was committed, so
                // the abort below resumes the source.
                _logger.LogWarning("{VM}: migration cancelled by the user; cancelling in QEMU", _request.VMName);
                path.ExpectCancel();
                info = await CancelInQemuAsync(source);
                userCancelled = cancelRequested = true;
                break;
            }
            catch (Exception e) when (e is QmpException or TimeoutException)
            {
                // The source's monitor went away or stopped answering: abort (QEMU, if alive, cancels).
                _logger.LogError("{VM}: the source's monitor failed during the migration: {Error}", _request.VMName, e.Message);
                info = e is TimeoutException ? await CancelInQemuAsync(source) : new MigrationInfo { Status = "failed" };
                failure = $"the source's monitor failed ({e.Message})";
                break;
            }
        }

        var totalTime = clock.Elapsed;
        var stats = lastFull ?? info;
        if (info.Status == "completed" && failure is null)
        {
            // QEMU 7.2 says "completed" before it computes total-time and downtime: ask once more.
            var settled = await TryQueryMigrateAsync(source);
            stats = settled?.Ram is not null ? settled : stats;
        }

        if (info.Status == "completed" && !cancelRequested && failure is null)
        {
            // Finish: the destination's QEMU must have loaded the stream and be held paused.
            try
            {
                await path.FinishAsync(CancellationToken.None).WaitAsync(FinishTimeout, CancellationToken.None);
                var loadedAt = DateTimeOffset.Now;
                return await ConfirmAsync(source, link, stats, totalTime, pausedAt, timedOut, memorySize, samples, path, frozen, loadedAt);
            }
            catch (Exception e) when (e is not MigrationInDoubtException and not MigrationFailedException)
            {
                failure = e.Message;
            }
        }

        // Abort: nothing was committed. The destination goes first, then the source runs again.
        failure ??= info.ErrorDescription;
        await link.Control.FailAsync($"The sender aborts the migration: {failure ?? info.Status}; it resumes its source.");
        var destinationState = await link.ConfirmGoneAsync();
        var sourceState = await RestoreSourceAsync(source, sourceWasRunning);
        if (userCancelled)
        {
            cancellationToken.ThrowIfCancellationRequested();
        }

        var status = info.Status == "cancelled" || cancelRequested ? MigrationStatus.Cancelled : MigrationStatus.Failed;
        var failed = Result(stats, status, totalTime, pausedAt, timedOut, memorySize, samples, sourceState, destinationState, path, failure);
        var (id, kind, what) = (timedOut && cancelRequested, failed.BytesTransferred) switch
        {
            (true, _) => ("MigrationTimedOut", ErrorKind.OperationTimeout,
                $"did not converge within {_options.Timeout} and was cancelled (try -Converge Throttle, -TimeoutAction Pause, or a compression mode)"),
            (false, 0) => ("DestinationUnreachable", ErrorKind.ConnectionError,
                $"could not start: {failure ?? info.Status}. Check that the destination QEMU is waiting for a migration"),
            _ => ("MigrationFailed", ErrorKind.ConnectionError, $"failed: {failure ?? info.Status}"),
        };
        throw new MigrationFailedException(id, kind,
            $"Migration of '{_request.VMName}' to {_request.Destination.Display} {what}. Source is {sourceState}; destination is {destinationState}.",
            failed);
    }

    /// <summary>
    /// Confirm: Commit, the destination's Running, then the source goes (unless -KeepSource). A lost
    /// answer is the one case nobody can decide alone: the source stays paused and the error says how to finish.
    /// </summary>
    private async Task<MigrationResult> ConfirmAsync(QmpClient source, DestinationLink link, MigrationInfo stats, TimeSpan totalTime, TimeSpan? pausedAt,
        bool timedOut, long memorySize, List<MigrationSample> samples, OutgoingPath path, Task<QmpEvent> frozen, DateTimeOffset loadedAt)
    {
        var result = Result(stats, MigrationStatus.Completed, totalTime, pausedAt, timedOut, memorySize, samples, "postmigrate", "paused", path, null);
        string destinationState;
        try
        {
            using var deadline = new CancellationTokenSource(CommitTimeout);
            destinationState = CommitJson.Read<RunningReply>(await link.Control.CommitAsync(deadline.Token), "Running").State;
        }
        catch (TunnelException e) when (e.ErrorId == TunnelException.RemoteError)
        {
            // The receiver could not run the destination and removed it: the source takes over again.
            var sourceState = await RestoreSourceAsync(source, true);
            throw new MigrationFailedException("DestinationNotRunning", ErrorKind.InvalidState,
                $"'{_request.VMName}' was loaded by {_request.Destination.Display}, which then failed to run it: {e.Message}. The destination was removed; the source was resumed and is {sourceState}.",
                result with { Status = MigrationStatus.Failed, SourceState = sourceState, DestinationState = "exited", Error = e.Message });
        }
        catch (Exception e) when (e is TunnelException or OperationCanceledException or EngineException)
        {
            var reason = e is OperationCanceledException ? $"no answer within {CommitTimeout.TotalSeconds:0} s" : e.Message;
            throw new MigrationInDoubtException(
                $"'{_request.VMName}' was committed to {_request.Destination.Display} but the destination's answer was lost ({reason}). " +
                $"The source '{_request.VMName}' is paused and holds the complete state. If the destination runs (Get-KvmVM on its host), remove the source: Stop-KvmVM {_request.VMName} -Force. " +
                $"If it does not, resume the source: Resume-KvmVM {_request.VMName}.",
                _request.VMName,
                result with { Status = MigrationStatus.InDoubt, DestinationState = "unknown", Error = reason });
        }

        var committedAt = DateTimeOffset.Now;
        var downtime = frozen.IsCompletedSuccessfully
            ? ((StaysPaused ? loadedAt : committedAt) - frozen.Result.Timestamp) is var d && d > TimeSpan.Zero ? d : result.Downtime
            : result.Downtime;
        var sourceNow = _options.KeepSource ? await DescribeAsync(source) : await QuitSourceAsync(source);
        return result with { DestinationState = destinationState, SourceState = sourceNow, Downtime = downtime, EndTime = DateTimeOffset.UtcNow };
    }

    /// <summary>After the commit the source's copy is stale: quit its QEMU, as Hyper-V and libvirt do.</summary>
    private async Task<string> QuitSourceAsync(QmpClient source)
    {
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            await source.QuitAsync(timeout.Token);
            while (true)
            {
                await source.QueryStatusAsync(timeout.Token);
                await Task.Delay(50, timeout.Token);
            }
        }
        catch (QmpConnectionClosedException)
        {
            return "exited";
        }
        catch (Exception e) when (e is QmpException or OperationCanceledException or TimeoutException)
        {
            _logger.LogWarning("{VM}: the source did not quit after the commit: {Error}. Stop it with Stop-KvmVM {VM} -Force.", _request.VMName, e.Message, _request.VMName);
            return await DescribeAsync(source) ?? "unknown";
        }
    }

    private async Task<MigrationInfo?> TryQueryMigrateAsync(QmpClient source)
    {
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            return await source.QueryMigrateAsync(timeout.Token);
        }
        catch (Exception e) when (e is QmpException or OperationCanceledException or TimeoutException)
        {
            return null;
        }
    }

    /// <summary>Adds a sample; when QEMU's dirty-sync count moved on, returns the new round for the convergence policy.</summary>
    private RoundObservation? RecordSample(MigrationInfo info, TimeSpan elapsed, List<MigrationSample> samples, OutgoingPath path)
    {
        var ram = info.Ram!;
        var round = (int)(ram.DirtySyncCount ?? 0);
        var counters = path.Pipeline?.Counters;
        samples.Add(new MigrationSample
        {
            Elapsed = elapsed,
            Round = round,
            BytesRemaining = ram.Remaining ?? 0,
            StreamBytes = ram.Transferred ?? 0,
            WireBytes = path.Pipeline?.TunnelStats.WireBytes ?? ram.Transferred ?? 0,
            DirtyPagesRate = ram.DirtyPagesRate ?? 0,
            ThroughputMbps = ram.Mbps ?? 0,
            RawPages = counters is null ? ram.Normal ?? 0 : DeltaCounters.Read(ref counters.RawPages),
            XbzrlePages = counters is null ? info.XbzrleCache?.Pages ?? 0 : DeltaCounters.Read(ref counters.XbzrlePages),
            ZeroPages = counters is null ? ram.Duplicate ?? 0 : DeltaCounters.Read(ref counters.ZeroPages),
            UnchangedPages = counters is null ? 0 : DeltaCounters.Read(ref counters.UnchangedPages),
        });
        if (samples.Count > MaxSamples)
        {
            ThinSamples(samples);
        }

        if (round > 0 && (samples.Count == 1 || samples[^2].Round < round))
        {
            _logger.LogDebug("{VM}: round {Round} at {Elapsed}: {Remaining} bytes remaining", _request.VMName, round, elapsed, ram.Remaining);
            var added = samples[^1];
            return new RoundObservation(round, elapsed, added.BytesRemaining, added.StreamBytes, added.WireBytes);
        }

        return null;
    }

    // A long migration keeps every other sample, but never the one where a round begins, nor the last.
    private static void ThinSamples(List<MigrationSample> samples)
    {
        var kept = new List<MigrationSample>(samples.Count / 2 + 16);
        for (var i = 0; i < samples.Count; i++)
        {
            if (i % 2 == 0 || i == samples.Count - 1 || samples[i].Round != samples[i - 1].Round)
            {
                kept.Add(samples[i]);
            }
        }

        samples.Clear();
        samples.AddRange(kept);
    }

    private void Report(MigrationInfo info, TimeSpan elapsed, long memorySize) => _progress?.Report(new MigrationProgress
    {
        VMName = _request.VMName,
        Status = info.Status ?? "unknown",
        Elapsed = elapsed,
        Round = (int)(info.Ram?.DirtySyncCount ?? 0),
        BytesTransferred = info.Ram?.Transferred ?? 0,
        BytesRemaining = info.Ram?.Remaining ?? memorySize,
        MemorySize = memorySize,
        ThroughputMbps = info.Ram?.Mbps ?? 0,
        ExpectedDowntime = info.ExpectedDowntimeMs is { } ms ? TimeSpan.FromMilliseconds(ms) : null,
        WireBytes = _wireBytes?.Invoke() ?? info.Ram?.Transferred ?? 0,
        Codecs = _codecs?.Invoke() ?? [],
        ThrottlePercent = (int)(info.CpuThrottlePercentage ?? 0),
    });

    private MigrationResult Result(MigrationInfo stats, MigrationStatus status, TimeSpan totalTime, TimeSpan? pausedAt, bool timedOut,
        long memorySize, List<MigrationSample> samples, string? sourceState, string? destinationState, OutgoingPath path, string? error)
    {
        var ram = stats.Ram;
        var qemuDowntime = TimeSpan.FromMilliseconds(stats.DowntimeMs ?? 0);
        var streamBytes = ram?.Transferred ?? 0;
        var transferred = path.Pipeline?.TunnelStats.WireBytes ?? streamBytes;
        var xbzrle = stats.XbzrleCache;
        return new MigrationResult
        {
            VMName = _request.VMName,
            Status = status,
            Mode = _options.Compress,
            Source = _request.VMName,
            Destination = _request.Destination.Display,
            MigrationId = _migrationId,
            StartTime = _startTime,
            EndTime = DateTimeOffset.UtcNow,
            SourceHost = System.Net.Dns.GetHostName(),
            DestinationHost = _request.Destination is RemoteTarget remote ? remote.Host : System.Net.Dns.GetHostName(),
            SourceState = sourceState,
            DestinationState = destinationState,
            // QEMU 7.2 reports "completed" a moment before it fills in total-time: a 0 means "not yet".
            TotalTime = stats.TotalTimeMs is > 0 and var total && status == MigrationStatus.Completed ? TimeSpan.FromMilliseconds(total) : totalTime,
            Downtime = pausedAt is { } paused && status == MigrationStatus.Completed ? Max(qemuDowntime, totalTime - paused) : qemuDowntime,
            SetupTime = TimeSpan.FromMilliseconds(stats.SetupTimeMs ?? 0),
            MemorySize = memorySize,
            BytesTransferred = transferred,
            StreamBytes = streamBytes,
            NormalPages = ram?.Normal ?? 0,
            NormalBytes = ram?.NormalBytes ?? 0,
            ZeroPages = ram?.Duplicate ?? 0,
            DirtySyncCount = (int)(ram?.DirtySyncCount ?? 0),
            ThroughputMbps = totalTime.TotalSeconds > 0 ? transferred * 8 / totalTime.TotalSeconds / 1e6 : 0,
            Converged = status == MigrationStatus.Completed && pausedAt is null,
            TimedOut = timedOut,
            Compression = path.Pipeline is { } tunnelSource ? TunnelCompression(tunnelSource)
                : xbzrle is null || _options.Compress != CompressionMode.Native ? null : new CompressionStats
                {
                    CacheSize = xbzrle.CacheSize ?? 0,
                    EncodedBytes = xbzrle.Bytes ?? 0,
                    CacheHits = xbzrle.Pages ?? 0,
                    CacheMisses = xbzrle.CacheMiss ?? 0,
                    CacheMissRate = xbzrle.CacheMissRate ?? 0,
                    EncodingRate = xbzrle.EncodingRate ?? 0,
                    Overflows = xbzrle.Overflow ?? 0,
                    StreamBytes = streamBytes,
                    WireBytes = streamBytes,
                },
            Convergence = _convergence.Stats(totalTime),
            Rounds = path.Pipeline is { PassesOrigin: { } origin } pipeline && pipeline.Passes is { Count: > 0 } passes
                ? RoundHistory.FromPasses(passes, Stopwatch.GetElapsedTime(_clockOrigin, origin), samples)
                : RoundHistory.FromSamples(samples),
            Samples = samples.ToArray(),
            Error = error,
        };
    }

    internal static CompressionStats TunnelCompression(TunnelSource source)
    {
        var wire = source.TunnelStats;
        var stats = new CompressionStats
        {
            StreamBytes = source.StreamBytes,
            WireBytes = wire.WireBytes,
            CompressedFrames = wire.CompressedFrames,
            Frames = wire.Frames,
            CompressTime = wire.CompressTime,
            Codecs = wire.Codecs,
        };
        if (source.Counters is not { } c)
        {
            return stats;
        }

        var hits = DeltaCounters.Read(ref c.CacheHits);
        var misses = DeltaCounters.Read(ref c.CacheMisses);
        return stats with
        {
            CacheSize = DeltaCounters.Read(ref c.CacheSize),
            EncodedBytes = DeltaCounters.Read(ref c.XbzrleBytes),
            CacheHits = hits,
            CacheMisses = misses,
            CacheMissRate = hits + misses == 0 ? 0 : (double)misses / (hits + misses),
            CacheEvictions = DeltaCounters.Read(ref c.CacheEvictions),
            Overflows = DeltaCounters.Read(ref c.Overflows),
            XbzrlePages = DeltaCounters.Read(ref c.XbzrlePages),
            UnchangedPages = DeltaCounters.Read(ref c.UnchangedPages),
            RawPages = DeltaCounters.Read(ref c.RawPages),
            ZeroPages = DeltaCounters.Read(ref c.ZeroPages),
            EncodeTime = c.EncodeTime,
        };
    }

    /// <summary>Keeps a fire-and-forget event wait from surfacing as an unobserved exception.</summary>
    private static Task<QmpEvent> Observe(Task<QmpEvent> wait)
    {
        _ = wait.ContinueWith(t => t.Exception, TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously);
        return wait;
    }

    private static TimeSpan Max(TimeSpan a, TimeSpan b) => a > b ? a : b;

    /// <summary>migrate_cancel, then the status QEMU ends in (it may still be "completed": that was the race).</summary>
    private async Task<MigrationInfo> CancelInQemuAsync(QmpClient source)
    {
        using var grace = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        try
        {
            await source.MigrateCancelAsync(grace.Token);
            while (true)
            {
                var info = await source.QueryMigrateAsync(grace.Token);
                if (info.IsFinished)
                {
                    return info;
                }

                await Task.Delay(_options.PollInterval, grace.Token);
            }
        }
        catch (Exception e) when (e is QmpException or OperationCanceledException or TimeoutException)
        {
            _logger.LogWarning("{VM}: could not confirm the cancellation: {Error}", _request.VMName, e.Message);
            return new MigrationInfo { Status = "failed" };
        }
    }

    /// <summary>Nothing is lost: a source that ran before the migration runs after it.</summary>
    private async Task<string> RestoreSourceAsync(QmpClient source, bool sourceWasRunning)
    {
        try
        {
            var status = await source.QueryStatusAsync(CancellationToken.None);
            if (sourceWasRunning && !status.Running)
            {
                _logger.LogWarning("{VM}: source was left '{Status}'; resuming it", _request.VMName, status.Status);
                await source.ContAsync(CancellationToken.None);
                status = await source.QueryStatusAsync(CancellationToken.None);
            }

            return status.Status;
        }
        catch (Exception e) when (e is QmpException or TimeoutException)
        {
            _logger.LogError("{VM}: the source's monitor does not answer: {Error}", _request.VMName, e.Message);
            return "unreachable";
        }
    }

    private static async Task<string?> DescribeAsync(QmpClient? client)
    {
        if (client is null)
        {
            return null;
        }

        try
        {
            return (await client.QueryStatusAsync(CancellationToken.None)).Status;
        }
        catch (QmpException)
        {
            return "exited";
        }
    }
}
