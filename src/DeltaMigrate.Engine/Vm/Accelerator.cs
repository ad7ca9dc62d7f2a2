namespace DeltaMigrate.Engine.Vm;

/// <summary>How QEMU runs the guest's CPU.</summary>
public enum Accelerator
{
    /// <summary>KVM when /dev/kvm is usable, otherwise TCG.</summary>
    Auto,
    Kvm,
    Tcg,
}
