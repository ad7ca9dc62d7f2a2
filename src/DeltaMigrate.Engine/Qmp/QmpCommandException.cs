namespace DeltaMigrate.Engine.Qmp;

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
