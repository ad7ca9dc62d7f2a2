namespace DeltaMigrate.Engine.Migration;

/// <summary>
/// Both copies are paused and only the admin can tell which should run: neither Completed nor Failed.
/// The message names the side that holds the complete state and the command that finishes or undoes it.
/// </summary>
public sealed class MigrationInDoubtException(string message, string target, MigrationResult? result)
    : EngineException("MigrationInDoubt", ErrorKind.InvalidState, message)
{
    public MigrationResult? Result { get; } = result;

    public string VM { get; } = target;
}
