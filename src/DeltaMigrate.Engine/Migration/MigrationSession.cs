using System.Diagnostics;
using System.Net;
using System.Text.Json;
using DeltaMigrate.Engine.Delta;
using DeltaMigrate.Engine.Qmp;
using DeltaMigrate.Engine.Transport;
using DeltaMigrate.Engine.Vm;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace DeltaMigrate.Engine.Migration;

/// <summary>
/// Drives one live migration with QEMU's own transport: preflight, capabilities, migrate, watch
/// the rounds, and confirm both sides afterwards. Whatever goes wrong, the source is left running.
/// </summary>
public sealed class MigrationSession
{
    private static readonly TimeSpan QmpConnectTimeout = TimeSpan.FromSeconds(10);

    // QEMU does not answer QMP while the guest is frozen for the final copy: allow for a long one.
    private static readonly TimeSpan QueryTimeout = TimeSpan.FromSeconds(120);

    // QEMU caps max-bandwidth at SIZE_MAX; 1 TiB/s lifts the 128 MiB/s default without reaching it.
    private const long Unlimited = 1L << 40;

    private readonly MigrationRequest _request;
    private readonly MigrationOptions _options;
    private readonly ILogger _logger;
    private readonly IProgress<MigrationProgress>? _progress;
    private Func<long>? _wireBytes;

    public MigrationSession(MigrationRequest request, MigrationOptions options, ILogger? logger = null, IProgress<MigrationProgress>? progress = null)
    {
        _request = request;
        _options = options;
        _logger = logger ?? NullLogger.Instance;
        _progress = progress;
    }

    public async Task<MigrationResult> RunAsync(CancellationToken cancellationToken = default)
    {
        await using var source = await ConnectAsync(_request.SourceControlSocket, _request.VMName, cancellationToken);
        var sourceBefore = await PreflightSourceAsync(source, cancellationToken);
        var memorySize = (await source.QueryMemorySizeSummaryAsync(cancellationToken)).BaseMemory;

        QmpClient? destination = null;
        await using var tunnel = new TunnelEnds();
        try
        {
            string uri;
            if (_request.Destination is LocalVmTarget local)
            {
                destination = await ConnectAsync(local.ControlSocket, local.Name, cancellationToken);
                await PreflightDestinationAsync(destination, local, memorySize, cancellationToken);
                if (UsesTunnel)
                {
                    await StartLocalReceiverAsync(destination, local, tunnel, cancellationToken);
                    uri = "";
                }
                else
                {
                    uri = await ListenLocallyAsync(destination, local, cancellationToken);
                }
            }
            else
            {
                var remote = (RemoteTarget)_request.Destination;
                uri = UsesTunnel ? "" : $"tcp:{remote.UriHost}:{remote.Port}";
                if (UsesTunnel)
                {
                    tunnel.Token = _options.Token ?? throw new EngineException("TokenRequired", ErrorKind.InvalidArgument,
                        $"-Compress {_options.Compress} to {remote.Display} needs the -Token that Receive-KvmVM printed on the destination host.")
                    { Target = remote.Display };
                    tunnel.Host = remote.Host;
                    tunnel.Port = remote.Port;
                }
            }

            if (UsesTunnel)
            {
                uri = await StartSenderAsync(tunnel, memorySize, cancellationToken);
            }

            await ConfigureSourceAsync(source, cancellationToken);
            return await MigrateAsync(source, destination, uri, sourceBefore.Running, memorySize, tunnel, cancellationToken);
        }
        finally
        {
            if (destination is not null)
            {
                await destination.DisposeAsync();
            }
        }
    }

    private bool UsesTunnel => _options.Compress is CompressionMode.Delta or CompressionMode.Lz4;

    /// <summary>
    /// QEMU sizes its final copy to fill its downtime limit. Through our tunnel the guest also waits
    /// for the pipeline to drain and the destination to load, so QEMU gets two thirds of the budget.
    /// </summary>
    private TimeSpan QemuDowntimeLimit => UsesTunnel ? _options.MaxDowntime * 2 / 3 : _options.MaxDowntime;

    /// <summary>The page cache for Delta: the user's -CacheSize, else half the VM's RAM (64 MiB to 2 GiB).</summary>
    private long DeltaCacheBytes(long memorySize) =>
        _options.CacheSize ?? Math.Clamp(memorySize / 2, MigrationOptions.DefaultCacheSize, 2L << 30);

    private async Task<string> StartSenderAsync(TunnelEnds tunnel, long memorySize, CancellationToken cancellationToken)
    {
        var socket = new RunDirectory(Path.GetDirectoryName(_request.SourceControlSocket)!).OutgoingSocket(_request.VMName);
        // Small frames, few in flight: every byte buffered between the QEMUs is downtime in the final copy.
        var options = new TunnelOptions { BandwidthBytesPerSecond = _options.Bandwidth, FrameSize = 64 * 1024, MaxFramesInFlight = 4 };
        // A receiver that is not there or refuses the token fails here (TunnelConnectFailed,
        // TunnelAuthenticationFailed), before QEMU is asked to do anything.
        tunnel.Source = await DeltaSource.StartAsync(socket, tunnel.Host!, tunnel.Port, tunnel.Token!,
            _options.Compress == CompressionMode.Delta, DeltaCacheBytes(memorySize), options, _logger, cancellationToken);
        return tunnel.Source.QemuUri;
    }

    /// <summary>One host: our receiver feeds the waiting VM through a unix socket next to its monitor.</summary>
    private async Task StartLocalReceiverAsync(QmpClient destination, LocalVmTarget target, TunnelEnds tunnel, CancellationToken cancellationToken)
    {
        var incoming = new RunDirectory(Path.GetDirectoryName(target.ControlSocket)!).IncomingSocket(target.Name);
        File.Delete(incoming);
        await destination.MigrateIncomingAsync($"unix:{incoming}", cancellationToken);
        tunnel.Token = MigrationToken.Create();
        tunnel.Receiver = DeltaReceiver.Start(new IPEndPoint(_options.LocalLink.Listen, 0), tunnel.Token, incoming, _logger);
        tunnel.Receiving = tunnel.Receiver.ReceiveAsync(tunnel.Stopping);
        tunnel.Host = _options.LocalLink.Connect.ToString();
        tunnel.Port = tunnel.Receiver.Endpoint.Port;
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

    private async Task PreflightDestinationAsync(QmpClient destination, LocalVmTarget target, long memorySize, CancellationToken cancellationToken)
    {
        var status = await destination.QueryStatusAsync(cancellationToken);
        if (status.Status != "inmigrate")
        {
            throw new EngineException("DestinationNotWaiting", ErrorKind.InvalidState,
                $"Destination VM '{target.Name}' is '{status.Status}', not waiting for a migration. Start it with Start-KvmVM -Incoming and the same -Memory and -Machine as '{_request.VMName}'.")
            { Target = target.Name };
        }

        var destinationMemory = (await destination.QueryMemorySizeSummaryAsync(cancellationToken)).BaseMemory;
        if (destinationMemory != memorySize)
        {
            throw new EngineException("MemorySizeMismatch", ErrorKind.InvalidArgument,
                $"Destination VM '{target.Name}' has {destinationMemory / (1024 * 1024)} MiB of memory but '{_request.VMName}' has {memorySize / (1024 * 1024)} MiB; start the destination with -Memory {memorySize / (1024 * 1024)}MB.")
            { Target = target.Name };
        }

        await destination.MigrateSetCapabilitiesAsync(new Dictionary<string, bool> { ["events"] = true }, cancellationToken);
    }

    private async Task<string> ListenLocallyAsync(QmpClient destination, LocalVmTarget target, CancellationToken cancellationToken)
    {
        // Port 0: QEMU picks a free port and reports it, so two migrations never race for one.
        await destination.MigrateIncomingAsync($"tcp:{LocalLink.UriHost(_options.LocalLink.Listen)}:0", cancellationToken);
        var incoming = await destination.QueryMigrateAsync(cancellationToken);
        if (QmpJson.TryGet(incoming.Raw, "socket-address", out var addresses))
        {
            foreach (var address in addresses.EnumerateArray())
            {
                var port = QmpJson.GetString(address, "port");
                if (port is not null && port != "0")
                {
                    return $"tcp:{LocalLink.UriHost(_options.LocalLink.Connect)}:{port}";
                }
            }
        }

        throw new EngineException("DestinationNotWaiting", ErrorKind.ProtocolError,
            $"Destination VM '{target.Name}' did not report the port it listens on for the migration.")
        { Target = target.Name };
    }

    private async Task ConfigureSourceAsync(QmpClient source, CancellationToken cancellationToken)
    {
        await source.MigrateSetCapabilitiesAsync(new Dictionary<string, bool>
        {
            ["events"] = true,
            ["xbzrle"] = _options.Compress == CompressionMode.Native,
            ["auto-converge"] = _options.AutoConverge,
        }, cancellationToken);

        var parameters = new Dictionary<string, object>
        {
            ["downtime-limit"] = (long)QemuDowntimeLimit.TotalMilliseconds,
            ["max-bandwidth"] = _options.Bandwidth ?? Unlimited,
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

        await source.MigrateSetParametersAsync(parameters, cancellationToken);
    }

    private async Task<MigrationResult> MigrateAsync(QmpClient source, QmpClient? destination, string uri, bool sourceWasRunning, long memorySize,
        TunnelEnds tunnel, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        _logger.LogInformation("Migrating {VM} to {Destination} ({Uri}), mode {Mode}", _request.VMName, _request.Destination.Display, uri, _options.Compress);

        // Downtime as the guest sees it: from the source's STOP to the destination running (or
        // loaded, when it stays paused), both stamped by QEMU on this host's clock.
        var frozen = Observe(source.WaitForEventAsync("STOP", cancellationToken));
        var thawed = destination is null || _request.Destination is not LocalVmTarget target ? null
            : Observe(destination.WaitForEventAsync(
                e => target.ExpectPaused ? e.Name == "MIGRATION" && e.GetDataString("status") == "completed" : e.Name == "RESUME",
                cancellationToken));
        tunnel.Sending = tunnel.Source?.RunAsync(tunnel.Stopping);
        _wireBytes = tunnel.Source is { } sender ? () => sender.TunnelStats.WireBytes : null;
        await source.MigrateAsync(uri, cancellationToken);

        var rounds = new List<MigrationRound>();
        MigrationInfo? lastFull = null;
        MigrationInfo info;
        TimeSpan? pausedAt = null;
        var timedOut = false;
        var cancelRequested = false;
        while (true)
        {
            try
            {
                info = MigrationInfo.FromJson(await source.ExecuteAsync("query-migrate", null, QueryTimeout, cancellationToken));
                if (info.Ram is not null)
                {
                    lastFull = info;
                    RecordRound(info, clock.Elapsed, rounds, tunnel);
                    Report(info, clock.Elapsed, memorySize);
                }

                if (info.IsFinished)
                {
                    break;
                }

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
                        tunnel.Source?.ExpectCancel();
                        await source.MigrateCancelAsync(cancellationToken);
                        cancelRequested = true;
                    }
                }

                await Task.Delay(_options.PollInterval, cancellationToken);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                // Ctrl-C: cancel in QEMU, put the source back as it was, then let the caller see the cancellation.
                _logger.LogWarning("{VM}: migration cancelled by the user; cancelling in QEMU", _request.VMName);
                tunnel.Source?.ExpectCancel();
                await CancelAndRestoreAsync(source, sourceWasRunning);
                throw;
            }
            catch (QmpException e)
            {
                // The source's monitor went away: QEMU died under us; nothing to restore.
                throw new EngineException("SourceLost", ErrorKind.ConnectionError,
                    $"Lost the source VM '{_request.VMName}' during the migration: {e.Message}", e)
                { Target = _request.VMName };
            }
        }

        var totalTime = clock.Elapsed;
        var stats = lastFull ?? info;
        if (info.Status == "completed")
        {
            // QEMU 7.2 says "completed" before it computes total-time and downtime: ask once more.
            var settled = await source.QueryMigrateAsync(CancellationToken.None);
            stats = settled.Ram is not null ? settled : stats;
        }

        var tunnelError = await tunnel.FinishAsync(_logger);
        if (info.Status == "completed" && tunnelError is not null && destination is null)
        {
            // A remote receiver did not get everything: nobody else will resume the source.
            info = info with { Status = "failed", ErrorDescription = tunnelError };
        }

        if (info.Status != "completed")
        {
            var sourceState = await RestoreSourceAsync(source, sourceWasRunning);
            var destinationState = await DescribeAsync(destination);
            var failed = Result(stats, info.Status == "cancelled" ? MigrationStatus.Cancelled : MigrationStatus.Failed,
                totalTime, pausedAt, timedOut, memorySize, rounds, sourceState, destinationState, tunnel, null) with
            { Error = tunnelError ?? info.ErrorDescription };
            var (id, kind, what) = (timedOut && cancelRequested, failed.BytesTransferred) switch
            {
                (true, _) => ("MigrationTimedOut", ErrorKind.OperationTimeout,
                    $"did not converge within {_options.Timeout} and was cancelled (try -TimeoutAction Pause, -AutoConverge, or a compression mode)"),
                (false, 0) => ("DestinationUnreachable", ErrorKind.ConnectionError,
                    $"could not start: {tunnelError ?? info.ErrorDescription ?? info.Status}. Check that the destination QEMU is waiting for a migration on that address"),
                _ => ("MigrationFailed", ErrorKind.ConnectionError, $"failed: {tunnelError ?? info.ErrorDescription ?? info.Status}"),
            };
            throw new MigrationFailedException(id, kind,
                $"Migration of '{_request.VMName}' to {_request.Destination.Display} {what}. Source is {sourceState}; destination is {destinationState}.",
                failed);
        }

        // QEMU's downtime counts from its own stop; after a forced pause the guest was frozen since then.
        var result = Result(stats, MigrationStatus.Completed, totalTime, pausedAt, timedOut, memorySize, rounds, "postmigrate", null, tunnel, null);
        var destinationNow = await ConfirmDestinationAsync(source, destination, sourceWasRunning, pausedAt is not null, result);
        var downtime = await MeasuredDowntimeAsync(frozen, thawed);
        return result with
        {
            DestinationState = destinationNow ?? (UsesTunnel ? "delivered" : null),
            SourceState = await DescribeAsync(source),
            Downtime = downtime ?? result.Downtime,
        };
    }

    private void RecordRound(MigrationInfo info, TimeSpan elapsed, List<MigrationRound> rounds, TunnelEnds tunnel)
    {
        var ram = info.Ram!;
        var round = (int)(ram.DirtySyncCount ?? 0);
        if (round > 0 && (rounds.Count == 0 || rounds[^1].Round < round))
        {
            var counters = tunnel.Source?.Counters;
            rounds.Add(new MigrationRound
            {
                Round = round,
                Elapsed = elapsed,
                BytesTransferred = ram.Transferred ?? 0,
                BytesRemaining = ram.Remaining ?? 0,
                DirtyPagesRate = ram.DirtyPagesRate ?? 0,
                ThroughputMbps = ram.Mbps ?? 0,
                WireBytes = tunnel.Source?.TunnelStats.WireBytes ?? ram.Transferred ?? 0,
                XbzrlePages = counters is null ? 0 : DeltaCounters.Read(ref counters.XbzrlePages),
                UnchangedPages = counters is null ? 0 : DeltaCounters.Read(ref counters.UnchangedPages),
                RawPages = counters is null ? ram.Normal ?? 0 : DeltaCounters.Read(ref counters.RawPages),
                CacheHits = counters is null ? info.XbzrleCache?.Pages ?? 0 : DeltaCounters.Read(ref counters.CacheHits),
            });
            _logger.LogDebug("{VM}: round {Round} at {Elapsed}: {Remaining} bytes remaining", _request.VMName, round, elapsed, ram.Remaining);
        }
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
    });

    private MigrationResult Result(MigrationInfo stats, MigrationStatus status, TimeSpan totalTime, TimeSpan? pausedAt, bool timedOut,
        long memorySize, List<MigrationRound> rounds, string? sourceState, string? destinationState, TunnelEnds tunnel, string? error)
    {
        var ram = stats.Ram;
        var qemuDowntime = TimeSpan.FromMilliseconds(stats.DowntimeMs ?? 0);
        var streamBytes = ram?.Transferred ?? 0;
        var transferred = tunnel.Source?.TunnelStats.WireBytes ?? streamBytes;
        var xbzrle = stats.XbzrleCache;
        return new MigrationResult
        {
            VMName = _request.VMName,
            Status = status,
            Mode = _options.Compress,
            Source = _request.VMName,
            Destination = _request.Destination.Display,
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
            Compression = tunnel.Source is { } tunnelSource ? TunnelCompression(tunnelSource)
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
            Rounds = rounds.ToArray(),
            Error = error,
        };
    }

    private static CompressionStats TunnelCompression(DeltaSource source)
    {
        var wire = source.TunnelStats;
        var stats = new CompressionStats
        {
            StreamBytes = source.StreamBytes,
            WireBytes = wire.WireBytes,
            CompressedFrames = wire.CompressedFrames,
            Frames = wire.Frames,
            CompressTime = wire.CompressTime,
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

    private static async Task<TimeSpan?> MeasuredDowntimeAsync(Task<QmpEvent> frozen, Task<QmpEvent>? thawed)
    {
        if (thawed is null || !frozen.IsCompletedSuccessfully)
        {
            return null;
        }

        // The destination may report running a moment after its status says so.
        await Task.WhenAny(thawed, Task.Delay(TimeSpan.FromSeconds(5)));
        return thawed.IsCompletedSuccessfully && thawed.Result.Timestamp >= frozen.Result.Timestamp
            ? thawed.Result.Timestamp - frozen.Result.Timestamp
            : null;
    }

    private static TimeSpan Max(TimeSpan a, TimeSpan b) => a > b ? a : b;

    /// <summary>
    /// The source finished; success only once the destination runs (or is paused, when started so).
    /// If the destination does not come up, the source is resumed so the guest keeps running somewhere.
    /// </summary>
    private async Task<string?> ConfirmDestinationAsync(QmpClient source, QmpClient? destination, bool sourceWasRunning, bool pausedByUs, MigrationResult result)
    {
        if (destination is null || _request.Destination is not LocalVmTarget local)
        {
            return null; // a remote QEMU reports to whoever started it
        }

        var deadline = Stopwatch.StartNew();
        string state;
        try
        {
            while (true)
            {
                state = (await destination.QueryStatusAsync(CancellationToken.None)).Status;

                // The timeout paused the guest to finish: it arrives paused, and it was running before.
                if (state == "paused" && pausedByUs && !local.ExpectPaused)
                {
                    await destination.ContAsync(CancellationToken.None);
                    continue;
                }

                if (state is "running" or "paused" && !(state == "paused" && sourceWasRunning && !local.ExpectPaused))
                {
                    return state;
                }

                if (state is not ("inmigrate" or "paused") || deadline.Elapsed > _options.DestinationStartTimeout)
                {
                    break;
                }

                await Task.Delay(_options.PollInterval, CancellationToken.None);
            }
        }
        catch (QmpException)
        {
            state = "exited";
        }

        var sourceState = await RestoreSourceAsync(source, sourceWasRunning);
        throw new MigrationFailedException("DestinationNotRunning", ErrorKind.InvalidState,
            $"'{_request.VMName}' was sent to '{local.Name}', but the destination is '{state}' instead of running. The source was resumed and is {sourceState}; stop the destination with Stop-KvmVM -Force.",
            result with { Status = MigrationStatus.Failed, SourceState = sourceState, DestinationState = state });
    }

    private async Task CancelAndRestoreAsync(QmpClient source, bool sourceWasRunning)
    {
        using var grace = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        try
        {
            await source.MigrateCancelAsync(grace.Token);
            while (!(await source.QueryMigrateAsync(grace.Token)).IsFinished)
            {
                await Task.Delay(_options.PollInterval, grace.Token);
            }
        }
        catch (Exception e) when (e is QmpException or OperationCanceledException or TimeoutException)
        {
            _logger.LogWarning("{VM}: could not confirm the cancellation: {Error}", _request.VMName, e.Message);
        }

        await RestoreSourceAsync(source, sourceWasRunning);
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
        catch (QmpException e)
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

/// <summary>A migration that ended without the VM running at the destination; carries what happened.</summary>
public sealed class MigrationFailedException(string errorId, ErrorKind kind, string message, MigrationResult result)
    : EngineException(errorId, kind, message)
{
    public MigrationResult Result { get; } = result;
}
