using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Engines;
using DeltaMigrate.Benchmarks.PageCaches;
using DeltaMigrate.Engine.Delta;

namespace DeltaMigrate.Benchmarks;

/// <summary>
/// <see cref="PageCache"/> operations on a 64 MiB cache (16,384 slots) over a 512 MiB VM (131,072 pages), pages taken in a
/// shuffled order. Mean is per operation (OperationsPerInvoke), in ns.
/// </summary>
/// <remarks>
/// Hit: TryGet of a cached page (the span is returned, its bytes are not read). Miss: TryGet of a page never stored.
/// InsertEvict: Store of an uncached 4 KiB page into a full cache, so every call evicts (the 4 KiB copy into the slab is
/// included); NextRound is called every 1/8 of the capacity so the age guard (QEMU's "fresh entry" rule) lets victims go.
/// GlobalCleanup prints the cache counters (evictions, rejected) to the log as a check.
/// </remarks>
[SimpleJob(RunStrategy.Throughput, launchCount: 1, warmupCount: 2, iterationCount: 5)]
public class PageCacheBenchmarks
{
    private const int PageSize = 4096;
    private const int TotalPages = 131_072;
    private const int CapacityPages = 16_384;
    private const int Ops = 16_384;
    private const int RoundEvery = CapacityPages / 8;

    private IPageCache _cache = null!;
    private int[] _cached = [];     // pages stored by the setup (Hit)
    private int[] _uncached = [];   // pages never stored (Miss)
    private int[] _order = [];      // all pages, each slot residue once per CapacityPages stores (InsertEvict)
    private int _next;
    private readonly byte[] _page = new byte[PageSize];

    [Params(PageCacheKind.Production, nameof(StudyPolicy.DirectMapped))]
    public string Policy { get; set; } = PageCacheKind.Production;

    [GlobalSetup]
    public void Setup()
    {
        var rng = new Random(7);
        rng.NextBytes(_page);
        int[] all = Enumerable.Range(0, TotalPages).ToArray();
        rng.Shuffle(all);
        _cache = PageCacheKind.Create(Policy, (long)CapacityPages * PageSize, TotalPages, PageSize);

        // Direct-mapped puts page p in slot p % capacity, so a cached set that fits exactly is one page per residue.
        _cached = Policy == nameof(StudyPolicy.DirectMapped)
            ? [.. Enumerable.Range(0, CapacityPages).Select(s => s + (CapacityPages * rng.Next(TotalPages / CapacityPages)))]
            : all[..CapacityPages];
        foreach (int p in _cached)
        {
            _cache.Store(p, _page);
        }

        if (_cache.CachedPages != CapacityPages)
        {
            throw new InvalidOperationException($"setup cached {_cache.CachedPages} pages, expected {CapacityPages}");
        }

        var cachedSet = _cached.ToHashSet();
        _uncached = [.. all.Where(p => !cachedSet.Contains(p)).Take(Ops)];
        rng.Shuffle(_cached);

        // Insert order: one shuffled permutation of the slot residues, repeated with a different high part per cycle, so
        // every store is of a page not cached and (direct-mapped) finds its slot's occupant 8 rounds old, i.e. evictable.
        int[] residues = Enumerable.Range(0, CapacityPages).ToArray();
        rng.Shuffle(residues);
        _order = new int[TotalPages];
        for (int c = 0; c < TotalPages / CapacityPages; c++)
        {
            for (int i = 0; i < CapacityPages; i++)
            {
                _order[(c * CapacityPages) + i] = residues[i] + (c * CapacityPages);
            }
        }

        _next = 0;
        _cache.NextRound();
        _cache.NextRound();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        PageCacheStats s = _cache.Stats;
        Console.WriteLine($"// {Policy}: hits {s.Hits}, misses {s.Misses}, inserts {s.Inserts}, evictions {s.Evictions}, rejected {s.Rejected}");
    }

    [Benchmark(OperationsPerInvoke = Ops)]
    public long LookupHit()
    {
        long found = 0;
        foreach (int p in _cached)
        {
            if (_cache.TryGet(p, out ReadOnlySpan<byte> content))
            {
                found += content.Length;
            }
        }

        return found;
    }

    [Benchmark(OperationsPerInvoke = Ops)]
    public long LookupMiss()
    {
        long found = 0;
        foreach (int p in _uncached)
        {
            if (_cache.TryGet(p, out ReadOnlySpan<byte> content))
            {
                found += content.Length;
            }
        }

        return found;
    }

    [Benchmark(OperationsPerInvoke = Ops)]
    public long InsertEvict()
    {
        IPageCache cache = _cache;
        int[] order = _order;
        int next = _next;
        for (int i = 0; i < Ops; i++)
        {
            if (next % RoundEvery == 0)
            {
                cache.NextRound();
            }

            cache.Store(order[next], _page);
            next = next + 1 == order.Length ? 0 : next + 1;
        }

        _next = next;
        return cache.CachedPages;
    }
}
