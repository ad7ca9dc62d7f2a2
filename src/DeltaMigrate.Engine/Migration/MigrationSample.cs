namespace DeltaMigrate.Engine.Migration;

/// <summary>QEMU's counters at one poll while a migration ran; counts are totals so far.</summary>
public sealed record MigrationSample
{
    public required TimeSpan Elapsed { get; init; }

    /// <summary>QEMU's dirty-sync count at the time: the round it was in.</summary>
    public required int Round { get; init; }

    public required long BytesRemaining { get; init; }

    /// <summary>Bytes of QEMU's stream so far, and bytes on the network so far (after our tunnel's codecs).</summary>
    public long StreamBytes { get; init; }
    public long WireBytes { get; init; }

    public long DirtyPagesRate { get; init; }
    public double ThroughputMbps { get; init; }

    /// <summary>Pages so far: whole, XBZRLE, zero, unchanged (our transcoder's counts in Delta mode, QEMU's otherwise).</summary>
    public long RawPages { get; init; }
    public long XbzrlePages { get; init; }
    public long ZeroPages { get; init; }
    public long UnchangedPages { get; init; }
}
