namespace DeltaMigrate.Engine.Migration.Commit;

/// <summary>Receiver to sender: the destination it checked, and where QEMU's own transport connects (unix:PATH, or tcp with the port; the sender knows the host).</summary>
public sealed record PreparedReply(VmDescription Destination, string? QemuUnixPath, int? QemuPort);
