using System.Management.Automation;
using DeltaMigrate.Engine;
using DeltaMigrate.Engine.Libvirt;
using DeltaMigrate.Engine.Vm;
using DeltaMigrate.Module.Infrastructure;

namespace DeltaMigrate.Module.Commands;

/// <summary>Lists the VMs whose monitors are in the run directory, the VM behind a QMP socket, or libvirt's domains.</summary>
[Cmdlet(VerbsCommon.Get, "KvmVM", DefaultParameterSetName = "Name")]
[OutputType(typeof(VmInfo))]
[OutputType(typeof(LibvirtDomainInfo), ParameterSetName = ["Libvirt"])]
public sealed class GetKvmVMCommand : EngineCmdlet
{
    [Parameter(Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true, ParameterSetName = "Name")]
    [Parameter(Position = 0, ParameterSetName = "Libvirt")]
    [SupportsWildcards]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(VmNameCompleter))]
    public string[] Name { get; set; } = ["*"];

    [Parameter(Mandatory = true, ParameterSetName = "Socket")]
    [ValidateNotNullOrEmpty]
    public string[] QmpSocket { get; set; } = [];

    /// <summary>libvirt's domains instead of ours: libvirt keeps their monitors, we only ask libvirt.</summary>
    [Parameter(Mandatory = true, ParameterSetName = "Libvirt")]
    public SwitchParameter Libvirt { get; set; }

    /// <summary>The libvirt daemon to ask.</summary>
    [Parameter(ParameterSetName = "Libvirt")]
    [ValidateNotNullOrEmpty]
    public string ConnectionUri { get; set; } = LibvirtConnection.DefaultUri;

    protected override void ProcessRecord()
    {
        if (ParameterSetName == "Libvirt")
        {
            WriteLibvirtDomains();
            return;
        }

        if (ParameterSetName == "Socket")
        {
            foreach (var socket in QmpSocket)
            {
                var path = GetUnresolvedProviderPathFromPSPath(socket);
                WriteObject(RunEngine(stop => VmInspector.InspectSocketAsync(path, Logger, stop)));
            }

            return;
        }

        foreach (var pattern in Name)
        {
            try
            {
                foreach (var record in VmResolver.Find(pattern))
                {
                    WriteObject(RunEngine(stop => VmInspector.InspectAsync(record, Logger, stop)));
                }
            }
            catch (EngineException e)
            {
                WriteError(ToErrorRecord(e, pattern));
            }
        }
    }

    private void WriteLibvirtDomains()
    {
        IReadOnlyList<LibvirtDomainInfo> domains;
        try
        {
            using var connection = LibvirtConnection.Open(ConnectionUri);
            domains = connection.ListDomains();
        }
        catch (LibvirtException e)
        {
            ThrowTerminatingError(ToErrorRecord(e, ConnectionUri));
            return;
        }

        foreach (var pattern in Name)
        {
            var wildcard = WildcardPattern.Get(pattern, WildcardOptions.IgnoreCase);
            var matches = domains.Where(d => wildcard.IsMatch(d.Name)).ToList();
            if (matches.Count == 0 && !WildcardPattern.ContainsWildcardCharacters(pattern))
            {
                WriteError(ToErrorRecord(new LibvirtException(LibvirtException.DomainNotFound, ErrorKind.NotFound,
                    $"libvirt at {ConnectionUri} has no domain '{pattern}': list them with Get-KvmVM -Libvirt -ConnectionUri {ConnectionUri}."), pattern));
            }

            matches.ForEach(WriteObject);
        }
    }
}
