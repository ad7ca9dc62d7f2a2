namespace DeltaMigrate.Engine.Migration;

public enum MigrationStatus
{
    Completed,
    Failed,
    Cancelled,

    /// <summary>Both copies paused after the commit's answer was lost; the error says which side to resume.</summary>
    InDoubt,
}
