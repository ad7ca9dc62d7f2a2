namespace DeltaMigrate.Engine.Migration;

/// <summary>A VM on this host waiting for a migration (started with -incoming defer); we drive both ends.</summary>
public sealed record LocalVmTarget(Vm.VmRecord Record) : MigrationTarget
{
    public string Name => Record.Name;

    public override string Display => Name;
}
