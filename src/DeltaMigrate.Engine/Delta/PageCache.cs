namespace DeltaMigrate.Engine.Delta;

/// <summary>
/// Mirror of the content the destination QEMU holds for pages the source engine sent, so a re-sent page can be
/// XBZRLE-encoded against exactly those bytes. Pages last sent as ZERO cost one bit each (they are answered with
/// the zero page); other pages live in fixed-size slots of a content slab that is allocated lazily in 4 MiB chunks.
/// Single-threaded; no operation allocates (except the first use of a slab chunk).
/// </summary>
/// <remarks>
/// Invariant: <see cref="TryGet"/> returns true only with the bytes last passed to <see cref="Store"/> for that page,
/// or zeros if <see cref="StoreZero"/> came later; after <see cref="Forget"/> or an eviction it returns false.
/// Replacement: segmented LRU with QEMU's age guard. Pages enter a probation FIFO; a page that hits is promoted
/// to a protected LRU segment (at most 80% of the slots). No page is pushed out, from either segment, by a
/// different page if it was inserted or hit in the current or previous round (<see cref="NextRound"/>):
/// the newcomer is then simply not cached, and a promotion that would demote a fresh protected page leaves the
/// page in probation. Pages are sent in increasing page order each round, so any policy that evicts on every miss
/// (FIFO, LRU, CLOCK) throws out the pages the same round is about to re-send; this one keeps a stable subset
/// like QEMU's direct-mapped cache, but fully associative (no slot conflicts), and a one-time scan only ever
/// recycles probation. The policies it was chosen against are in the benchmark project (StudyPolicy, docs/performance.md).
/// </remarks>
public sealed class PageCache
{
    /// <summary>Size of one lazily allocated chunk of the content slab.</summary>
    public const int ChunkBytes = 4 << 20;

    private readonly long totalPages;
    private readonly int slots;
    private readonly int slotsPerChunk;
    private readonly byte[] zeroPage;

    // Per page: slot + 1 (0 = not cached), and the known-zero bit.
    private readonly int[] slotOfPage;
    private readonly ulong[] zeroBits;

    // Per slot: the page it holds (-1 = free) and its content chunk.
    private readonly int[] slotPage;
    private readonly byte[]?[] chunks;

    // Free slots: a stack of released slots, then slots never used (in order, so chunks fill in order).
    private readonly int[] freeStack;
    private int freeCount;
    private int nextFresh;

    // Replacement metadata.
    private readonly int[] age;           // round of last insert/hit
    private readonly byte[] flag;         // 1 = protected
    private readonly int[] prev;          // circular lists with sentinels at slots (probation) and slots + 1 (protected)
    private readonly int[] next;
    private readonly int protectedMax;
    private int protectedCount;
    private int probationCount;
    private int round;
    private int allocatedChunks;

    /// <summary>Creates a cache of <paramref name="capacityBytes"/> (rounded down to whole pages, at most <paramref name="totalPages"/>).</summary>
    /// <param name="capacityBytes">Bytes of page content the cache may hold.</param>
    /// <param name="totalPages">All pages of all RAM blocks: valid page indexes are 0 to totalPages - 1.</param>
    /// <param name="pageSize">Target page size.</param>
    public PageCache(long capacityBytes, long totalPages, int pageSize = 4096)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(capacityBytes);
        ArgumentOutOfRangeException.ThrowIfNegative(totalPages);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(totalPages, (long)int.MaxValue - 64);
        ArgumentOutOfRangeException.ThrowIfLessThan(pageSize, 64);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(pageSize, ChunkBytes);
        this.totalPages = totalPages;
        PageSize = pageSize;
        long capacity = Math.Min(capacityBytes / pageSize, totalPages);
        capacity = Math.Min(capacity, (long)int.MaxValue - 64);
        slots = (int)capacity;
        CapacityPages = slots;
        zeroPage = new byte[pageSize];
        slotOfPage = new int[totalPages];
        zeroBits = new ulong[(totalPages + 63) / 64];
        slotPage = new int[slots];
        Array.Fill(slotPage, -1);
        slotsPerChunk = ChunkBytes / pageSize;
        chunks = new byte[]?[(slots + slotsPerChunk - 1) / slotsPerChunk];
        freeStack = new int[slots];
        flag = new byte[slots];
        age = new int[slots];
        prev = new int[slots + 2];
        next = new int[slots + 2];
        prev[slots] = next[slots] = slots;
        prev[slots + 1] = next[slots + 1] = slots + 1;
        protectedMax = slots - Math.Max(1, slots / 5);
    }

    /// <summary>Target page size.</summary>
    public int PageSize { get; }

    /// <summary>How many pages of content the cache holds at most.</summary>
    public long CapacityPages { get; }

    /// <summary>Counters.</summary>
    public PageCacheStats Stats { get; } = new();

    /// <summary>Slab chunks allocated so far (each <see cref="ChunkBytes"/> or less).</summary>
    public int AllocatedChunks => allocatedChunks;

    /// <summary>Pages currently holding a slot.</summary>
    public long CachedPages { get; private set; }

    /// <summary>Marks a dirty-sync boundary (a new round): the age guard counts rounds.</summary>
    public void NextRound() => round++;

    /// <summary>Whether the destination's content of <paramref name="page"/> is known (cached or zero), without counting or touching.</summary>
    public bool Contains(long page)
    {
        CheckPage(page);
        return slotOfPage[page] != 0 || (zeroBits[page >> 6] & (1UL << (int)(page & 63))) != 0;
    }

    /// <summary>The destination's current content of <paramref name="page"/> if known: its cached content, or the zero page.</summary>
    public bool TryGet(long page, out ReadOnlySpan<byte> content)
    {
        CheckPage(page);
        if ((zeroBits[page >> 6] & (1UL << (int)(page & 63))) != 0)
        {
            Stats.ZeroHits++;
            content = zeroPage;
            return true;
        }

        int slot = slotOfPage[page] - 1;
        if (slot < 0)
        {
            Stats.Misses++;
            content = default;
            return false;
        }

        Stats.Hits++;
        Touch(slot);
        content = SlotSpan(slot);
        return true;
    }

    /// <summary>The destination now holds exactly <paramref name="content"/> for <paramref name="page"/> (after PAGE or XBZRLE). May evict another page.</summary>
    public void Store(long page, ReadOnlySpan<byte> content)
    {
        CheckPage(page);
        if (content.Length != PageSize)
        {
            throw new ArgumentException($"A page is {PageSize} bytes, got {content.Length}.", nameof(content));
        }

        zeroBits[page >> 6] &= ~(1UL << (int)(page & 63));
        int slot = slotOfPage[page] - 1;
        if (slot >= 0)
        {
            content.CopyTo(SlotSpan(slot));
            Touch(slot);
            return;
        }

        slot = AcquireSlot();
        if (slot < 0)
        {
            Stats.Rejected++;
            return;
        }

        slotPage[slot] = (int)page;
        slotOfPage[page] = slot + 1;
        CachedPages++;
        Stats.Inserts++;
        content.CopyTo(SlotSpan(slot));
        OnInsert(slot);
    }

    /// <summary>The destination now holds zeros for <paramref name="page"/>: drops any cached slot and sets the zero bit.</summary>
    public void StoreZero(long page)
    {
        CheckPage(page);
        int slot = slotOfPage[page] - 1;
        if (slot >= 0)
        {
            Release(slot);
        }

        zeroBits[page >> 6] |= 1UL << (int)(page & 63);
    }

    /// <summary>The destination's content of <paramref name="page"/> is unknown from now on.</summary>
    public void Forget(long page)
    {
        CheckPage(page);
        int slot = slotOfPage[page] - 1;
        if (slot >= 0)
        {
            Release(slot);
        }

        zeroBits[page >> 6] &= ~(1UL << (int)(page & 63));
    }

    private void CheckPage(long page)
    {
        if ((ulong)page >= (ulong)totalPages)
        {
            throw new ArgumentOutOfRangeException(nameof(page), page, $"Page index must be below {totalPages}.");
        }
    }

    private Span<byte> SlotSpan(int slot)
    {
        int chunkIndex = slot / slotsPerChunk;
        byte[]? chunk = chunks[chunkIndex];
        if (chunk is null)
        {
            int slotsInChunk = Math.Min(slotsPerChunk, slots - (chunkIndex * slotsPerChunk));
            chunk = GC.AllocateUninitializedArray<byte>(slotsInChunk * PageSize);
            chunks[chunkIndex] = chunk;
            allocatedChunks++;
        }

        return chunk.AsSpan((slot - (chunkIndex * slotsPerChunk)) * PageSize, PageSize);
    }

    /// <summary>A slot for a page not cached, evicting the oldest probation (else protected) page unless it is fresh; -1 if the page is not to be cached.</summary>
    private int AcquireSlot()
    {
        if (slots == 0)
        {
            return -1;
        }

        int free = TakeFree();
        if (free >= 0)
        {
            return free;
        }

        int victim = probationCount > 0 ? prev[slots] : prev[slots + 1];
        if (age[victim] + 2 > round)
        {
            // The oldest candidate is still fresh (QEMU's age check), so the newcomer is not cached.
            // Protected pages only leave through demotion, so a scan never pushes them out.
            return -1;
        }

        Evict(victim);
        return TakeFree();
    }

    private int TakeFree()
    {
        if (freeCount > 0)
        {
            return freeStack[--freeCount];
        }

        return nextFresh < slots ? nextFresh++ : -1;
    }

    private void Evict(int slot)
    {
        Stats.Evictions++;
        Release(slot);
    }

    /// <summary>Drops the page held in <paramref name="slot"/> and frees the slot.</summary>
    private void Release(int slot)
    {
        int page = slotPage[slot];
        slotOfPage[page] = 0;
        slotPage[slot] = -1;
        CachedPages--;
        Unlink(slot);
        if (flag[slot] != 0)
        {
            protectedCount--;
        }
        else
        {
            probationCount--;
        }

        flag[slot] = 0;
        freeStack[freeCount++] = slot;
    }

    private void OnInsert(int slot)
    {
        age[slot] = round;
        flag[slot] = 0;
        PushFront(slots, slot);
        probationCount++;
    }

    /// <summary>The page in <paramref name="slot"/> was used again (a hit, or a re-store of a cached page).</summary>
    private void Touch(int slot)
    {
        if (flag[slot] != 0)
        {
            Unlink(slot);
            PushFront(slots + 1, slot);
        }
        else if (protectedMax == 0 || (protectedCount >= protectedMax && age[prev[slots + 1]] + 2 > round))
        {
            // No room in the protected segment without pushing out a page still in use: stay in probation, refreshed.
            Unlink(slot);
            PushFront(slots, slot);
        }
        else
        {
            Unlink(slot);
            probationCount--;
            flag[slot] = 1;
            PushFront(slots + 1, slot);
            protectedCount++;
            if (protectedCount > protectedMax)
            {
                int demoted = prev[slots + 1];
                Unlink(demoted);
                flag[demoted] = 0;
                protectedCount--;
                PushFront(slots, demoted);
                probationCount++;
            }
        }

        age[slot] = round;
    }

    private void Unlink(int slot)
    {
        int p = prev[slot];
        int n = next[slot];
        next[p] = n;
        prev[n] = p;
    }

    private void PushFront(int sentinel, int slot)
    {
        int first = next[sentinel];
        next[sentinel] = slot;
        prev[slot] = sentinel;
        next[slot] = first;
        prev[first] = slot;
    }
}
