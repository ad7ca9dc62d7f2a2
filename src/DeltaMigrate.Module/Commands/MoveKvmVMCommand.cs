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
    [Parameter(Position = 1, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNull]
    [ArgumentCompleter(typeof(VmNameCompleter))]
    [Alias("Endpoint")]
    public object? Destination { get; set; }

    /// <summary>Another host, reached by PowerShell remoting over SSH: a matching VM and Receive-KvmVM are started there.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? DestinationHost { get; set; }

    /// <summary>For -DestinationHost: the SSH user (default: yours).</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? UserName { get; set; }

    /// <summary>For -DestinationHost: the SSH private key.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? KeyFilePath { get; set; }

    /// <summary>For -DestinationHost: the SSH port (default 22).</summary>
    [Parameter]
    [ValidateRange(1, 65535)]
    public int SshPort { get; set; }

    /// <summary>For -DestinationHost: ssh -o options (New-PSSession -Options), e.g. @{ UserKnownHostsFile = '...' }.</summary>
    [Parameter]
    [ValidateNotNull]
    public System.Collections.Hashtable? SshOption { get; set; }

    /// <summary>An open PSSession (New-PSSession -HostName ...) to the destination host, instead of -DestinationHost.</summary>
    [Parameter]
    [ValidateNotNull]
    public PSObject? Session { get; set; }

    /// <summary>With -DestinationHost or -Session: a QEMU already waiting there (-incoming defer) that DeltaMigrate did not start, by its QMP socket; none is started then.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? DestinationQmpSocket { get; set; }

    /// <summary>With -DestinationHost or -Session: the name of the VM there (default: the source's).</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? DestinationName { get; set; }

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
        RemoteDestination? remote = null;
        string? remoteVm = null;
        var keepRemoteVm = false;
        try
        {
            // A VM we did not start (Get-KvmVM -QmpSocket) is described by its QEMU over one short connection.
            var source = VM is { Foreign: true } || VM is { QuerySocket: null }
                ? RunEngine(stop => ForeignVm.DescribeAsync(VM.QmpPath, VmResolver.RunDirectory, Logger, stop))
                : VmResolver.Single(name);
            name = source.Name; // a file-safe name: it names the tunnel's sockets in our run directory
            var toHost = DestinationHost is not null || Session is not null;
            if (toHost == (Destination is not null))
            {
                throw new EngineException("InvalidDestination", ErrorKind.InvalidArgument,
                    "Give either -Destination (a waiting VM, or the host:port Receive-KvmVM printed) or -DestinationHost/-Session (another host, over PowerShell remoting).");
            }

            var where = toHost ? DestinationHost ?? Session?.Properties["ComputerName"]?.Value?.ToString() ?? "the session's host" : null;
            if (!ShouldProcess(name, $"Live-migrate to {where ?? Destination?.ToString()} ({Compress})"))
            {
                return;
            }

            var token = Token;
            MigrationTarget target;
            if (toHost)
            {
                // Over the session: the same module there, a VM like the source, Receive-KvmVM; its token stays in memory.
                var destinationName = DestinationName ?? name;
                remote = RemoteDestination.Connect(this, DestinationHost, UserName, KeyFilePath, SshPort, SshOption, Session);
                remote.ImportModule(MyInvocation.MyCommand.Module.Version, ManifestPath());
                if (DestinationQmpSocket is null)
                {
                    remoteVm = destinationName;
                    remote.StartWaitingVm(source, destinationName);
                }

                remote.StartReceiver(destinationName, DestinationQmpSocket);
                target = new RemoteTarget(remote.Host, remote.Port);
                token = remote.Token;
            }
            else
            {
                target = ResolveDestination(name);
            }

            var request = new MigrationRequest(name, source.ControlSocket, target)
            {
                TunnelDirectory = RunDirectory.ForTunnelOf(source),
            };

            var options = new MigrationOptions
            {
                Compress = Compress,
                CacheSize = MyInvocation.BoundParameters.ContainsKey(nameof(CacheSize)) ? CacheSize : null,
                Token = token is null ? null : MigrationToken.Parse(token),
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
            remote?.Finish();
            keepRemoteVm = true;
            if (!source.Foreign && result.SourceState == "exited")
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
            keepRemoteVm = true; // the destination may hold the only complete state
            var record = ToErrorRecord(e);
            WriteError(new ErrorRecord(e, e.ErrorId, record.CategoryInfo.Category, (object?)e.Result ?? name));
        }
        catch (Exception e) when (e is EngineException or QmpException or TimeoutException)
        {
            WriteError(ToErrorRecord(e, name));
        }
        finally
        {
            // A VM this command started there goes again unless it took over the guest (or may have: in doubt).
            if (remote is not null)
            {
                remote.Finish();
                if (remoteVm is not null && !keepRemoteVm)
                {
                    remote.RemoveVm(remoteVm);
                }

                remote.Close();
            }
        }
    }

    /// <summary>This module's manifest (the binary's Path is the dll), for a host that has it at the same path.</summary>
    private string ManifestPath()
    {
        var module = MyInvocation.MyCommand.Module;
        var manifest = System.IO.Path.Combine(module.ModuleBase, module.Name + ".psd1");
        return File.Exists(manifest) ? manifest : module.Path;
    }

    private MigrationTarget ResolveDestination(string source)
    {
        var destination = Destination is PSObject pso ? pso.BaseObject : Destination!;
        if (destination is VmInfo { Foreign: true } foreign)
        {
            destination = foreign.QmpPath;
        }
        else if (destination is VmInfo vm)
        {
            destination = vm.Name;
        }

        var text = destination.ToString() ?? "";
        if (text.StartsWith('/'))
        {
            // A waiting QEMU we did not start, by its QMP socket (Get-KvmVM -QmpSocket).
            var path = GetUnresolvedProviderPathFromPSPath(text);
            return new LocalVmTarget(RunEngine(stop => ForeignVm.DescribeAsync(path, VmResolver.RunDirectory, Logger, stop)));
        }

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
