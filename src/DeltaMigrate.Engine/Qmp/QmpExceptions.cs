namespace DeltaMigrate.Engine.Qmp;

/// <summary>Base class of every failure the QMP client reports about the monitor connection or a command.</summary>
public class QmpException : Exception
{
    public QmpException(string message)
        : base(message)
    {
    }

    public QmpException(string message, Exception? innerException)
        : base(message, innerException)
    {
    }
}

/// <summary>QEMU answered a command with an <c>error</c> object.</summary>
public sealed class QmpCommandException : QmpException
{
    public QmpCommandException(string command, string errorClass, string description)
        : base($"QEMU refused '{command}': {description} ({errorClass})")
    {
        Command = command;
        ErrorClass = errorClass;
        Description = description;
    }

    /// <summary>The QMP command QEMU refused, e.g. <c>migrate</c>.</summary>
    public string Command { get; }

    /// <summary>QEMU's error class, e.g. <c>GenericError</c> or <c>CommandNotFound</c>.</summary>
    public string ErrorClass { get; }

    /// <summary>QEMU's human-readable description of the error.</summary>
    public string Description { get; }
}

/// <summary>
/// The QMP connection closed (QEMU exited, the socket was closed, or the client was disposed)
/// before a command got its reply, or a command was issued on a closed connection.
/// </summary>
public sealed class QmpConnectionClosedException : QmpException
{
    public QmpConnectionClosedException(string endpoint, string? command, bool wasPending, Exception? innerException = null)
        : base(BuildMessage(endpoint, command, wasPending, innerException), innerException)
    {
        Endpoint = endpoint;
        Command = command;
    }

    /// <summary>Where the connection went, e.g. <c>unix:/run/vm/qmp.sock</c>.</summary>
    public string Endpoint { get; }

    /// <summary>The command that was waiting or being sent, if any.</summary>
    public string? Command { get; }

    private static string BuildMessage(string endpoint, string? command, bool wasPending, Exception? inner)
    {
        string text = command is null
            ? $"QMP connection to {endpoint} closed"
            : wasPending
                ? $"QMP connection to {endpoint} closed while waiting for '{command}'"
                : $"QMP connection to {endpoint} is closed; cannot send '{command}'";
        return inner is null ? text : $"{text} ({inner.Message})";
    }
}
