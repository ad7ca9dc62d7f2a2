namespace DeltaMigrate.Benchmarks.PageCaches;

/// <summary>Every cache the study compares: production's and the study policies, built by one name.</summary>
public static class PageCacheKind
{
    /// <summary>Production's policy.</summary>
    public const string Production = "GuardedSegmentedLru";

    public static IReadOnlyList<string> All { get; } = [Production, .. Enum.GetNames<StudyPolicy>()];

    public static IPageCache Create(string kind, long capacityBytes, long totalPages, int pageSize = 4096) =>
        kind == Production
            ? new ProductionPageCache(capacityBytes, totalPages, pageSize)
            : new StudyPageCache(capacityBytes, totalPages, pageSize, Enum.Parse<StudyPolicy>(kind));
}
