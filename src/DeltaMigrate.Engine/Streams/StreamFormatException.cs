namespace DeltaMigrate.Engine.Streams;

/// <summary>The migration stream is corrupt, truncated, or uses a feature the reader does not understand.</summary>
public sealed class StreamFormatException : EngineException
{
    public StreamFormatException(string message, long offset, Exception? inner = null)
        : base("MigrationStreamFormat", ErrorKind.ProtocolError, $"{message} (at stream offset {offset})", inner)
    {
        Offset = offset;
    }

    /// <summary>Byte offset in the stream where the problem was found.</summary>
    public long Offset { get; }
}
