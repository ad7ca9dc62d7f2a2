using DeltaMigrate.Engine.Delta;

namespace DeltaMigrate.Benchmarks.PageCaches;

/// <summary>The engine's own <see cref="PageCache"/> (guarded segmented LRU) seen through <see cref="IPageCache"/>.</summary>
public sealed class ProductionPageCache(long capacityBytes, long totalPages, int pageSize) : IPageCache
{
    private readonly PageCache cache = new(capacityBytes, totalPages, pageSize);

    public int PageSize => cache.PageSize;

    public long CapacityPages => cache.CapacityPages;

    public long CachedPages => cache.CachedPages;

    public int AllocatedChunks => cache.AllocatedChunks;

    public PageCacheStats Stats => cache.Stats;

    public void NextRound() => cache.NextRound();

    public bool Contains(long page) => cache.Contains(page);

    public bool TryGet(long page, out ReadOnlySpan<byte> content) => cache.TryGet(page, out content);

    public void Store(long page, ReadOnlySpan<byte> content) => cache.Store(page, content);

    public void StoreZero(long page) => cache.StoreZero(page);

    public void Forget(long page) => cache.Forget(page);
}
