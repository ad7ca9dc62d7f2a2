using System.Diagnostics;
using System.Management.Automation;
using DeltaMigrate.Engine;
using DeltaMigrate.Engine.Qmp;
using DeltaMigrate.Engine.Vm;
using DeltaMigrate.Module.Infrastructure;

namespace DeltaMigrate.Module.Commands;

/// <summary>Shuts a VM down: ACPI power button, or -Force to end QEMU at once.</summary>
[Cmdlet(VerbsLifecycle.Stop, "KvmVM", SupportsShouldProcess = true, DefaultParameterSetName = "Name")]
[OutputType(typeof(VmInfo))]
public sealed class StopKvmVMCommand : EngineCmdlet
{
    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true, ParameterSetName = "Name")]
    [SupportsWildcards]
    [ArgumentCompleter(typeof(VmNameCompleter))]
    public string[] Name { get; set; } = [];

    [Parameter(Mandatory = true, ValueFromPipeline = true, ParameterSetName = "VM")]
    public VmInfo[] VM { get; set; } = [];

    /// <summary>Quit QEMU instead of asking the guest to power off.</summary>
    [Parameter]
    public SwitchParameter Force { get; set; }

    /// <summary>How long to wait for the guest to power off.</summary>
    [Parameter]
    [Seconds]
    public TimeSpan Timeout { get; set; } = TimeSpan.FromSeconds(60);

    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void ProcessRecord()
    {
        var names = ParameterSetName == "VM" ? VM.Select(v => v.Name) : Name;
        foreach (var pattern in names)
        {
            try
            {
                foreach (var record in VmResolver.Find(pattern))
                {
                    Stop(record);
                }
            }
            catch (EngineException e)
            {
                WriteError(ToErrorRecord(e, pattern));
            }
        }
    }

    private void Stop(VmRecord record)
    {
        if (!ShouldProcess(record.Name, Force ? "Stop VM (quit QEMU)" : "Stop VM (ACPI power off)"))
        {
            return;
        }

        var stopped = RunEngine(async stop =>
        {
            // The query monitor answers even while a migration holds the control socket.
            await using (var qmp = await QmpClient.ConnectUnixAsync(record.QuerySocket, Logger, null, stop))
            {
                await (Force ? qmp.QuitAsync(stop) : qmp.SystemPowerdownAsync(stop));
            }

            var clock = Stopwatch.StartNew();
            while (QemuLauncher.IsAlive(record.Pid) && clock.Elapsed < Timeout)
            {
                await Task.Delay(100, stop);
            }

            return !QemuLauncher.IsAlive(record.Pid);
        });
        if (!stopped)
        {
            WriteError(Error("VMDidNotStop", ErrorCategory.OperationTimeout, record.Name,
                $"VM '{record.Name}' did not power off within {Timeout.TotalSeconds:0} s (its guest may ignore ACPI). Use Stop-KvmVM -Force."));
            return;
        }

        VmResolver.RunDirectory.Remove(record.Name);
        if (PassThru)
        {
            WriteObject(RunEngine(stop => VmInspector.InspectAsync(record, Logger, stop)));
        }
    }
}
