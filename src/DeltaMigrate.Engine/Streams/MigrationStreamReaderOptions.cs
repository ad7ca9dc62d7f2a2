namespace DeltaMigrate.Engine.Streams;

/// <summary>Options for <see cref="MigrationStreamReader"/>: the capabilities that change the RAM format.</summary>
public sealed record MigrationStreamReaderOptions
{
    /// <summary>x-ignore-shared was on: each MEM_SIZE block entry carries a be64 mr_addr.</summary>
    public bool IgnoreShared { get; init; }

    /// <summary>Initial buffer size in bytes.</summary>
    public int BufferSize { get; init; } = 64 * 1024;

    /// <summary>Maximum bytes of one Tail chunk.</summary>
    public int TailChunkSize { get; init; } = 64 * 1024;
}
