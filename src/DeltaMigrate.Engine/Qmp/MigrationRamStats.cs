using System.Text.Json;

namespace DeltaMigrate.Engine.Qmp;

/// <summary>The <c>ram</c> member of <c>query-migrate</c> (QAPI MigrationStats).</summary>
public sealed record MigrationRamStats
{
    /// <summary><c>transferred</c>: bytes sent so far.</summary>
    public long? Transferred { get; init; }

    /// <summary><c>remaining</c>: bytes QEMU still considers dirty.</summary>
    public long? Remaining { get; init; }

    /// <summary><c>total</c>: guest RAM bytes.</summary>
    public long? Total { get; init; }

    /// <summary><c>duplicate</c>: zero pages sent as a marker.</summary>
    public long? Duplicate { get; init; }

    /// <summary><c>skipped</c> (deprecated, always 0).</summary>
    public long? Skipped { get; init; }

    /// <summary><c>normal</c>: full pages sent.</summary>
    public long? Normal { get; init; }

    /// <summary><c>normal-bytes</c>.</summary>
    public long? NormalBytes { get; init; }

    /// <summary><c>dirty-pages-rate</c>: pages found dirty per second (per sync; on a slow link it tracks the link's page rate).</summary>
    public long? DirtyPagesRate { get; init; }

    /// <summary><c>mbps</c>: QEMU's measured throughput in megabits per second.</summary>
    public double? Mbps { get; init; }

    /// <summary><c>dirty-sync-count</c>: dirty bitmap syncs (passes) so far.</summary>
    public long? DirtySyncCount { get; init; }

    /// <summary><c>postcopy-requests</c>.</summary>
    public long? PostcopyRequests { get; init; }

    /// <summary><c>page-size</c> in bytes.</summary>
    public long? PageSize { get; init; }

    /// <summary><c>multifd-bytes</c>.</summary>
    public long? MultifdBytes { get; init; }

    /// <summary><c>pages-per-second</c>.</summary>
    public long? PagesPerSecond { get; init; }

    /// <summary><c>precopy-bytes</c>.</summary>
    public long? PrecopyBytes { get; init; }

    /// <summary><c>downtime-bytes</c>: bytes sent while the VM was stopped.</summary>
    public long? DowntimeBytes { get; init; }

    /// <summary><c>postcopy-bytes</c>.</summary>
    public long? PostcopyBytes { get; init; }

    /// <summary><c>dirty-sync-missed-zero-copy</c>.</summary>
    public long? DirtySyncMissedZeroCopy { get; init; }

    internal static MigrationRamStats FromJson(JsonElement o) => new()
    {
        Transferred = QmpJson.GetInt64(o, "transferred"),
        Remaining = QmpJson.GetInt64(o, "remaining"),
        Total = QmpJson.GetInt64(o, "total"),
        Duplicate = QmpJson.GetInt64(o, "duplicate"),
        Skipped = QmpJson.GetInt64(o, "skipped"),
        Normal = QmpJson.GetInt64(o, "normal"),
        NormalBytes = QmpJson.GetInt64(o, "normal-bytes"),
        DirtyPagesRate = QmpJson.GetInt64(o, "dirty-pages-rate"),
        Mbps = QmpJson.GetDouble(o, "mbps"),
        DirtySyncCount = QmpJson.GetInt64(o, "dirty-sync-count"),
        PostcopyRequests = QmpJson.GetInt64(o, "postcopy-requests"),
        PageSize = QmpJson.GetInt64(o, "page-size"),
        MultifdBytes = QmpJson.GetInt64(o, "multifd-bytes"),
        PagesPerSecond = QmpJson.GetInt64(o, "pages-per-second"),
        PrecopyBytes = QmpJson.GetInt64(o, "precopy-bytes"),
        DowntimeBytes = QmpJson.GetInt64(o, "downtime-bytes"),
        PostcopyBytes = QmpJson.GetInt64(o, "postcopy-bytes"),
        DirtySyncMissedZeroCopy = QmpJson.GetInt64(o, "dirty-sync-missed-zero-copy"),
    };
}
