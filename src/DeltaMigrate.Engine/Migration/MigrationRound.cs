namespace DeltaMigrate.Engine.Migration;

/// <summary>One pre-copy round (a pass of QEMU over guest RAM): what it sent, counted for this round alone.</summary>
public sealed record MigrationRound
{
    public required int Round { get; init; }

    /// <summary>When the round began (since the migration started), and how long it ran.</summary>
    public required TimeSpan Elapsed { get; init; }
    public TimeSpan Duration { get; init; }

    /// <summary>True when counted from the migration stream (Delta mode): every record of the round, none missed.</summary>
    public bool Exact { get; init; }

    /// <summary>QEMU's estimate of the bytes still to send when the round began (its nearest sample).</summary>
    public required long BytesRemaining { get; init; }

    /// <summary>QEMU's dirty page rate (pages/s) and link speed (Mbit/s, of its own stream) at that sample.</summary>
    public long DirtyPagesRate { get; init; }
    public double ThroughputMbps { get; init; }

    /// <summary>Bytes of QEMU's stream in this round; after our deltas (before the wire codec) in Delta mode.</summary>
    public long StreamBytes { get; init; }
    public long SentBytes { get; init; }

    /// <summary>Bytes on the network in this round: from the samples around it (tunnel buffers blur the edges).</summary>
    public long WireBytes { get; init; }

    /// <summary>Pages of this round: sent whole, as XBZRLE deltas, as zero pages, or dropped because unchanged.</summary>
    public long RawPages { get; init; }
    public long XbzrlePages { get; init; }
    public long ZeroPages { get; init; }
    public long UnchangedPages { get; init; }
}
