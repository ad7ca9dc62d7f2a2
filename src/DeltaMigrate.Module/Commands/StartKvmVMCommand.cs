using System.Management.Automation;
using DeltaMigrate.Engine;
using DeltaMigrate.Engine.Vm;
using DeltaMigrate.Module.Infrastructure;

namespace DeltaMigrate.Module.Commands;

/// <summary>Starts a QEMU VM whose monitors live in the run directory, and outputs it.</summary>
[Cmdlet(VerbsLifecycle.Start, "KvmVM", SupportsShouldProcess = true, DefaultParameterSetName = "Kernel")]
[OutputType(typeof(VmInfo))]
public sealed class StartKvmVMCommand : EngineCmdlet
{
    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    public string Name { get; set; } = "";

    /// <summary>Bytes: 512MB works.</summary>
    [Parameter(Mandatory = true, Position = 1)]
    [ValidateRange(16L * 1024 * 1024, long.MaxValue)]
    public long Memory { get; set; }

    [Parameter(ParameterSetName = "Kernel")]
    public string? Kernel { get; set; }

    [Parameter(ParameterSetName = "Kernel")]
    public string? Append { get; set; }

    /// <summary>An initial ramdisk for -Kernel.</summary>
    [Parameter(ParameterSetName = "Kernel")]
    public string? Initrd { get; set; }

    [Parameter(Mandatory = true, ParameterSetName = "Disk")]
    public string? Disk { get; set; }

    [Parameter]
    [ValidateNotNullOrEmpty]
    public string Machine { get; set; } = "pc";

    [Parameter]
    public Accelerator Accelerator { get; set; } = Accelerator.Auto;

    [Parameter]
    public string? QemuPath { get; set; }

    [Parameter]
    public string[] ArgumentList { get; set; } = [];

    /// <summary>Wait for an incoming migration (-incoming defer).</summary>
    [Parameter]
    public SwitchParameter Incoming { get; set; }

    /// <summary>Start with the CPUs stopped (-S).</summary>
    [Parameter]
    public SwitchParameter Paused { get; set; }

    protected override void ProcessRecord()
    {
        if (!ShouldProcess(Name, Incoming ? "Start VM waiting for an incoming migration" : "Start VM"))
        {
            return;
        }

        var spec = new VmSpec
        {
            Name = Name,
            MemoryBytes = Memory,
            Kernel = Kernel is null ? null : GetUnresolvedProviderPathFromPSPath(Kernel),
            Append = Append,
            Initrd = Initrd is null ? null : GetUnresolvedProviderPathFromPSPath(Initrd),
            Disk = Disk is null ? null : GetUnresolvedProviderPathFromPSPath(Disk),
            Machine = Machine,
            Accelerator = Accelerator,
            QemuPath = QemuPath is null ? null : GetUnresolvedProviderPathFromPSPath(QemuPath),
            ExtraArguments = ArgumentList,
            Incoming = Incoming,
            Paused = Paused,
        };
        try
        {
            var vm = RunEngine(async stop =>
            {
                var record = await new QemuLauncher(VmResolver.RunDirectory, Logger).StartAsync(spec, stop);
                return await VmInspector.InspectAsync(record, Logger, stop);
            });
            WriteObject(vm);
        }
        catch (EngineException e)
        {
            WriteError(ToErrorRecord(e, Name));
        }
    }
}
