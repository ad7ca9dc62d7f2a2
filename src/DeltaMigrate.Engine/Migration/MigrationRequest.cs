namespace DeltaMigrate.Engine.Migration;

/// <summary>One VM to migrate: its control socket and where it goes.</summary>
public sealed record MigrationRequest(string VMName, string SourceControlSocket, MigrationTarget Destination)
{
    /// <summary>Where the source QEMU meets our tunnel: beside its monitor for a VM of ours; set it to our run directory for a foreign VM.</summary>
    public Vm.RunDirectory TunnelDirectory { get; init; } = new(Path.GetDirectoryName(SourceControlSocket)!);
}
