using System.Management.Automation;
using DeltaMigrate.Engine;
using DeltaMigrate.Engine.Migration;
using DeltaMigrate.Engine.Qmp;
using DeltaMigrate.Engine.Transport;
using DeltaMigrate.Engine.Vm;
using DeltaMigrate.Module.Infrastructure;

namespace DeltaMigrate.Module.Commands;

/// <summary>Live-migrates a VM to a VM waiting on this host or to host:port of a waiting QEMU.</summary>
[Cmdlet(VerbsCommon.Move, "KvmVM", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium, DefaultParameterSetName = "Name")]
[OutputType(typeof(MigrationResult))]
public sealed class MoveKvmVMCommand : EngineCmdlet
{
    private int _activity;

    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true, ParameterSetName = "Name")]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(VmNameCompleter))]
    public string Name { get; set; } = "";

    [Parameter(Mandatory = true, ValueFromPipeline = true, ParameterSetName = "VM")]
    public VmInfo? VM { get; set; }

    /// <summary>A VM object or name waiting on this host (Start-KvmVM -Incoming), or the host:port Receive-KvmVM printed.</summary>
    [Parameter(Mandatory = true, Position = 1, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNull]
    [ArgumentCompleter(typeof(VmNameCompleter))]
    [Alias("Endpoint")]
    public object Destination { get; set; } = "";

    /// <summary>Delta (default): our tunnel with XBZRLE deltas and LZ4; Lz4; Native (QEMU's XBZRLE); None.</summary>
    [Parameter]
    public CompressionMode Compress { get; set; } = CompressionMode.Delta;

    /// <summary>Page cache in bytes (64MB works); default: QEMU's 64 MiB for Native, half the VM's RAM for Delta.</summary>
    [Parameter]
    [ValidateRange(4096, long.MaxValue)]
    public long CacheSize { get; set; }

    /// <summary>The token Receive-KvmVM printed, for any mode to host:port.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [Token]
    public string? Token { get; set; }

    /// <summary>Longest acceptable freeze; a number means seconds (0.3 = 300 ms).</summary>
    [Parameter]
    [Seconds]
    public TimeSpan MaxDowntime { get; set; } = MigrationOptions.DefaultMaxDowntime;

    /// <summary>Bytes per second (12MB is roughly 100 Mbit/s); 0 means no limit.</summary>
    [Parameter]
    [ValidateRange(0, long.MaxValue)]
    public long Bandwidth { get; set; }

    [Parameter]
    public SwitchParameter AutoConverge { get; set; }

    /// <summary>Give up (or pause the guest, see -TimeoutAction) after this long; a number means seconds.</summary>
    [Parameter]
    [Seconds]
    public TimeSpan Timeout { get; set; }

    [Parameter]
    public TimeoutAction TimeoutAction { get; set; } = TimeoutAction.Cancel;

    /// <summary>Keep the source's QEMU, paused, after the commit (it is quit otherwise, as Hyper-V and libvirt do).</summary>
    [Parameter]
    public SwitchParameter KeepSource { get; set; }

    /// <summary>Output the KvmMigrationResult (otherwise a one-line summary goes to the host).</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void ProcessRecord()
    {
        var name = VM?.Name ?? Name;
        try
        {
            var source = VM is not null && VM.QuerySocket is null ? null : VmResolver.Single(name);
            var request = new MigrationRequest(name, source?.ControlSocket ?? VM!.QmpPath, ResolveDestination(name));
            if (!ShouldProcess(name, $"Live-migrate to {request.Destination.Display} ({Compress})"))
            {
                return;
            }

            var options = new MigrationOptions
            {
                Compress = Compress,
                CacheSize = MyInvocation.BoundParameters.ContainsKey(nameof(CacheSize)) ? CacheSize : null,
                Token = Token is null ? null : MigrationToken.Parse(Token),
                MaxDowntime = MaxDowntime,
                Bandwidth = Bandwidth > 0 ? Bandwidth : null,
                AutoConverge = AutoConverge,
                Timeout = Timeout > TimeSpan.Zero ? Timeout : null,
                TimeoutAction = TimeoutAction,
                KeepSource = KeepSource,
            };
            var activity = ++_activity;
            var result = RunEngine(stop =>
                new MigrationSession(request, options, Logger, PipelineProgress<MigrationProgress>(p => WriteProgress(Progress(activity, request, p))))
                    .RunAsync(stop));
            Complete(activity, request);
            if (source is not null && result.SourceState == "exited")
            {
                VmResolver.RunDirectory.Remove(name); // the source's QEMU was quit after the commit
            }

            Emit(result);
        }
        catch (MigrationFailedException e)
        {
            // The result says what each side is left in; scripts read it from TargetObject.
            var record = ToErrorRecord(e);
            WriteError(new ErrorRecord(e, e.ErrorId, record.CategoryInfo.Category, e.Result));
        }
        catch (MigrationInDoubtException e)
        {
            // Neither Completed nor Failed: the message names the side holding the state and the command to finish.
            var record = ToErrorRecord(e);
            WriteError(new ErrorRecord(e, e.ErrorId, record.CategoryInfo.Category, (object?)e.Result ?? name));
        }
        catch (Exception e) when (e is EngineException or QmpException or TimeoutException)
        {
            WriteError(ToErrorRecord(e, name));
        }
    }

    private MigrationTarget ResolveDestination(string source)
    {
        var destination = Destination is PSObject pso ? pso.BaseObject : Destination;
        if (destination is VmInfo vm)
        {
            destination = vm.Name;
        }

        var text = destination.ToString() ?? "";
        var local = VmResolver.RunDirectory.Load(text);
        if (local is not null && QemuLauncher.IsAlive(local.Pid))
        {
            if (string.Equals(text, source, StringComparison.Ordinal))
            {
                throw new EngineException("InvalidDestination", ErrorKind.InvalidArgument,
                    $"-Destination '{text}' is the VM being migrated. Start a VM to receive it with Start-KvmVM -Incoming.")
                { Target = text };
            }

            return new LocalVmTarget(local);
        }

        if (!text.Contains(':'))
        {
            throw new EngineException("DestinationNotFound", ErrorKind.NotFound,
                $"-Destination '{text}' is neither a VM on this host (see Get-KvmVM) nor host:port of a QEMU waiting for a migration.")
            { Target = text };
        }

        return RemoteTarget.Parse(text);
    }

    private static ProgressRecord Progress(int activity, MigrationRequest request, MigrationProgress p) => new(activity,
        $"Migrating {request.VMName} to {request.Destination.Display}",
        $"{p.Status}, round {p.Round}: {p.BytesRemaining / 1048576.0:0.0} MiB left, {p.ThroughputMbps:0.0} Mbit/s" +
        (p.ExpectedDowntime is { } d ? $", expected downtime {d.TotalMilliseconds:0} ms" : ""))
    {
        PercentComplete = p.PercentComplete,
        CurrentOperation = $"{p.BytesTransferred / 1048576.0:0.0} MiB of QEMU's stream as {p.WireBytes / 1048576.0:0.0} MiB on the wire in {p.Elapsed.TotalSeconds:0.0} s",
    };

    private void Complete(int activity, MigrationRequest request) =>
        WriteProgress(new ProgressRecord(activity, $"Migrating {request.VMName} to {request.Destination.Display}", "Done")
        {
            RecordType = ProgressRecordType.Completed,
        });

    private void Emit(MigrationResult result)
    {
        if (PassThru)
        {
            var output = PSObject.AsPSObject(result);
            output.TypeNames.Insert(0, "DeltaMigrate.KvmMigrationResult");
            WriteObject(output);
            return;
        }

        var summary = $"Moved {result.VMName} to {result.Destination} ({result.Mode}) in {result.TotalTime.TotalSeconds:0.0} s, " +
            $"downtime {result.Downtime.TotalMilliseconds:0} ms, {result.BytesTransferred / 1048576.0:0.0} MiB sent in {result.DirtySyncCount} rounds.";
        WriteInformation(new HostInformationMessage { Message = summary }, ["PSHOST"]);
    }
}
