namespace DeltaMigrate.Engine.Migration;

/// <summary>Where a VM goes.</summary>
public abstract record MigrationTarget
{
    public abstract string Display { get; }
}
