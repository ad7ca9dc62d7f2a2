using System.Management.Automation;
using DeltaMigrate.Engine;
using DeltaMigrate.Engine.Libvirt;
using DeltaMigrate.Engine.Migration;
using DeltaMigrate.Engine.Transport;
using DeltaMigrate.Module.Infrastructure;

namespace DeltaMigrate.Module.Commands;

/// <summary>Move-KvmVM of a libvirt domain: libvirt in charge of both QEMUs, only the stream through our tunnel.</summary>
public sealed partial class MoveKvmVMCommand
{
    private const string LibvirtByName = "Libvirt";
    private const string LibvirtPiped = "LibvirtDomain";

    /// <summary>Name a libvirt domain (with -Name) instead of one of ours.</summary>
    [Parameter(Mandatory = true, ParameterSetName = LibvirtByName)]
    public SwitchParameter Libvirt { get; set; }

    /// <summary>A domain from Get-KvmVM -Libvirt.</summary>
    [Parameter(Mandatory = true, ValueFromPipeline = true, ParameterSetName = LibvirtPiped)]
    public LibvirtDomainInfo? LibvirtDomain { get; set; }

    /// <summary>The source host's libvirt (default qemu:///system; a piped domain brings its own).</summary>
    [Parameter(ParameterSetName = LibvirtByName)]
    [ValidateNotNullOrEmpty]
    public string? ConnectionUri { get; set; }

    /// <summary>The destination host's libvirt as this host reaches it (default qemu+ssh://DESTINATIONHOST/system).</summary>
    [Parameter(ParameterSetName = LibvirtByName)]
    [Parameter(ParameterSetName = LibvirtPiped)]
    [ValidateNotNullOrEmpty]
    public string? DestinationUri { get; set; }

    /// <summary>
    /// The folder for the migration's unix socket: the same path on both hosts, where libvirt's QEMUs
    /// can reach it (default: the run directory, /run/deltamigrate as root).
    /// </summary>
    [Parameter(ParameterSetName = LibvirtByName)]
    [Parameter(ParameterSetName = LibvirtPiped)]
    [ValidateNotNullOrEmpty]
    public string? SocketDirectory { get; set; }

    /// <summary>libvirt's --persistent: the destination keeps the domain defined.</summary>
    [Parameter(ParameterSetName = LibvirtByName)]
    [Parameter(ParameterSetName = LibvirtPiped)]
    public SwitchParameter Persistent { get; set; }

    /// <summary>libvirt's --undefinesource: the source forgets the domain's definition.</summary>
    [Parameter(ParameterSetName = LibvirtByName)]
    [Parameter(ParameterSetName = LibvirtPiped)]
    public SwitchParameter UndefineSource { get; set; }

    private void MoveLibvirtDomain()
    {
        var name = LibvirtDomain?.Name ?? Name;
        var sourceUri = LibvirtDomain?.ConnectionUri ?? ConnectionUri ?? LibvirtConnection.DefaultUri;
        RemoteDestination? remote = null;
        RemoteReceiver? receiver = null;
        try
        {
            if (!ToHost || Destination is not null)
            {
                throw new EngineException("InvalidDestination", ErrorKind.InvalidArgument,
                    $"A libvirt domain moves to another host's libvirt: give -DestinationHost (or -Session), and -DestinationUri unless qemu+ssh://HOST/system reaches it.")
                { Target = name };
            }

            var host = DestinationHost ?? Session?.Properties["ComputerName"]?.Value?.ToString() ?? "";
            var destinationUri = DestinationUri ?? $"qemu+ssh://{host}/system";
            if (!ShouldProcess(name, $"Live-migrate libvirt domain from {sourceUri} to {destinationUri} through our tunnel ({Compress})"))
            {
                return;
            }

            var folder = SocketDirectory is null ? VmResolver.RunDirectory.Path : GetUnresolvedProviderPathFromPSPath(SocketDirectory);
            var socket = Path.Combine(folder, $"libvirt-{Guid.NewGuid():N}.sock");
            remote = RemoteDestination.Connect(this, DestinationHost, UserName, KeyFilePath, SshPort, SshOption, Session);
            remote.ImportModule(MyInvocation.MyCommand.Module.Version, ManifestPath());
            receiver = remote.StartReceiver(name, null, 1, libvirtSocket: socket);
            var request = new LibvirtMigrationRequest
            {
                DomainName = name,
                SourceUri = sourceUri,
                DestinationUri = destinationUri,
                ReceiverHost = receiver.Host,
                ReceiverPort = receiver.Port,
                Token = MigrationToken.Parse(receiver.Token),
                SocketPath = socket,
                Compress = Compress,
                CacheSize = MyInvocation.BoundParameters.ContainsKey(nameof(CacheSize)) ? CacheSize : null,
                Bandwidth = Bandwidth > 0 ? Bandwidth : null,
                MaxDowntime = MyInvocation.BoundParameters.ContainsKey(nameof(MaxDowntime)) ? MaxDowntime : null,
                Persistent = Persistent,
                UndefineSource = UndefineSource,
                AutoConverge = AutoConverge,
                DestinationPaused = DestinationPaused,
            };
            int activity = ++_activity;
            string title = $"Migrating libvirt domain {name} to {destinationUri}";
            var result = RunEngine(stop => new LibvirtMigration(request, Logger).RunAsync(
                PipelineProgress<MigrationProgress>(p => WriteProgress(new ProgressRecord(activity, title,
                    $"round {p.Round}: {p.BytesRemaining / 1048576.0:0.0} MiB left, {p.ThroughputMbps:0.0} Mbit/s")
                {
                    PercentComplete = p.PercentComplete,
                    CurrentOperation = $"{p.BytesTransferred / 1048576.0:0.0} MiB of QEMU's stream as {p.WireBytes / 1048576.0:0.0} MiB on the wire in {p.Elapsed.TotalSeconds:0.0} s",
                })), stop));
            receiver.Finish();
            receiver = null;
            Emit(result);
        }
        catch (Exception e) when (e is EngineException or TimeoutException)
        {
            WriteError(e is EngineException { Target: MigrationResult result } engine
                ? new ErrorRecord(e, engine.ErrorId, ToErrorRecord(e).CategoryInfo.Category, result)
                : ToErrorRecord(e, name));
        }
        finally
        {
            receiver?.Stop();
            remote?.Close();
        }
    }
}
