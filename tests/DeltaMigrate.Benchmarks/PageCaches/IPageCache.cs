using DeltaMigrate.Engine.Delta;

namespace DeltaMigrate.Benchmarks.PageCaches;

/// <summary>What the hit-rate study and the cache benchmarks need of a page cache, whichever policy it uses.</summary>
public interface IPageCache
{
    int PageSize { get; }

    long CapacityPages { get; }

    long CachedPages { get; }

    int AllocatedChunks { get; }

    PageCacheStats Stats { get; }

    void NextRound();

    bool Contains(long page);

    bool TryGet(long page, out ReadOnlySpan<byte> content);

    void Store(long page, ReadOnlySpan<byte> content);

    void StoreZero(long page);

    void Forget(long page);
}
