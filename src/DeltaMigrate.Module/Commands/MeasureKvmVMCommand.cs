using System.Management.Automation;
using DeltaMigrate.Engine;
using DeltaMigrate.Engine.Migration;
using DeltaMigrate.Engine.Planning;
using DeltaMigrate.Engine.Qmp;
using DeltaMigrate.Engine.Vm;
using DeltaMigrate.Module.Infrastructure;

namespace DeltaMigrate.Module.Commands;

/// <summary>
/// Samples a running VM and predicts, per migration mode and for a given link, whether pre-copy converges,
/// how long it takes, the downtime and the cache that suffices.
/// </summary>
[Cmdlet(VerbsDiagnostic.Measure, "KvmVM", DefaultParameterSetName = "Name")]
[OutputType(typeof(MigrationPrediction))]
public sealed class MeasureKvmVMCommand : EngineCmdlet
{
    private int _activity;

    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true, ParameterSetName = "Name")]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(VmNameCompleter))]
    public string Name { get; set; } = "";

    [Parameter(Mandatory = true, ValueFromPipeline = true, ParameterSetName = "VM")]
    public VmInfo? VM { get; set; }

    /// <summary>How long to watch the guest; a number means seconds.</summary>
    [Parameter]
    [Seconds]
    public TimeSpan Duration { get; set; } = TimeSpan.FromSeconds(3);

    /// <summary>The link to predict for, in bytes per second (125MB is 1 Gbit/s).</summary>
    [Parameter]
    [ValidateRange(1, long.MaxValue)]
    public long Bandwidth { get; set; } = PredictionOptions.DefaultBandwidth;

    /// <summary>Longest acceptable freeze; a number means seconds.</summary>
    [Parameter]
    [Seconds]
    public TimeSpan MaxDowntime { get; set; } = MigrationOptions.DefaultMaxDowntime;

    /// <summary>The page cache Native and Delta would use, as Move-KvmVM -CacheSize (default: QEMU's 64 MiB for Native, half the RAM for Delta).</summary>
    [Parameter]
    [ValidateRange(1024 * 1024, long.MaxValue)]
    public long CacheSize { get; set; }

    /// <summary>The -Timeout the migration would run with: pre-copy not converged by then counts as not converging (default 120 s).</summary>
    [Parameter]
    [Seconds]
    public TimeSpan Timeout { get; set; } = TimeSpan.FromSeconds(120);

    /// <summary>The modes to predict, in this order.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public CompressionMode[] Mode { get; set; } = [CompressionMode.None, CompressionMode.Native, CompressionMode.Lz4, CompressionMode.Delta];

    protected override void BeginProcessing()
    {
        if (Duration < TimeSpan.FromSeconds(0.1) || Duration > TimeSpan.FromSeconds(60))
        {
            ThrowTerminatingError(Error("InvalidDuration", ErrorCategory.InvalidArgument, Duration,
                $"-Duration must be between 0.1 and 60 seconds (got {Duration.TotalSeconds:0.###} s)."));
        }

        if (Timeout <= TimeSpan.Zero)
        {
            ThrowTerminatingError(Error("InvalidTimeout", ErrorCategory.InvalidArgument, Timeout,
                "-Timeout must be positive, e.g. 60 for one minute."));
        }

        if (MaxDowntime <= TimeSpan.Zero)
        {
            ThrowTerminatingError(Error("InvalidMaxDowntime", ErrorCategory.InvalidArgument, MaxDowntime,
                "-MaxDowntime must be positive, e.g. 0.3 for 300 ms."));
        }
    }

    protected override void ProcessRecord()
    {
        var name = VM?.Name ?? Name;
        try
        {
            var socket = VM is not null ? VM.QuerySocket ?? VM.QmpPath : VmResolver.Single(Name).QuerySocket;
            var activity = ++_activity;
            var title = $"Measuring {name} for {Duration.TotalSeconds:0.#} s";
            var profile = RunEngine(stop => MemorySampler.SampleAsync(
                socket,
                new SamplingOptions { Duration = Duration },
                Logger,
                PipelineProgress<string>(status => WriteProgress(new ProgressRecord(activity, title, status))),
                stop));
            WriteProgress(new ProgressRecord(activity, title, "Done") { RecordType = ProgressRecordType.Completed });
            WriteVerbose($"{name}: {profile.DirtyPagesPerSecond:0} dirty pages/s (QEMU: {profile.QemuDirtyPagesPerSecond?.ToString("0") ?? "n/a"}), " +
                $"hot set {profile.HotSetBytes / 1048576.0:0.0} MiB, delta {profile.MeanDeltaBytes:0} bytes ({profile.DeltaOverflowFraction:P0} overflow), " +
                $"LZ4 {profile.Lz4Ratio:0.00}x, zero pages {profile.ZeroPageFraction:P0}.");

            long? cache = MyInvocation.BoundParameters.ContainsKey(nameof(CacheSize)) ? CacheSize : null;
            var options = new PredictionOptions
            {
                Bandwidth = Bandwidth,
                MaxDowntime = MaxDowntime,
                TimeLimit = Timeout,
                NativeCacheSize = cache,
                DeltaCacheSize = cache,
            };
            foreach (var prediction in MigrationPredictor.Predict(name, profile, Mode, options))
            {
                WriteObject(prediction);
            }
        }
        catch (Exception e) when (e is QmpException or IOException or System.Net.Sockets.SocketException)
        {
            WriteError(new ErrorRecord(e, "VMNotReachable", ErrorCategory.ConnectionError, name));
        }
        catch (Exception e) when (e is EngineException or TimeoutException or OperationCanceledException)
        {
            WriteError(ToErrorRecord(e, name));
        }
    }
}
