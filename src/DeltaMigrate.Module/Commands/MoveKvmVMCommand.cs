using System.Management.Automation;
using DeltaMigrate.Engine;
using DeltaMigrate.Engine.Convergence;
using DeltaMigrate.Engine.Migration;
using DeltaMigrate.Engine.Qmp;
using DeltaMigrate.Engine.Transport;
using DeltaMigrate.Engine.Vm;
using DeltaMigrate.Module.Infrastructure;

namespace DeltaMigrate.Module.Commands;

/// <summary>Live-migrates a VM to a VM waiting on this host or to host:port of a waiting QEMU.</summary>
[Cmdlet(VerbsCommon.Move, "KvmVM", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium, DefaultParameterSetName = "Name")]
[OutputType(typeof(MigrationResult))]
public sealed partial class MoveKvmVMCommand : EngineCmdlet
{
    private int _activity;

    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true, ParameterSetName = "Name")]
    [Parameter(Mandatory = true, Position = 0, ParameterSetName = "Libvirt")]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(VmNameCompleter))]
    public string Name { get; set; } = "";

    [Parameter(Mandatory = true, ValueFromPipeline = true, ParameterSetName = "VM")]
    public VmInfo? VM { get; set; }

    /// <summary>
    /// Bound by property name from a piped foreign VmInfo (Get-KvmVM -QmpSocket): PowerShell binds the
    /// default set's Name first, and a foreign VM is found by its socket, not by name.
    /// </summary>
    [Parameter(ValueFromPipelineByPropertyName = true, ParameterSetName = "Name", DontShow = true)]
    public string? QmpPath { get; set; }

    [Parameter(ValueFromPipelineByPropertyName = true, ParameterSetName = "Name", DontShow = true)]
    public SwitchParameter Foreign { get; set; }

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

    /// <summary>QEMU's own auto-converge with its default steps; with -Converge Throttle (the default) the engine drives that throttle instead.</summary>
    [Parameter]
    public SwitchParameter AutoConverge { get; set; }

    /// <summary>When pre-copy stalls: Throttle (default) slows the guest's vCPUs step by step until it converges; Never leaves it to -Timeout.</summary>
    [Parameter]
    public ConvergeMode Converge { get; set; } = ConvergeMode.Throttle;

    /// <summary>Give up (or pause the guest, see -TimeoutAction) after this long; a number means seconds.</summary>
    [Parameter]
    [Seconds]
    public TimeSpan Timeout { get; set; }

    [Parameter]
    public TimeoutAction TimeoutAction { get; set; } = TimeoutAction.Cancel;

    /// <summary>Keep the source's QEMU, paused, after the commit (it is quit otherwise, as Hyper-V and libvirt do).</summary>
    [Parameter]
    public SwitchParameter KeepSource { get; set; }

    /// <summary>With -DestinationHost or -Session: the VM started there stays paused after the commit (libvirt's --suspend), e.g. to compare its RAM.</summary>
    [Parameter]
    public SwitchParameter DestinationPaused { get; set; }

    /// <summary>Output the KvmMigrationResult (otherwise a one-line summary goes to the host).</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    /// <summary>How many migrations run at once; 1 (default) moves each piped VM as it arrives, more collects them first.</summary>
    [Parameter]
    [ValidateRange(1, 64)]
    public int ThrottleLimit { get; set; } = 1;

    /// <summary>Host memory, in bytes, that the Delta page caches of this command's migrations share (default: half of MemAvailable).</summary>
    [Parameter]
    [ValidateRange(1, long.MaxValue)]
    public long MemoryBudget { get; set; }

    /// <summary>Return a job at once; the migrations run in it (Stop-Job cancels them and the sources keep running).</summary>
    [Parameter]
    public SwitchParameter AsJob { get; set; }

    // Set once per command: what its migrations share.
    private CacheBudget _budget = null!;
    private Engine.Transport.SharedTokenBucket? _sharedBucket;
    private BandwidthShare? _bandwidthShare;
    private Dictionary<string, object> _commandLine = [];
    private readonly List<PlannedMove> _planned = [];
    private readonly HashSet<string> _destinationsUsed = new(StringComparer.Ordinal);

    private bool Collects => AsJob || ThrottleLimit > 1;

    private bool ToHost => DestinationHost is not null || Session is not null;

    protected override void BeginProcessing()
    {
        // Before any pipeline input binds: what the user typed, for -AsJob to pass on.
        _commandLine = new Dictionary<string, object>(MyInvocation.BoundParameters, StringComparer.OrdinalIgnoreCase);
        if (AsJob)
        {
            return;
        }

        _budget = MemoryBudget > 0 ? new CacheBudget(MemoryBudget) : CacheBudget.FromAvailableMemory();
        if (Bandwidth > 0)
        {
            // One -Bandwidth for all of this command's migrations: a bucket the tunnels share, or
            // QEMU's max-bandwidth divided by the migrations running.
            _sharedBucket = Compress is CompressionMode.Delta or CompressionMode.Lz4 ? new Engine.Transport.SharedTokenBucket(Bandwidth) : null;
            _bandwidthShare = _sharedBucket is null ? new BandwidthShare(Bandwidth) : null;
        }
    }

    protected override void ProcessRecord()
    {
        if (ParameterSetName is LibvirtByName or LibvirtPiped)
        {
            MoveLibvirtDomain();
            return;
        }

        var name = VM?.Name ?? Name;
        try
        {
            var planned = Plan(name);
            if (planned is null)
            {
                return;
            }

            if (Collects)
            {
                _planned.Add(planned);
                return;
            }

            MoveNow(planned);
        }
        catch (Exception e) when (e is EngineException or QmpException or TimeoutException)
        {
            WriteError(ToErrorRecord(e, name));
        }
    }

    protected override void EndProcessing()
    {
        if (_planned.Count == 0)
        {
            return;
        }

        // Collected, nothing has moved yet: several VMs for one waiting VM (or one receiver's token) stop them all.
        var shared = _planned.Where(p => p.SingleUseKey is not null).GroupBy(p => p.SingleUseKey).FirstOrDefault(g => g.Count() > 1);
        if (shared is not null)
        {
            var names = string.Join(", ", shared.Select(p => p.Name));
            ThrowTerminatingError(new ErrorRecord(new InvalidOperationException(
                $"{shared.Count()} VMs ({names}) would go to {(ToHost ? $"-DestinationName {DestinationName}" : $"-Destination {shared.Key}")}, but a waiting VM (or a Receive-KvmVM endpoint and its one-time token) takes one migration; none was moved. " +
                "For several VMs use -DestinationHost or -Session (a waiting VM and a receiver per VM on that host), or pipe objects that each carry their own Destination."),
                "DestinationSingleUse", ErrorCategory.InvalidArgument, shared.Key));
        }

        if (AsJob)
        {
            WriteObject(StartJob());
            return;
        }

        MoveInParallel();
    }

    /// <summary>Checks one piped VM on the pipeline thread: its record, where it goes, ShouldProcess.</summary>
    private PlannedMove? Plan(string name)
    {
        // A VM we did not start (Get-KvmVM -QmpSocket) is described by its QEMU over one short connection.
        var socket = VM is { Foreign: true } || VM is { QuerySocket: null } ? VM.QmpPath : Foreign && QmpPath is not null ? QmpPath : null;
        var source = socket is not null
            ? RunEngine(stop => ForeignVm.DescribeAsync(socket, VmResolver.RunDirectory, Logger, stop))
            : VmResolver.Single(name);
        name = source.Name; // a file-safe name: it names the tunnel's sockets in our run directory
        if (ToHost == (Destination is not null))
        {
            throw new EngineException("InvalidDestination", ErrorKind.InvalidArgument,
                "Give either -Destination (a waiting VM, or the host:port Receive-KvmVM printed) or -DestinationHost/-Session (another host, over PowerShell remoting).");
        }

        var destination = Destination is PSObject pso ? pso.BaseObject : Destination;
        var where = ToHost ? DestinationHost ?? Session?.Properties["ComputerName"]?.Value?.ToString() ?? "the session's host" : DestinationText(destination);

        // A waiting VM, or a receiver's endpoint and one-time token, takes one migration.
        var single = ToHost ? (DestinationName ?? DestinationQmpSocket) is { } there ? $"{where}/{there}" : null : where;
        if (single is not null && !_destinationsUsed.Add(single) && !Collects)
        {
            throw new EngineException("DestinationSingleUse", ErrorKind.InvalidArgument,
                $"'{name}' cannot go to {(ToHost ? $"-DestinationName {DestinationName}" : $"-Destination {where}")}: another VM of this command already goes there, and a waiting VM (or a Receive-KvmVM endpoint and its one-time token) takes one migration. " +
                "For several VMs use -DestinationHost or -Session (a waiting VM and a receiver per VM on that host), or pipe objects that each carry their own Destination.")
            { Target = name };
        }

        if (!ShouldProcess(name, $"Live-migrate to {where} ({Compress})"))
        {
            return null;
        }

        return new PlannedMove(name, VM, source, destination, Token, ++_activity, single);
    }

    /// <summary>A VM's name, a foreign VM's QMP socket, or host:port.</summary>
    private static string DestinationText(object? destination) => destination switch
    {
        VmInfo { Foreign: true } foreign => foreign.QmpPath,
        VmInfo vm => vm.Name,
        _ => destination?.ToString() ?? "",
    };

    /// <summary>ThrottleLimit 1: one VM, start to end, before the next is read.</summary>
    private void MoveNow(PlannedMove planned)
    {
        var move = new Move(planned);
        try
        {
            Prepare(move, remote: null);
            var result = RunEngine(stop => MigrateAsync(move, parent: null, stop));
            Succeeded(move, result);
        }
        catch (Exception e) when (e is EngineException or QmpException or TimeoutException)
        {
            Failed(move, e);
        }
        finally
        {
            Cleanup(move);
        }
    }

    /// <summary>
    /// -ThrottleLimit N: up to N migrations at once inside one pump. The remote calls and every
    /// Write* run on the pipeline thread; each VM's failure is its own error and the others go on.
    /// </summary>
    private void MoveInParallel()
    {
        var moves = _planned.Select(p => new Move(p) { InBatch = true }).ToList();
        var batch = new Batch(moves.Count);
        RemoteDestination? remote = null;
        try
        {
            WriteProgress(batch.Record());
            RunEngine(async stop =>
            {
                await Parallel.ForEachAsync(moves, new ParallelOptions { MaxDegreeOfParallelism = ThrottleLimit }, async (move, _) =>
                {
                    if (stop.IsCancellationRequested)
                    {
                        return; // stopped: what has not started does not start
                    }

                    try
                    {
                        await OnPipelineAsync(() =>
                        {
                            // One session for all of them: a receive runs in it as a thread job, so it is free again at once.
                            remote ??= ToHost ? RemoteDestination.Connect(this, DestinationHost, UserName, KeyFilePath, SshPort, SshOption, Session) : null;
                            batch.Running++;
                            WriteProgress(batch.Record());
                            Prepare(move, remote);
                        });
                        var result = await MigrateAsync(move, batch, stop);
                        await OnPipelineAsync(() => Succeeded(move, result));
                    }
                    catch (Exception e) when (e is not PipelineStoppedException)
                    {
                        await Quietly(() => Failed(move, e));
                    }
                    finally
                    {
                        await Quietly(() =>
                        {
                            Cleanup(move);
                            batch.Running = Math.Max(0, batch.Running - 1);
                            batch.Done++;
                            WriteProgress(batch.Record());
                        });
                    }
                });
                return true;
            });
        }
        finally
        {
            remote?.Close();
            WriteProgress(batch.Record(completed: true));
        }
    }

    /// <summary>This module's manifest (the binary's Path is the dll), for a host that has it at the same path.</summary>
    private string ManifestPath()
    {
        var module = MyInvocation.MyCommand.Module;
        var manifest = System.IO.Path.Combine(module.ModuleBase, module.Name + ".psd1");
        return File.Exists(manifest) ? manifest : module.Path;
    }

    /// <summary>On the pipeline thread: the destination ready (a waiting VM and receiver there, or a local one), request and options built.</summary>
    private void Prepare(Move move, RemoteDestination? remote)
    {
        var planned = move.Planned;
        var token = planned.Token;
        MigrationTarget target;
        if (ToHost)
        {
            // Over the session: the same module there, a VM like the source (unless one waits there), Receive-KvmVM; its token stays in memory.
            if (remote is null)
            {
                remote = RemoteDestination.Connect(this, DestinationHost, UserName, KeyFilePath, SshPort, SshOption, Session);
                move.OwnedRemote = remote;
            }

            var destinationName = DestinationName ?? planned.Name;
            remote.ImportModule(MyInvocation.MyCommand.Module.Version, ManifestPath());
            if (DestinationQmpSocket is null)
            {
                remote.StartWaitingVm(planned.Source, destinationName, DestinationPaused);
                move.RemoteVm = (remote, destinationName);
            }

            move.Receiver = remote.StartReceiver(destinationName, DestinationQmpSocket, ThrottleLimit);
            target = new RemoteTarget(move.Receiver.Host, move.Receiver.Port);
            token = move.Receiver.Token;
        }
        else
        {
            target = ResolveDestination(planned.Name, planned.Destination!);
        }

        move.Request = new MigrationRequest(planned.Name, planned.Source.ControlSocket, target)
        {
            TunnelDirectory = RunDirectory.ForTunnelOf(planned.Source),
        };
        move.Options = new MigrationOptions
        {
            Compress = Compress,
            CacheSize = MyInvocation.BoundParameters.ContainsKey(nameof(CacheSize)) ? CacheSize : null,
            Token = token is null ? null : MigrationToken.Parse(token),
            MaxDowntime = MaxDowntime,
            Bandwidth = Bandwidth > 0 ? Bandwidth : null,
            SharedBandwidth = _sharedBucket,
            BandwidthShare = _bandwidthShare,
            CacheBudget = _budget,
            AutoConverge = AutoConverge,
            Converge = Converge,
            Timeout = Timeout > TimeSpan.Zero ? Timeout : null,
            TimeoutAction = TimeoutAction,
            KeepSource = KeepSource,
        };
    }

    /// <summary>The engine's part, on any thread; progress goes to the pipeline as a child of the batch's record.</summary>
    private Task<MigrationResult> MigrateAsync(Move move, Batch? parent, CancellationToken stop)
    {
        var request = move.Request!;
        var activity = move.Planned.Activity;
        return new MigrationSession(request, move.Options!, Logger,
            PipelineProgress<MigrationProgress>(p => WriteProgress(Progress(activity, parent, request, p)))).RunAsync(stop);
    }

    /// <summary>On the pipeline thread: the receiver's side ends, the source's record goes, the result is written.</summary>
    private void Succeeded(Move move, MigrationResult result)
    {
        move.Receiver?.Finish();
        move.KeepRemoteVm = true;
        if (!move.Planned.Source.Foreign && result.SourceState == "exited")
        {
            VmResolver.RunDirectory.Remove(move.Planned.Name); // the source's QEMU was quit after the commit
        }

        Emit(result);
    }

    /// <summary>On the pipeline thread: this VM's failure as its own error.</summary>
    private void Failed(Move move, Exception exception)
    {
        switch (exception)
        {
            case MigrationFailedException e:
                // The result says what each side is left in; scripts read it from TargetObject.
                WriteError(new ErrorRecord(e, e.ErrorId, ToErrorRecord(e).CategoryInfo.Category, e.Result));
                break;
            case MigrationInDoubtException e:
                // Neither Completed nor Failed: the message names the side holding the state and the command to finish.
                move.KeepRemoteVm = true; // the destination may hold the only complete state
                WriteError(new ErrorRecord(e, e.ErrorId, ToErrorRecord(e).CategoryInfo.Category, (object?)e.Result ?? move.Planned.Name));
                break;
            default:
                WriteError(ToErrorRecord(exception, move.Planned.Name));
                break;
        }
    }

    /// <summary>On the pipeline thread, on every way out: a VM this command started there goes again unless it took over the guest (or may have: in doubt).</summary>
    private void Cleanup(Move move)
    {
        try
        {
            move.Receiver?.Finish();
            if (move.RemoteVm is var (remote, name) && !move.KeepRemoteVm)
            {
                remote.RemoveVm(name);
            }
        }
        finally
        {
            move.OwnedRemote?.Close();
        }

        // Last: while the pipeline stops this throws, and the clean-up above must have happened.
        if (move.Request is not null)
        {
            WriteProgress(new ProgressRecord(move.Planned.Activity, Activity(move.Request), "Done")
            {
                ParentActivityId = move.InBatch ? Batch.ActivityId : -1,
                RecordType = ProgressRecordType.Completed,
            });
        }
    }

    /// <summary>Runs on the pipeline thread if the pump still runs; while stopping, output has nowhere to go.</summary>
    private async Task Quietly(Action action)
    {
        try
        {
            await OnPipelineAsync(action);
        }
        catch (Exception)
        {
            // the pipeline is stopping or the pump has ended
        }
    }

    /// <summary>
    /// -AsJob: the collected VMs and the same parameters, in a thread job that imports this module by
    /// its manifest. Stopping the job stops that Move-KvmVM, which cancels and resumes the sources.
    /// </summary>
    private PSObject StartJob()
    {
        string[] perItem = [nameof(Name), nameof(VM), nameof(QmpPath), nameof(Foreign), nameof(Destination), nameof(Token), nameof(AsJob), "WhatIf", "Confirm",
            "OutVariable", "ErrorVariable", "WarningVariable", "InformationVariable", "OutBuffer", "PipelineVariable"];
        var parameters = new System.Collections.Hashtable(StringComparer.OrdinalIgnoreCase);
        foreach (var (key, value) in _commandLine)
        {
            if (!perItem.Contains(key, StringComparer.OrdinalIgnoreCase))
            {
                parameters[key] = value;
            }
        }

        parameters["Confirm"] = false; // confirmed here, item by item
        var items = _planned.Select(p =>
        {
            // Each VM as the pipeline would bind it there: by name, with its own destination and token, if any.
            var item = new PSObject();
            item.Properties.Add(new PSNoteProperty(nameof(Name), p.Name));
            if (p.Source.Foreign)
            {
                item.Properties.Add(new PSNoteProperty(nameof(QmpPath), p.Source.ControlSocket));
                item.Properties.Add(new PSNoteProperty(nameof(Foreign), true));
            }

            if (p.Destination is not null)
            {
                item.Properties.Add(new PSNoteProperty(nameof(Destination), p.Destination));
            }

            if (p.Token is not null)
            {
                item.Properties.Add(new PSNoteProperty(nameof(Token), p.Token));
            }

            return item;
        }).ToArray();
        var name = $"Move-KvmVM {string.Join(", ", _planned.Select(p => p.Name))}";
        return InvokeCommand.InvokeScript("""
            param($Manifest, $Parameters, $Items, $JobName)
            Start-ThreadJob -Name $JobName -ArgumentList $Manifest, $Parameters, $Items -ScriptBlock {
                param($Manifest, $Parameters, $Items)
                Import-Module $Manifest
                $Items | DeltaMigrate\Move-KvmVM @Parameters
            }
            """, true, System.Management.Automation.Runspaces.PipelineResultTypes.None, null, ManifestPath(), parameters, items, name).Single();
    }

    private MigrationTarget ResolveDestination(string source, object destination)
    {
        var text = DestinationText(destination);
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

    private static string Activity(MigrationRequest request) => $"Migrating {request.VMName} to {request.Destination.Display}";

    private static ProgressRecord Progress(int activity, Batch? parent, MigrationRequest request, MigrationProgress p) => new(activity,
        Activity(request),
        $"{p.Status}, round {p.Round}: {p.BytesRemaining / 1048576.0:0.0} MiB left, {p.ThroughputMbps:0.0} Mbit/s" +
        (p.ExpectedDowntime is { } d ? $", expected downtime {d.TotalMilliseconds:0} ms" : "") +
        (p.ThrottlePercent > 0 ? $", guest throttled {p.ThrottlePercent} %" : ""))
    {
        ParentActivityId = parent is null ? -1 : Batch.ActivityId,
        PercentComplete = p.PercentComplete,
        CurrentOperation = $"{p.BytesTransferred / 1048576.0:0.0} MiB of QEMU's stream as {p.WireBytes / 1048576.0:0.0} MiB on the wire in {p.Elapsed.TotalSeconds:0.0} s",
    };

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

    /// <summary>One piped VM as it was bound: its name, record, destination and token.</summary>
    private sealed record PlannedMove(string Name, VmInfo? VM, VmRecord Source, object? Destination, string? Token, int Activity, string? SingleUseKey);

    /// <summary>One migration's state across its steps (prepare, migrate, finish, clean up).</summary>
    private sealed class Move(PlannedMove planned)
    {
        public PlannedMove Planned { get; } = planned;

        public MigrationRequest? Request { get; set; }

        public MigrationOptions? Options { get; set; }

        public RemoteReceiver? Receiver { get; set; }

        /// <summary>The session this move opened for itself (ThrottleLimit 1 with -DestinationHost).</summary>
        public RemoteDestination? OwnedRemote { get; set; }

        /// <summary>The VM this command started on the other host.</summary>
        public (RemoteDestination Host, string Name)? RemoteVm { get; set; }

        public bool KeepRemoteVm { get; set; }

        /// <summary>Part of a -ThrottleLimit batch: its progress is a child of the batch's.</summary>
        public bool InBatch { get; init; }
    }

    /// <summary>The parent progress record of a -ThrottleLimit batch; touched only on the pipeline thread.</summary>
    private sealed class Batch(int total)
    {
        public const int ActivityId = 0;

        public int Running { get; set; }

        public int Done { get; set; }

        public ProgressRecord Record(bool completed = false) => new(ActivityId, $"Moving {total} VMs", $"{Done} done, {Running} running")
        {
            PercentComplete = total == 0 ? 0 : Done * 100 / total,
            RecordType = completed ? ProgressRecordType.Completed : ProgressRecordType.Processing,
        };
    }
}
