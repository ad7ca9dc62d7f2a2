namespace DeltaMigrate.Engine.Delta;

/// <summary>Replacement policy of a <see cref="PageCache"/>.</summary>
public enum PageCachePolicy
{
    /// <summary>
    /// Segmented LRU with QEMU's age guard (the default): pages enter a probation FIFO; a page that hits is promoted
    /// to a protected LRU segment (at most 80% of the slots). No page is pushed out, from either segment, by a
    /// different page if it was inserted or hit in the current or previous round (<see cref="PageCache.NextRound"/>):
    /// the newcomer is then simply not cached, and a promotion that would demote a fresh protected page leaves the
    /// page in probation. Pages are sent in increasing page order each round, so any policy that evicts on every miss
    /// (FIFO, LRU, CLOCK) throws out the pages the same round is about to re-send; this one keeps a stable subset
    /// like QEMU's direct-mapped cache, but fully associative (no slot conflicts), and a one-time scan only ever
    /// recycles probation.
    /// </summary>
    GuardedSegmentedLru,

    /// <summary>
    /// QEMU's page_cache.c: direct-mapped on page index (page % slots); a different page replaces an entry only if
    /// that entry was not inserted or hit in the current or previous round.
    /// </summary>
    DirectMapped,

    /// <summary>CLOCK (second chance): inserts start unreferenced, hits set the reference bit.</summary>
    Clock,

    /// <summary>Segmented LRU (2Q-like): probation FIFO for pages seen once, protected LRU for pages hit; evict probation first.</summary>
    SegmentedLru,

    /// <summary>16-way set-associative LRU (set = page % sets).</summary>
    SetAssociativeLru,
}
