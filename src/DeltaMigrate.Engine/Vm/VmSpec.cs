namespace DeltaMigrate.Engine.Vm;

/// <summary>Everything needed to start one QEMU VM.</summary>
public sealed record VmSpec
{
    public required string Name { get; init; }

    /// <summary>Guest RAM in bytes; QEMU takes whole MiB.</summary>
    public required long MemoryBytes { get; init; }

    /// <summary>A multiboot or Linux kernel booted with -kernel.</summary>
    public string? Kernel { get; init; }

    /// <summary>The kernel command line (-append).</summary>
    public string? Append { get; init; }

    /// <summary>An initial ramdisk for the kernel (-initrd).</summary>
    public string? Initrd { get; init; }

    /// <summary>A disk image attached as the first drive.</summary>
    public string? Disk { get; init; }

    /// <summary>Machine type; pin one (e.g. pc-i440fx-7.2) to migrate between QEMU versions.</summary>
    public string Machine { get; init; } = "pc";

    public Accelerator Accelerator { get; init; } = Accelerator.Auto;

    /// <summary>The QEMU binary; null finds qemu-system-x86_64 on PATH.</summary>
    public string? QemuPath { get; init; }

    /// <summary>Extra arguments appended to QEMU's command line as they are.</summary>
    public IReadOnlyList<string> ExtraArguments { get; init; } = [];

    /// <summary>Start waiting for an incoming migration (-incoming defer).</summary>
    public bool Incoming { get; init; }

    /// <summary>Start with the CPUs stopped (-S).</summary>
    public bool Paused { get; init; }
}
