namespace DeltaMigrate.Engine.Delta;

/// <summary>Plain counters of a <see cref="PageCache"/> (single-threaded, like the cache).</summary>
public sealed class PageCacheStats
{
    /// <summary>TryGet calls answered from a cached slot.</summary>
    public long Hits { get; internal set; }

    /// <summary>TryGet calls for a page whose destination content is unknown.</summary>
    public long Misses { get; internal set; }

    /// <summary>TryGet calls answered with the zero page (page last sent as ZERO).</summary>
    public long ZeroHits { get; internal set; }

    /// <summary>Pages that got a slot (a Store of a page not cached before).</summary>
    public long Inserts { get; internal set; }

    /// <summary>Pages pushed out of the cache to make room for another page.</summary>
    public long Evictions { get; internal set; }

    /// <summary>Stores of a page not cached that the policy declined to cache (the page stays unknown).</summary>
    public long Rejected { get; internal set; }

    /// <summary>Zeroes every counter.</summary>
    public void Reset()
    {
        Hits = Misses = ZeroHits = Inserts = Evictions = Rejected = 0;
    }

    /// <inheritdoc/>
    public override string ToString() =>
        $"hits={Hits} misses={Misses} zeroHits={ZeroHits} inserts={Inserts} evictions={Evictions} rejected={Rejected}";
}
