using System.Management.Automation;
using DeltaMigrate.Engine;
using DeltaMigrate.Engine.Vm;
using DeltaMigrate.Module.Infrastructure;

namespace DeltaMigrate.Module.Commands;

/// <summary>Lists the VMs whose monitors are in the run directory, or the VM behind a QMP socket.</summary>
[Cmdlet(VerbsCommon.Get, "KvmVM", DefaultParameterSetName = "Name")]
[OutputType(typeof(VmInfo))]
public sealed class GetKvmVMCommand : EngineCmdlet
{
    [Parameter(Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true, ParameterSetName = "Name")]
    [SupportsWildcards]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(VmNameCompleter))]
    public string[] Name { get; set; } = ["*"];

    [Parameter(Mandatory = true, ParameterSetName = "Socket")]
    [ValidateNotNullOrEmpty]
    public string[] QmpSocket { get; set; } = [];

    protected override void ProcessRecord()
    {
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
}
