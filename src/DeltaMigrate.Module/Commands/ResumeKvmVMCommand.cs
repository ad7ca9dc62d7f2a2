using System.Management.Automation;
using DeltaMigrate.Engine;
using DeltaMigrate.Engine.Qmp;
using DeltaMigrate.Engine.Vm;
using DeltaMigrate.Module.Infrastructure;

namespace DeltaMigrate.Module.Commands;

/// <summary>
/// Runs a paused VM's vCPUs again (QMP cont): a VM started -Paused, or the copy a migration left in
/// doubt once you know the other copy does not run. Refuses a VM still waiting for a migration.
/// </summary>
[Cmdlet(VerbsLifecycle.Resume, "KvmVM", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.High, DefaultParameterSetName = "Name")]
[OutputType(typeof(VmInfo))]
public sealed class ResumeKvmVMCommand : EngineCmdlet
{
    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true, ParameterSetName = "Name")]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(VmNameCompleter))]
    public string Name { get; set; } = "";

    [Parameter(Mandatory = true, ValueFromPipeline = true, ParameterSetName = "VM")]
    public VmInfo? VM { get; set; }

    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void ProcessRecord()
    {
        var name = VM?.Name ?? Name;
        try
        {
            var record = VmResolver.Single(name);
            if (!ShouldProcess(name, "Resume the VM (make sure no other copy of it runs)"))
            {
                return;
            }

            RunEngine(async stop =>
            {
                await using var qmp = await QmpClient.ConnectUnixAsync(record.QuerySocket, Logger, null, stop);
                var status = await qmp.QueryStatusAsync(stop);
                if (status.Status == "inmigrate")
                {
                    throw new EngineException("VMWaitingForMigration", ErrorKind.InvalidState,
                        $"VM '{name}' is waiting for a migration and holds no guest yet; there is nothing to resume.")
                    { Target = name };
                }

                if (!status.Running)
                {
                    await qmp.ContAsync(stop);
                }

                return true;
            });
            if (PassThru)
            {
                WriteObject(RunEngine(stop => VmInspector.InspectAsync(record, Logger, stop)));
            }
        }
        catch (Exception e) when (e is EngineException or QmpException)
        {
            WriteError(ToErrorRecord(e, name));
        }
    }
}
