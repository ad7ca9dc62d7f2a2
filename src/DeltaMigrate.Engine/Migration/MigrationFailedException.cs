namespace DeltaMigrate.Engine.Migration;

/// <summary>A migration that ended without the VM running at the destination; carries what happened.</summary>
public sealed class MigrationFailedException(string errorId, ErrorKind kind, string message, MigrationResult result)
    : EngineException(errorId, kind, message)
{
    public MigrationResult Result { get; } = result;
}
