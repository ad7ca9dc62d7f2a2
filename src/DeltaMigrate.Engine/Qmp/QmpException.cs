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
