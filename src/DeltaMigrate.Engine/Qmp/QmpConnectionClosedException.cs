namespace DeltaMigrate.Engine.Qmp;

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
