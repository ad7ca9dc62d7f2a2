using DeltaMigrate.Engine.Delta;

namespace DeltaMigrate.Benchmarks.PageCaches;

/// <summary>
/// The engine's <see cref="PageCache"/> storage (slot slab, page index, zero bits) with one of the study's replacement
/// policies instead of production's, so the hit-rate study and the cache benchmarks compare policies on equal terms.
/// Same invariant as <see cref="PageCache"/>.
/// </summary>
public sealed class StudyPageCache : IPageCache
{
    /// <summary>Size of one lazily allocated chunk of the content slab.</summary>
    public const int ChunkBytes = 4 << 20;

    private const int Ways = 16;

    private readonly StudyPolicy policy;
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

    // Free slots (Clock, segmented LRU): a stack of released slots, then slots never used (in order, so chunks fill in order).
    private readonly int[] freeStack;
    private int freeCount;
    private int nextFresh;

    // Policy metadata.
    private readonly int[] age;           // round of last insert/hit (DirectMapped)
    private readonly byte[] flag;         // Clock: reference bit; segmented LRU: 1 = protected
    private readonly int[] prev;          // segmented LRU: circular lists with sentinels at slots (probation) and slots + 1 (protected)
    private readonly int[] next;
    private readonly long[] stamp;        // set-associative LRU: last use
    private readonly int sets;
    private readonly int protectedMax;
    private int protectedCount;
    private int probationCount;
    private int hand;
    private long tick;
    private int round;
    private int allocatedChunks;

    /// <summary>Creates a cache of <paramref name="capacityBytes"/> (rounded down to whole pages, at most <paramref name="totalPages"/>).</summary>
    /// <param name="capacityBytes">Bytes of page content the cache may hold.</param>
    /// <param name="totalPages">All pages of all RAM blocks: valid page indexes are 0 to totalPages - 1.</param>
    /// <param name="pageSize">Target page size.</param>
    /// <param name="policy">Replacement policy.</param>
    public StudyPageCache(long capacityBytes, long totalPages, int pageSize, StudyPolicy policy)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(capacityBytes);
        ArgumentOutOfRangeException.ThrowIfNegative(totalPages);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(totalPages, (long)int.MaxValue - 64);
        ArgumentOutOfRangeException.ThrowIfLessThan(pageSize, 64);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(pageSize, ChunkBytes);
        if (!Enum.IsDefined(policy))
        {
            throw new ArgumentOutOfRangeException(nameof(policy));
        }

        this.policy = policy;
        this.totalPages = totalPages;
        PageSize = pageSize;
        long capacity = Math.Min(capacityBytes / pageSize, totalPages);
        capacity = Math.Min(capacity, (long)int.MaxValue - 64);
        if (policy == StudyPolicy.SetAssociativeLru && capacity >= Ways)
        {
            capacity -= capacity % Ways;
        }

        slots = (int)capacity;
        CapacityPages = slots;
        zeroPage = new byte[pageSize];
        slotOfPage = new int[totalPages];
        zeroBits = new ulong[(totalPages + 63) / 64];
        slotPage = new int[slots];
        Array.Fill(slotPage, -1);
        slotsPerChunk = ChunkBytes / pageSize;
        chunks = new byte[]?[(slots + slotsPerChunk - 1) / slotsPerChunk];
        freeStack = [];
        age = [];
        flag = [];
        prev = [];
        next = [];
        stamp = [];

        switch (policy)
        {
            case StudyPolicy.DirectMapped:
                age = new int[slots];
                break;
            case StudyPolicy.Clock:
                freeStack = new int[slots];
                flag = new byte[slots];
                break;
            case StudyPolicy.SegmentedLru:
                freeStack = new int[slots];
                flag = new byte[slots];
                prev = new int[slots + 2];
                next = new int[slots + 2];
                prev[slots] = next[slots] = slots;
                prev[slots + 1] = next[slots + 1] = slots + 1;
                protectedMax = slots - Math.Max(1, slots / 5);
                break;
            case StudyPolicy.SetAssociativeLru:
                stamp = new long[slots];
                sets = slots >= Ways ? slots / Ways : (slots > 0 ? 1 : 0);
                break;
        }
    }

    /// <summary>Target page size.</summary>
    public int PageSize { get; }

    /// <summary>How many pages of content the cache holds at most.</summary>
    public long CapacityPages { get; }

    /// <summary>The replacement policy.</summary>
    public StudyPolicy Policy => policy;

    /// <summary>Counters.</summary>
    public PageCacheStats Stats { get; } = new();

    /// <summary>Slab chunks allocated so far (each <see cref="ChunkBytes"/> or less).</summary>
    public int AllocatedChunks => allocatedChunks;

    /// <summary>Pages currently holding a slot.</summary>
    public long CachedPages { get; private set; }

    /// <summary>Marks a dirty-sync boundary (a new round). Only age-based policies use it.</summary>
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

        slot = AcquireSlot(page);
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

    /// <summary>A slot for a page not cached, evicting if the policy says so; -1 if the page is not to be cached.</summary>
    private int AcquireSlot(long page)
    {
        if (slots == 0)
        {
            return -1;
        }

        switch (policy)
        {
            case StudyPolicy.DirectMapped:
                {
                    int slot = (int)(page % slots);
                    if (slotPage[slot] >= 0)
                    {
                        if (age[slot] + 2 > round)
                        {
                            return -1; // fresh entry: QEMU does not replace it
                        }

                        Evict(slot);
                    }

                    return slot;
                }

            case StudyPolicy.SetAssociativeLru:
                {
                    int first = (int)(page % sets) * Ways;
                    int end = Math.Min(first + Ways, slots);
                    int victim = first;
                    for (int s = first; s < end; s++)
                    {
                        if (slotPage[s] < 0)
                        {
                            return s;
                        }

                        if (stamp[s] < stamp[victim])
                        {
                            victim = s;
                        }
                    }

                    Evict(victim);
                    return victim;
                }

            case StudyPolicy.Clock:
                {
                    int free = TakeFree();
                    if (free >= 0)
                    {
                        return free;
                    }

                    while (true)
                    {
                        int s = hand;
                        hand = hand + 1 == slots ? 0 : hand + 1;
                        if (flag[s] != 0)
                        {
                            flag[s] = 0;
                            continue;
                        }

                        Evict(s);
                        return TakeFree();
                    }
                }

            default:
                {
                    int free = TakeFree();
                    if (free >= 0)
                    {
                        return free;
                    }

                    int victim = probationCount > 0 ? prev[slots] : prev[slots + 1];
                    Evict(victim);
                    return TakeFree();
                }
        }
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
        switch (policy)
        {
            case StudyPolicy.Clock:
                flag[slot] = 0;
                freeStack[freeCount++] = slot;
                break;
            case StudyPolicy.SegmentedLru:
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
                break;
        }
    }

    private void OnInsert(int slot)
    {
        switch (policy)
        {
            case StudyPolicy.DirectMapped:
                age[slot] = round;
                break;
            case StudyPolicy.Clock:
                flag[slot] = 0; // inserts start unreferenced
                break;
            case StudyPolicy.SetAssociativeLru:
                stamp[slot] = ++tick;
                break;
            default:
                flag[slot] = 0;
                PushFront(slots, slot);
                probationCount++;
                break;
        }
    }

    /// <summary>The page in <paramref name="slot"/> was used again (a hit, or a re-store of a cached page).</summary>
    private void Touch(int slot)
    {
        switch (policy)
        {
            case StudyPolicy.DirectMapped:
                age[slot] = round;
                break;
            case StudyPolicy.Clock:
                flag[slot] = 1;
                break;
            case StudyPolicy.SetAssociativeLru:
                stamp[slot] = ++tick;
                break;
            default:
                TouchSegmented(slot);
                break;
        }
    }

    private void TouchSegmented(int slot)
    {
        if (flag[slot] != 0)
        {
            Unlink(slot);
            PushFront(slots + 1, slot);
        }
        else if (protectedMax == 0)
        {
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
