namespace DeltaMigrate.Engine.Migration.Commit;

/// <summary>Where the receiving half of a migration is.</summary>
public enum IncomingPhase
{
    Preparing,
    Receiving,
    Loading,
    AwaitingCommit,
    Committed,
}
