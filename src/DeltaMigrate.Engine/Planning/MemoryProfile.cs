namespace DeltaMigrate.Engine.Planning;

/// <summary>
/// What a sample of a running VM measured: the inputs of <see cref="MigrationPredictor"/>.
/// Page figures are for the whole of RAM (a sample of part of RAM is scaled up).
/// </summary>
public sealed record MemoryProfile
{
    public const int PageSize = 4096;

    /// <summary>The guest's RAM.</summary>
    public required long MemoryBytes { get; init; }

    /// <summary>Fraction of pages that are all zero (QEMU sends them as a header only).</summary>
    public double ZeroPageFraction { get; init; }

    /// <summary>Mean LZ4 size of a non-zero page of RAM (the first pass in Lz4 and Delta modes); 4096 when unknown.</summary>
    public double Lz4BytesPerPage { get; init; } = PageSize;

    /// <summary>Mean LZ4 size of the pages that changed (later rounds in Lz4 mode, cache misses in Delta); 4096 when unknown.</summary>
    public double Lz4BytesPerDirtyPage { get; init; } = PageSize;

    /// <summary>Distinct pages changed per second between our snapshots (our estimate, independent of QEMU).</summary>
    public double DirtyPagesPerSecond { get; init; }

    /// <summary>QEMU's calc-dirty-rate figure in pages per second; null when it was not available.</summary>
    public double? QemuDirtyPagesPerSecond { get; init; }

    /// <summary>Distinct pages changed over the whole sample: the hot set a page cache must hold.</summary>
    public long HotSetPages { get; init; }

    /// <summary>Of the pages changed in one interval, the fraction changed again in the next (re-dirty locality); null with fewer than 3 snapshots.</summary>
    public double? RedirtyFraction { get; init; }

    /// <summary>Mean XBZRLE delta of a changed page against its previous content, over the deltas that fit (no overflow).</summary>
    public double MeanDeltaBytes { get; init; } = PageSize;

    /// <summary>Fraction of changed pages whose delta overflowed (would not be smaller than the page).</summary>
    public double DeltaOverflowFraction { get; init; } = 1;

    /// <summary>How long the sample ran.</summary>
    public TimeSpan Duration { get; init; }

    public long PageCount => MemoryBytes / PageSize;

    public long HotSetBytes => HotSetPages * PageSize;

    /// <summary>Page bytes per LZ4 byte for non-zero pages (above 1: LZ4 shrinks them).</summary>
    public double Lz4Ratio => Lz4BytesPerPage > 0 ? PageSize / Lz4BytesPerPage : 1;
}
