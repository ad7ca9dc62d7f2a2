using System.Management.Automation;
using System.Net;
using DeltaMigrate.Engine;
using DeltaMigrate.Engine.Libvirt;
using DeltaMigrate.Engine.Migration;
using DeltaMigrate.Engine.Transport;
using DeltaMigrate.Engine.Vm;
using DeltaMigrate.Module.Infrastructure;

namespace DeltaMigrate.Module.Commands;

/// <summary>
/// The destination host's half of a migration (any mode): listens for the sender, outputs a ready
/// object with the endpoint and one-time token at once, then the result when the migration ends.
/// </summary>
[Cmdlet(VerbsCommunications.Receive, "KvmVM", SupportsShouldProcess = true, DefaultParameterSetName = "Name")]
[OutputType(typeof(ReceiverReady), typeof(ReceiveResult))]
public sealed class ReceiveKvmVMCommand : EngineCmdlet
{
    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true, ParameterSetName = "Name")]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(VmNameCompleter))]
    public string Name { get; set; } = "";

    [Parameter(Mandatory = true, ValueFromPipeline = true, ParameterSetName = "VM")]
    public VmInfo? VM { get; set; }

    /// <summary>A waiting QEMU DeltaMigrate did not start (-incoming defer), by its QMP socket; it is held paused until the commit even without -S.</summary>
    [Parameter(Mandatory = true, ParameterSetName = "Socket")]
    [ValidateNotNullOrEmpty]
    public string? QmpSocket { get; set; }

    /// <summary>
    /// For a libvirt migration (Move-KvmVM of a libvirt domain starts this itself): the unix socket
    /// libvirt's destination QEMU will listen on; the stream from our tunnel goes into it.
    /// </summary>
    [Parameter(Mandatory = true, ParameterSetName = "Libvirt")]
    [ValidateNotNullOrEmpty]
    public string? LibvirtSocket { get; set; }

    /// <summary>Address and port to listen on: 0.0.0.0:4444; port 0 lets the system pick.</summary>
    [Parameter(Position = 1)]
    [ValidateNotNullOrEmpty]
    public string Listen { get; set; } = "0.0.0.0:0";

    /// <summary>Use this token instead of a fresh one (scripts that hand it over themselves).</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    [Token]
    public string? Token { get; set; }

    /// <summary>Give up waiting for the sender after this long (a migration in progress is never cut off); a number means seconds.</summary>
    [Parameter]
    [Seconds]
    public TimeSpan Timeout { get; set; }

    protected override void ProcessRecord()
    {
        var name = VM?.Name ?? QmpSocket ?? LibvirtSocket ?? Name;
        try
        {
            if (LibvirtSocket is not null)
            {
                ReceiveForLibvirt(GetUnresolvedProviderPathFromPSPath(LibvirtSocket));
                return;
            }

            var socket = QmpSocket ?? (VM is { Foreign: true } ? VM.QmpPath : null);
            var record = socket is null
                ? VmResolver.Single(name)
                : RunEngine(stop => ForeignVm.DescribeAsync(GetUnresolvedProviderPathFromPSPath(socket), VmResolver.RunDirectory, Logger, stop));
            name = record.Name;
            if (!IPEndPoint.TryParse(Listen, out var endpoint))
            {
                throw new EngineException("InvalidListenAddress", ErrorKind.InvalidArgument,
                    $"-Listen '{Listen}' is not address:port (for example 0.0.0.0:4444).")
                { Target = Listen };
            }

            if (!ShouldProcess(name, $"Receive a live migration on {Listen}"))
            {
                return;
            }

            var session = new ReceiveSession(record, endpoint, Token is null ? null : MigrationToken.Parse(Token), Logger);
            var result = RunEngine(stop =>
                session.RunAsync(ready => Post(() => WriteObject(ready)), Timeout > TimeSpan.Zero ? Timeout : null, stop));
            WriteObject(result);
        }
        catch (EngineException e)
        {
            WriteError(ToErrorRecord(e, name));
        }
    }

    private void ReceiveForLibvirt(string socket)
    {
        if (!ShouldProcess(socket, $"Receive a libvirt migration on {Listen} into"))
        {
            return;
        }

        var relay = new LibvirtRelayReceiver(socket, ParseListen(), Token is null ? null : MigrationToken.Parse(Token), Logger);
        var result = RunEngine(stop => relay.RunAsync(ready => Post(() => WriteObject(ready)), Timeout > TimeSpan.Zero ? Timeout : null, stop));
        WriteObject(result);
    }

    private IPEndPoint ParseListen() => IPEndPoint.TryParse(Listen, out var endpoint) ? endpoint
        : throw new EngineException("InvalidListenAddress", ErrorKind.InvalidArgument, $"-Listen '{Listen}' is not address:port (for example 0.0.0.0:4444).") { Target = Listen };
}
