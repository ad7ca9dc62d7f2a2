namespace DeltaMigrate.Engine.Migration.Commit;

/// <summary>Receiver to sender after Commit.</summary>
public sealed record RunningReply(string State);
