using System.Diagnostics;
using DeltaMigrate.Engine.Delta;
using DeltaMigrate.Engine.Logging;
using DeltaMigrate.Engine.Migration;
using DeltaMigrate.Engine.Tunnel;
using DeltaMigrate.Engine.Vm;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace DeltaMigrate.Engine.Libvirt;

/// <summary>
/// A libvirt domain moved with libvirt in charge and only the data through us, as KubeVirt does it:
/// libvirt runs begin, prepare, perform, finish and confirm (virDomainMigrate3), and its QEMUs
/// migrate over a unix socket (migrate_uri unix://PATH) whose path is the same on both hosts. Here
/// our sending half listens at PATH and tunnels the stream (deltas, codec, encryption, pacing) to our
/// receiving half there, which feeds the destination QEMU at PATH. A failure of ours cuts QEMU's
/// stream, so libvirt sees its migration fail and keeps the domain running on the source.
/// </summary>
public sealed class LibvirtMigration(LibvirtMigrationRequest request, ILogger? logger = null)
{
    private static readonly TimeSpan FinishTimeout = TimeSpan.FromSeconds(30);
    private readonly ILogger _logger = logger ?? NullLogger.Instance;

    /// <summary>The same, logging to a host's <see cref="IEngineLogSink"/> (the cmdlets: no logging types cross into PowerShell's load context).</summary>
    public LibvirtMigration(LibvirtMigrationRequest request, IEngineLogSink log)
        : this(request, SinkLogger.From(log))
    {
    }

    public async Task<MigrationResult> RunAsync(IProgress<MigrationProgress>? progress, CancellationToken cancellationToken)
    {
        if (request.Compress is not (CompressionMode.Delta or CompressionMode.Lz4))
        {
            throw new EngineException("LibvirtModeUnsupported", ErrorKind.InvalidArgument,
                $"A libvirt domain moves through our tunnel: -Compress Delta or Lz4. For {request.Compress}, use virsh migrate itself.")
            { Target = request.DomainName };
        }

        var migrationId = Guid.NewGuid();
        var startTime = DateTimeOffset.UtcNow;
        var clockOrigin = Stopwatch.GetTimestamp();
        var clock = Stopwatch.StartNew();
        using var source = LibvirtConnection.Open(request.SourceUri);
        using var domain = source.GetDomain(request.DomainName);
        var info = source.Describe(request.DomainName);
        if (info.State is not ("Running" or "Paused"))
        {
            throw new EngineException("VMNotRunning", ErrorKind.InvalidState,
                $"libvirt domain '{info.Name}' is {info.State}: only a running (or paused) domain migrates live. Start it with virsh start {info.Name}.")
            { Target = info.Name };
        }

        using var destination = LibvirtConnection.Open(request.DestinationUri);
        long memorySize = info.MemoryMiB * 1024 * 1024;
        long cacheBytes = request.CacheSize ?? Math.Clamp(memorySize / 2, MigrationOptions.DefaultCacheSize, 2L << 30);
        new RunDirectory(Path.GetDirectoryName(request.SocketPath)!).EnsureSecure();

        var options = new TunnelOptions { FrameSize = 64 * 1024, MaxFramesInFlight = 4 }.WithLinkTimeout(request.LinkTimeout) with
        {
            BandwidthBytesPerSecond = request.Bandwidth,
            Adaptive = request.Compress == CompressionMode.Delta,
        };
        await using var tunnel = await TunnelSender.ConnectAsync(request.ReceiverHost, request.ReceiverPort, request.Token, options, _logger, cancellationToken);
        await using var pipeline = TunnelSource.Create(request.SocketPath, tunnel, request.Compress == CompressionMode.Delta, cacheBytes, _logger, returnPath: true);
        using var stopping = new CancellationTokenSource();
        var sending = pipeline.RunAsync(stopping.Token);

        using var parameters = new LibvirtMigrationParameters();
        parameters.Add("migrate_uri", $"unix://{request.SocketPath}");
        uint flags = LibvirtNative.MigrateLive
            | (request.Persistent ? LibvirtNative.MigratePersistDest : 0)
            | (request.UndefineSource ? LibvirtNative.MigrateUndefineSource : 0)
            | (request.AutoConverge ? LibvirtNative.MigrateAutoConverge : 0)
            | (request.DestinationPaused ? LibvirtNative.MigratePaused : 0);
        _logger.LogInformation("{Domain}: libvirt migrates from {Source} to {Destination} through our tunnel at unix://{Path}",
            info.Name, request.SourceUri, request.DestinationUri, request.SocketPath);
        var migrating = Task.Factory.StartNew(() => domain.Migrate(destination, parameters, flags), CancellationToken.None,
            TaskCreationOptions.LongRunning, TaskScheduler.Default);

        var samples = new List<MigrationSample>();
        LibvirtJobStats? last = null;
        bool downtimeSet = request.MaxDowntime is null;
        bool aborted = false;
        while (!migrating.IsCompleted)
        {
            await Task.WhenAny(migrating, Task.Delay(request.PollInterval, CancellationToken.None));
            if (cancellationToken.IsCancellationRequested && !aborted)
            {
                aborted = TryAbort(domain, pipeline);
            }

            if (migrating.IsCompleted || domain.GetJobStats() is not { } stats)
            {
                continue;
            }

            last = stats;
            if (!downtimeSet)
            {
                domain.SetMaxDowntime(request.MaxDowntime!.Value);
                downtimeSet = true;
            }

            samples.Add(SampleOf(stats, pipeline, clock.Elapsed));
            progress?.Report(new MigrationProgress
            {
                VMName = info.Name,
                Status = "active",
                Elapsed = clock.Elapsed,
                Round = (int)stats.MemoryIteration,
                BytesTransferred = stats.DataProcessed,
                BytesRemaining = stats.DataRemaining,
                MemorySize = memorySize,
                ThroughputMbps = stats.MemoryBytesPerSecond * 8 / 1e6,
                WireBytes = tunnel.Stats.WireBytes,
                Codecs = tunnel.Stats.Codecs,
            });
        }

        MigrationResult Result(MigrationStatus status, LibvirtJobStats? stats, string? sourceState, string? destinationState, string? error) => new()
        {
            VMName = info.Name,
            Status = status,
            Mode = request.Compress,
            Source = $"{request.SourceUri} {info.Name}",
            Destination = $"{request.DestinationUri} {info.Name}",
            MigrationId = migrationId,
            StartTime = startTime,
            EndTime = DateTimeOffset.UtcNow,
            SourceHost = System.Net.Dns.GetHostName(),
            DestinationHost = request.ReceiverHost,
            SourceState = sourceState,
            DestinationState = destinationState,
            TotalTime = clock.Elapsed,
            Downtime = stats?.Downtime ?? TimeSpan.Zero,
            SetupTime = stats?.SetupTime ?? TimeSpan.Zero,
            MemorySize = memorySize,
            BytesTransferred = tunnel.Stats.WireBytes,
            StreamBytes = pipeline.StreamBytes,
            NormalPages = stats?.MemoryNormalPages ?? 0,
            ZeroPages = stats?.MemoryConstantPages ?? 0,
            DirtySyncCount = (int)(stats?.MemoryIteration ?? 0),
            ThroughputMbps = clock.Elapsed.TotalSeconds > 0 ? tunnel.Stats.WireBytes * 8 / clock.Elapsed.TotalSeconds / 1e6 : 0,
            Converged = status == MigrationStatus.Completed,
            Compression = MigrationSession.TunnelCompression(pipeline),
            Rounds = pipeline is { PassesOrigin: { } origin, Passes: { Count: > 0 } passes }
                ? RoundHistory.FromPasses(passes, Stopwatch.GetElapsedTime(clockOrigin, origin), samples)
                : RoundHistory.FromSamples(samples),
            Samples = samples.ToArray(),
            Error = error,
            LibvirtJob = stats,
        };

        LibvirtDomain moved;
        try
        {
            moved = await migrating;
        }
        catch (LibvirtException failed)
        {
            // libvirt has cleaned up (the destination domain is gone, the source runs): say why our side failed too.
            await stopping.CancelAsync();
            string? ours = await TunnelFailureAsync(sending);
            string sourceState = StateOf(domain);
            var result = Result(cancellationToken.IsCancellationRequested ? MigrationStatus.Cancelled : MigrationStatus.Failed,
                domain.GetJobStats(completed: true) ?? last, sourceState, null, failed.Message);
            string where = $"the domain is {sourceState.ToLowerInvariant()} on the source ({request.SourceUri})";
            if (cancellationToken.IsCancellationRequested)
            {
                throw new EngineException("MigrationCancelled", ErrorKind.OperationStopped,
                    $"Cancelled: libvirt aborted the migration of '{info.Name}' ({failed.Message}); {where}.", failed)
                { Target = result };
            }

            throw new LibvirtException(LibvirtException.MigrationFailed, ErrorKind.InvalidState,
                $"{failed.Message}{(ours is null ? "" : $"; our tunnel: {ours}")}; {where}.", failed)
            { Target = result, LibvirtCode = failed.LibvirtCode };
        }

        using (moved)
        {
            try
            {
                await sending.WaitAsync(FinishTimeout, CancellationToken.None);
            }
            catch (Exception ex)
            {
                // libvirt finished, so the destination loaded everything: our End/Loaded is only bookkeeping now.
                _logger.LogWarning("{Domain}: libvirt completed the migration, but our tunnel did not end cleanly: {Reason}", info.Name, ex.Message);
            }

            var stats = moved.GetJobStats(completed: true) ?? domain.GetJobStats(completed: true) ?? last;
            var result = Result(MigrationStatus.Completed, stats, StateOf(domain), StateOf(moved), null);
            _logger.LogInformation("{Domain}: migrated by libvirt in {Time}; {Wire} wire bytes for {Stream} stream bytes", info.Name, result.TotalTime, result.BytesTransferred, result.StreamBytes);
            return result;
        }
    }

    /// <summary>libvirt refuses an abort before its job starts; the next poll tries again.</summary>
    private bool TryAbort(LibvirtDomain domain, TunnelSource pipeline)
    {
        try
        {
            pipeline.ExpectCancel();
            domain.AbortJob();
            _logger.LogInformation("Cancelled: libvirt is aborting the migration");
            return true;
        }
        catch (LibvirtException ex)
        {
            _logger.LogDebug("libvirt did not abort yet: {Reason}", ex.Message);
            return false;
        }
    }

    private static async Task<string?> TunnelFailureAsync(Task sending)
    {
        try
        {
            await sending.WaitAsync(TimeSpan.FromSeconds(5), CancellationToken.None);
            return null;
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            return ex.Message;
        }
        catch (OperationCanceledException)
        {
            return null;
        }
    }

    private static string StateOf(LibvirtDomain domain)
    {
        try
        {
            return domain.State;
        }
        catch (LibvirtException)
        {
            return "Gone";
        }
    }

    /// <summary>libvirt's job counters with our transcoder's at one poll; the rounds are cut from these (or from the stream's passes).</summary>
    private static MigrationSample SampleOf(LibvirtJobStats stats, TunnelSource pipeline, TimeSpan elapsed)
    {
        var counters = pipeline.Counters;
        return new MigrationSample
        {
            Elapsed = elapsed,
            Round = (int)stats.MemoryIteration,
            BytesRemaining = stats.DataRemaining,
            StreamBytes = pipeline.StreamBytes,
            WireBytes = pipeline.TunnelStats.WireBytes,
            DirtyPagesRate = stats.MemoryDirtyRate,
            ThroughputMbps = stats.MemoryBytesPerSecond * 8 / 1e6,
            RawPages = counters is null ? stats.MemoryNormalPages : DeltaCounters.Read(ref counters.RawPages),
            XbzrlePages = counters is null ? 0 : DeltaCounters.Read(ref counters.XbzrlePages),
            ZeroPages = counters is null ? stats.MemoryConstantPages : DeltaCounters.Read(ref counters.ZeroPages),
            UnchangedPages = counters is null ? 0 : DeltaCounters.Read(ref counters.UnchangedPages),
        };
    }
}
