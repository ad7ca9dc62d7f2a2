namespace DeltaMigrate.Engine.Vm;

/// <summary>What we know about a VM we started, kept beside its sockets.</summary>
public sealed record VmRecord
{
    public required string Name { get; init; }
    public required int Pid { get; init; }
    public required long MemoryBytes { get; init; }
    public required string Machine { get; init; }
    public required string QemuPath { get; init; }
    public required string ControlSocket { get; init; }
    public required string QuerySocket { get; init; }
    public required string SerialLog { get; init; }
    public required IReadOnlyList<string> CommandLine { get; init; }
    public DateTimeOffset StartTime { get; init; }

    /// <summary>What the VM was started with, so a matching VM can be started on another host (null in older records).</summary>
    public VmSpec? Spec { get; init; }

    /// <summary>-Paused: the VM stays paused after a migration into it commits, too.</summary>
    public bool StaysPaused { get; init; }

    /// <summary>Not started by DeltaMigrate: known only by its QMP socket (see <see cref="ForeignVm"/>); never saved to the run directory.</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public bool Foreign { get; init; }

    /// <summary>A foreign VM's run directory of ours, where its migration's sockets go (see <see cref="RunDirectory.ForTunnelOf"/>).</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public string? TunnelDirectory { get; init; }

    /// <summary>A foreign VM's drive images: why it has no <see cref="Spec"/> (QMP does not say how they are attached).</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public IReadOnlyList<string> ForeignDrives { get; init; } = [];

    /// <summary>QEMU was started with -S (every -Incoming VM is): it will not run the guest until told to, so a migration into it waits for the commit.</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public bool HoldsForCommit => CommandLine.Contains("-S");
}
