namespace DeltaMigrate.Engine;

/// <summary>
/// A failure the user can act on: a stable id (the FullyQualifiedErrorId's first part),
/// a kind, and a message that says what happened and what to do.
/// </summary>
public class EngineException : Exception
{
    public EngineException(string errorId, ErrorKind kind, string message, Exception? inner = null)
        : base(message, inner)
    {
        ErrorId = errorId;
        Kind = kind;
    }

    public string ErrorId { get; }

    public ErrorKind Kind { get; }

    /// <summary>The object the error is about (a VM name, an endpoint), for the ErrorRecord.</summary>
    public object? Target { get; init; }
}
