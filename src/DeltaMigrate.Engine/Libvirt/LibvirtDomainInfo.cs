namespace DeltaMigrate.Engine.Libvirt;

/// <summary>One domain as libvirt lists it.</summary>
public sealed record LibvirtDomainInfo
{
    public required string Name { get; init; }
    public required string State { get; init; }
    public required long MemoryMiB { get; init; }
    public required int VirtualCpus { get; init; }
    public required Guid Uuid { get; init; }
    public required bool Persistent { get; init; }

    /// <summary>The hypervisor's version through libvirt, e.g. "7.2.0".</summary>
    public required string QemuVersion { get; init; }

    /// <summary>libvirt's own version, e.g. "9.0.0".</summary>
    public required string LibvirtVersion { get; init; }

    /// <summary>The URI the domain was listed through (as given, so it can be opened again).</summary>
    public required string ConnectionUri { get; init; }

    internal static string StateName(byte state) => state switch
    {
        1 => "Running",
        2 => "Blocked",
        3 => "Paused",
        4 => "ShuttingDown",
        5 => "ShutOff",
        6 => "Crashed",
        7 => "Suspended",
        _ => "NoState",
    };

    internal static string FormatVersion(ulong version) => $"{version / 1_000_000}.{version / 1000 % 1000}.{version % 1000}";
}
