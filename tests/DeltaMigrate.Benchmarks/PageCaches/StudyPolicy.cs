using DeltaMigrate.Engine.Delta;

namespace DeltaMigrate.Benchmarks.PageCaches;

/// <summary>
/// The replacement policies the hit-rate study compares with production's (<see cref="PageCache"/>, guarded segmented
/// LRU, described there). They live here, not in the engine, because nothing in a migration uses them.
/// </summary>
public enum StudyPolicy
{
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
