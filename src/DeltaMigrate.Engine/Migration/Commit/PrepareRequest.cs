namespace DeltaMigrate.Engine.Migration.Commit;

/// <summary>Sender to receiver, first frame after the handshake.</summary>
public sealed record PrepareRequest(DataPath Path, VmDescription Source, Guid MigrationId);
