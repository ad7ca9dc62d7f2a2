namespace DeltaMigrate.Engine.Vm;

/// <summary>A VM as seen now: what we recorded when it started plus what its monitor says.</summary>
public sealed record VmInfo
{
    public required string Name { get; init; }

    /// <summary>QEMU's run state (running, paused, inmigrate, postmigrate...), or exited / unreachable.</summary>
    public required string State { get; init; }
    public long MemoryBytes { get; init; }
    public string? QemuVersion { get; init; }
    public int? Pid { get; init; }
    public string? Machine { get; init; }
    public required string QmpPath { get; init; }

    /// <summary>A second monitor that answers while a migration holds the first.</summary>
    public string? QuerySocket { get; init; }
    public string? SerialLog { get; init; }
    public string? QemuPath { get; init; }

    /// <summary>Started -Paused: stays paused after a migration into it commits.</summary>
    public bool StartedPaused { get; init; }

    /// <summary>Not started by DeltaMigrate: known only by <see cref="QmpPath"/>, which may be its only monitor.</summary>
    public bool Foreign { get; init; }
}
