namespace DeltaMigrate.Engine.Delta;

/// <summary>
/// One pass of QEMU over guest RAM as the transcoder saw it in the stream: the counts of this pass
/// alone, exact (every record of the pass is counted), not a cumulative sample.
/// </summary>
public sealed record StreamPass
{
    /// <summary>1 for the first pass over all of RAM, then one more each time QEMU starts over.</summary>
    public required int Pass { get; init; }

    /// <summary>When the pass began and how long it lasted, on the transcoder's clock (from the stream's first byte).</summary>
    public required TimeSpan Start { get; init; }
    public required TimeSpan Duration { get; init; }

    /// <summary>Bytes of QEMU's stream in this pass, and what the transcoder wrote for them (before the wire codec).</summary>
    public required long StreamBytes { get; init; }
    public required long OutputBytes { get; init; }

    public required long RawPages { get; init; }
    public required long XbzrlePages { get; init; }
    public required long ZeroPages { get; init; }

    /// <summary>Re-sent pages identical to what the destination holds: dropped.</summary>
    public required long UnchangedPages { get; init; }

    public required long XbzrleBytes { get; init; }
}
