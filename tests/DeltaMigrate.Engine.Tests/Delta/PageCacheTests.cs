using DeltaMigrate.Benchmarks.PageCaches;
using DeltaMigrate.Engine.Delta;

namespace DeltaMigrate.Engine.Tests.Delta;

/// <summary>
/// The invariants every cache keeps, production's <see cref="PageCache"/> and the benchmark project's study policies
/// (<see cref="StudyPageCache"/>) alike, and production's policy itself.
/// </summary>
public class PageCacheTests
{
    private const int Small = 256;

    public static TheoryData<string> Policies() => new(PageCacheKind.All);

    private static byte[] Page(int size, long page, int version)
    {
        var bytes = new byte[size];
        var rng = new Random(HashCode.Combine(page, version));
        rng.NextBytes(bytes);
        return bytes;
    }

    [Theory]
    [MemberData(nameof(Policies))]
    public void RandomOperationsNeverReturnStaleContent(string policy)
    {
        const int totalPages = 300;
        foreach (int capacity in new[] { 0, 1, 7, 16, 40, 300 })
        {
            var rng = new Random(capacity * 31 + policy.Length);
            var cache = PageCacheKind.Create(policy, (long)capacity * Small, totalPages, Small);
            var destination = new Dictionary<long, byte[]>(); // what the destination holds, as far as we told it
            var zero = new byte[Small];
            int version = 0;
            long released = 0; // slots dropped by StoreZero/Forget
            for (int op = 0; op < 60_000; op++)
            {
                // Skewed page choice so some pages are hot.
                long page = rng.Next(4) == 0 ? rng.Next(totalPages) : rng.Next(Math.Max(1, capacity + 5));
                page %= totalPages;
                switch (rng.Next(10))
                {
                    case 0 or 1 or 2:
                        {
                            var content = Page(Small, page, ++version);
                            cache.Store(page, content);
                            destination[page] = content;
                            break;
                        }

                    case 3:
                        released += HoldsSlot(cache, destination, zero, page) ? 1 : 0;
                        cache.StoreZero(page);
                        destination[page] = zero;
                        Assert.True(cache.TryGet(page, out var z));
                        Assert.True(z.SequenceEqual(zero));
                        break;
                    case 4:
                        released += HoldsSlot(cache, destination, zero, page) ? 1 : 0;
                        cache.Forget(page);
                        destination.Remove(page);
                        Assert.False(cache.TryGet(page, out _));
                        Assert.False(cache.Contains(page));
                        break;
                    case 5:
                        if (rng.Next(50) == 0)
                        {
                            cache.NextRound();
                        }

                        break;
                    default:
                        {
                            bool known = cache.Contains(page);
                            bool got = cache.TryGet(page, out var content);
                            Assert.Equal(known, got);
                            if (got)
                            {
                                Assert.True(destination.TryGetValue(page, out var expected), $"page {page} returned but never stored");
                                Assert.True(content.SequenceEqual(expected), $"stale content for page {page} ({policy}, capacity {capacity}, op {op})");
                            }

                            break;
                        }
                }

                Assert.InRange(cache.CachedPages, 0, cache.CapacityPages);
            }

            // Final sweep: every known page matches the model, and zero pages are always known.
            for (long page = 0; page < totalPages; page++)
            {
                if (cache.TryGet(page, out var content))
                {
                    Assert.True(content.SequenceEqual(destination[page]));
                }
                else
                {
                    Assert.False(destination.TryGetValue(page, out var expected) && ReferenceEquals(expected, zero), "a zero page was lost");
                }
            }

            Assert.Equal(cache.Stats.Inserts - cache.Stats.Evictions - released, cache.CachedPages);
        }
    }

    // Known and not a zero page (random content is never all zeros) means the page holds a slot.
    private static bool HoldsSlot(IPageCache cache, Dictionary<long, byte[]> destination, byte[] zero, long page) =>
        cache.Contains(page) && !(destination.TryGetValue(page, out var held) && ReferenceEquals(held, zero));

    [Theory]
    [MemberData(nameof(Policies))]
    public void OneSweepFillsCapacityAndCountsEvictions(string policy)
    {
        const int capacity = 64;
        const int n = 1000;
        var cache = PageCacheKind.Create(policy, capacity * Small, 4096, Small);
        Assert.Equal(capacity, cache.CapacityPages);
        for (long p = 0; p < n; p++)
        {
            cache.Store(p, Page(Small, p, 1));
        }

        Assert.Equal(capacity, cache.CachedPages);
        if (policy is nameof(StudyPolicy.DirectMapped) or PageCacheKind.Production)
        {
            // Everything is fresh in the same round: the age guard keeps the first pages and declines the rest.
            Assert.Equal(capacity, cache.Stats.Inserts);
            Assert.Equal(n - capacity, cache.Stats.Rejected);
            Assert.Equal(0, cache.Stats.Evictions);
        }
        else
        {
            Assert.Equal(n, cache.Stats.Inserts);
            Assert.Equal(n - capacity, cache.Stats.Evictions);
        }

        int known = 0;
        for (long p = 0; p < n; p++)
        {
            if (cache.TryGet(p, out var content))
            {
                known++;
                Assert.True(content.SequenceEqual(Page(Small, p, 1)));
            }
        }

        Assert.Equal(capacity, known);
        Assert.Equal(capacity, cache.Stats.Hits);
        Assert.Equal(n - capacity, cache.Stats.Misses);
    }

    [Theory]
    [MemberData(nameof(Policies))]
    public void StoreZeroDropsTheSlotAndAnswersZeros(string policy)
    {
        var cache = PageCacheKind.Create(policy, 16 * Small, 100, Small);
        cache.Store(5, Page(Small, 5, 1));
        Assert.Equal(1, cache.CachedPages);

        cache.StoreZero(5);
        Assert.Equal(0, cache.CachedPages);
        Assert.True(cache.TryGet(5, out var content));
        Assert.Equal(Small, content.Length);
        Assert.True(content.IndexOfAnyExcept((byte)0) < 0);
        Assert.Equal(1, cache.Stats.ZeroHits);
        Assert.Equal(0, cache.Stats.Hits);

        // Zero pages cost no slot: all 100 pages zero in a 16-page cache are all known.
        for (long p = 0; p < 100; p++)
        {
            cache.StoreZero(p);
        }

        Assert.Equal(0, cache.CachedPages);
        for (long p = 0; p < 100; p++)
        {
            Assert.True(cache.TryGet(p, out _));
        }

        // A page that was zero then got content: the content wins.
        var data = Page(Small, 5, 2);
        cache.Store(5, data);
        Assert.True(cache.TryGet(5, out content));
        Assert.True(content.SequenceEqual(data));

        // Forget clears both.
        cache.Forget(5);
        cache.Forget(6);
        Assert.False(cache.TryGet(5, out _));
        Assert.False(cache.TryGet(6, out _));
        Assert.Equal(0, cache.CachedPages);
    }

    [Fact]
    public void ZeroCapacityStillKnowsZeroPages()
    {
        var cache = new PageCache(0, 10, Small);
        cache.Store(1, Page(Small, 1, 1));
        Assert.False(cache.TryGet(1, out _));
        Assert.Equal(1, cache.Stats.Rejected);
        cache.StoreZero(2);
        Assert.True(cache.TryGet(2, out _));
    }

    [Fact]
    public void RejectsBadArguments()
    {
        var cache = new PageCache(16 * Small, 10, Small);
        Assert.Throws<ArgumentException>(() => cache.Store(1, new byte[Small - 1]));
        Assert.Throws<ArgumentOutOfRangeException>(() => cache.Store(10, new byte[Small]));
        Assert.Throws<ArgumentOutOfRangeException>(() => cache.TryGet(-1, out _));
        Assert.Throws<ArgumentOutOfRangeException>(() => cache.StoreZero(10));
        Assert.Throws<ArgumentOutOfRangeException>(() => new PageCache(-1, 10));
    }

    [Theory]
    [MemberData(nameof(Policies))]
    public void SlabIsAllocatedLazily(string policy)
    {
        const long gib = 1L << 30;
        long before = GC.GetAllocatedBytesForCurrentThread();
        var cache = PageCacheKind.Create(policy, gib, 1L << 20, 4096); // 4 GiB VM, 1 GiB cache
        var page = new byte[4096];
        for (long p = 0; p < 10; p++)
        {
            cache.Store(p * 7919, page);
        }

        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(10, cache.CachedPages);
        Assert.InRange(cache.AllocatedChunks, 1, 10);

        // Per-page and per-slot metadata plus at most ten 4 MiB chunks: far below the 1 GiB capacity.
        Assert.InRange(allocated, 0, (16L << 20) + (10L * PageCache.ChunkBytes));
        if (policy is PageCacheKind.Production or nameof(StudyPolicy.SegmentedLru) or nameof(StudyPolicy.Clock))
        {
            Assert.Equal(1, cache.AllocatedChunks); // slots are handed out in order
        }
    }

    [Theory]
    [MemberData(nameof(Policies))]
    public void OperationsDoNotAllocate(string policy)
    {
        const int totalPages = 4096;
        var cache = PageCacheKind.Create(policy, 512 * 4096, totalPages, 4096);
        var page = new byte[4096];
        var rng = new Random(7);
        var pages = new long[20_000];
        for (int i = 0; i < pages.Length; i++)
        {
            pages[i] = rng.Next(totalPages);
        }

        // Warm up: touch every slot so all chunks exist.
        for (long p = 0; p < totalPages; p++)
        {
            cache.Store(p, page);
        }

        Run(cache, pages, page);
        long before = GC.GetAllocatedBytesForCurrentThread();
        Run(cache, pages, page);
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);

        static void Run(IPageCache cache, long[] pages, byte[] page)
        {
            for (int i = 0; i < pages.Length; i++)
            {
                long p = pages[i];
                switch (i % 7)
                {
                    case 0:
                        cache.StoreZero(p);
                        break;
                    case 1:
                        cache.Forget(p);
                        break;
                    case 2:
                        cache.NextRound();
                        break;
                    default:
                        if (!cache.TryGet(p, out _))
                        {
                            cache.Store(p, page);
                        }

                        break;
                }
            }
        }
    }

    [Fact]
    public void ProductionPolicyResistsAOneTimeScan()
    {
        const int capacity = 100;
        const int hotCount = 50;
        var cache = new PageCache(capacity * Small, 100_000, Small);

        // Hot pages are sent, then re-sent (hit) over a few rounds.
        for (int round = 0; round < 3; round++)
        {
            for (long p = 0; p < hotCount; p++)
            {
                if (!cache.TryGet(p, out _))
                {
                    Assert.Equal(0, round);
                }

                cache.Store(p, Page(Small, p, round));
            }

            cache.NextRound();
        }

        // A long one-time scan (100x the cache), spread over many rounds.
        for (long p = 1000; p < 11_000; p++)
        {
            cache.Store(p, Page(Small, p, 0));
            if (p % 1000 == 0)
            {
                cache.NextRound();
            }
        }

        for (long p = 0; p < hotCount; p++)
        {
            Assert.True(cache.TryGet(p, out var content), $"hot page {p} was evicted by the scan");
            Assert.True(content.SequenceEqual(Page(Small, p, 2)));
        }
    }

    [Fact]
    public void ProductionPolicyKeepsPartOfAHotSetLargerThanTheCache()
    {
        // A hot set 1.5x the cache re-sent every round in page order: LRU-like policies thrash (near 0 hits);
        // the guarded segmented LRU keeps a stable protected subset.
        const int capacity = 100;
        const int hotCount = 150;
        var cache = new PageCache(capacity * Small, 1000, Small);
        var page = new byte[Small];
        long hitsLastRound = 0;
        for (int round = 0; round < 10; round++)
        {
            long hitsBefore = cache.Stats.Hits;
            for (long p = 0; p < hotCount; p++)
            {
                cache.TryGet(p, out _);
                cache.Store(p, page);
            }

            hitsLastRound = cache.Stats.Hits - hitsBefore;
            cache.NextRound();
        }

        Assert.True(hitsLastRound >= hotCount / 3, $"only {hitsLastRound} hits of {hotCount}");
    }

    [Fact]
    public void DirectMappedProtectsFreshEntriesForTwoRounds()
    {
        var cache = new StudyPageCache(8 * Small, 100, Small, StudyPolicy.DirectMapped);
        cache.Store(0, Page(Small, 0, 1));
        cache.Store(8, Page(Small, 8, 1)); // same slot, rejected
        Assert.False(cache.TryGet(8, out _));
        Assert.True(cache.TryGet(0, out _)); // hit refreshes the age (round 0)

        cache.NextRound();
        cache.Store(8, Page(Small, 8, 2));
        Assert.False(cache.TryGet(8, out _)); // touched in the previous round: still protected

        cache.NextRound();
        cache.Store(8, Page(Small, 8, 3));
        Assert.True(cache.TryGet(8, out var content));
        Assert.True(content.SequenceEqual(Page(Small, 8, 3)));
        Assert.False(cache.TryGet(0, out _));
        Assert.Equal(1, cache.Stats.Evictions);
    }
}
