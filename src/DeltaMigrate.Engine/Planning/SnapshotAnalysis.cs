namespace DeltaMigrate.Engine.Planning;

/// <summary>What comparing successive snapshots of guest RAM showed, page by page.</summary>
public sealed record SnapshotAnalysis
{
    /// <summary>Pages in each snapshot.</summary>
    public required long Pages { get; init; }

    /// <summary>All-zero pages in the last snapshot.</summary>
    public long ZeroPages { get; init; }

    /// <summary>Non-zero pages of the last snapshot that were LZ4-compressed (every n-th one), and their compressed bytes.</summary>
    public long Lz4SampledPages { get; init; }
    public long Lz4Bytes { get; init; }

    /// <summary>Pages changed between snapshot i and i+1.</summary>
    public required IReadOnlyList<long> ChangedPages { get; init; }

    /// <summary>Distinct pages changed between the first and the last snapshot, counting every interval.</summary>
    public long HotSetPages { get; init; }

    /// <summary>Pages changed in interval i that changed again in interval i+1, summed over the intervals.</summary>
    public long RedirtiedPages { get; init; }

    /// <summary>Changed pages XBZRLE-encoded against their previous content: deltas that fit, their bytes, and overflows.</summary>
    public long DeltaPages { get; init; }
    public long DeltaBytes { get; init; }
    public long DeltaOverflows { get; init; }

    /// <summary>Changed pages (new content) that were LZ4-compressed, and their compressed bytes.</summary>
    public long ChangedLz4Pages { get; init; }
    public long ChangedLz4Bytes { get; init; }

    public double ZeroPageFraction => Pages > 0 ? (double)ZeroPages / Pages : 0;

    public double? MeanLz4Bytes => Lz4SampledPages > 0 ? (double)Lz4Bytes / Lz4SampledPages : null;

    public double? MeanChangedLz4Bytes => ChangedLz4Pages > 0 ? (double)ChangedLz4Bytes / ChangedLz4Pages : null;

    public double? MeanDeltaBytes => DeltaPages > 0 ? (double)DeltaBytes / DeltaPages : null;

    public double? DeltaOverflowFraction => DeltaPages + DeltaOverflows > 0 ? (double)DeltaOverflows / (DeltaPages + DeltaOverflows) : null;

    /// <summary>Of the pages changed in one interval, the fraction changed again in the next; null with one interval.</summary>
    public double? RedirtyFraction
    {
        get
        {
            if (ChangedPages.Count < 2)
            {
                return null;
            }

            long earlier = ChangedPages.Take(ChangedPages.Count - 1).Sum();
            return earlier > 0 ? (double)RedirtiedPages / earlier : 0;
        }
    }
}
