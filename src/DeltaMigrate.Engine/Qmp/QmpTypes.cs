using System.Text.Json;

namespace DeltaMigrate.Engine.Qmp;

/// <summary>QEMU's version as reported by the greeting and by <c>query-version</c>.</summary>
/// <param name="Qemu">major.minor.micro, e.g. 7.2.22.</param>
/// <param name="Package">The distribution's package string, e.g. <c>Debian 1:7.2+dfsg-7+deb12u18+b3</c>; may be empty.</param>
public sealed record QemuVersionInfo(Version Qemu, string Package)
{
    internal static QemuVersionInfo FromJson(JsonElement obj)
    {
        QmpJson.TryGet(obj, "qemu", out JsonElement q);
        var version = new Version(
            (int)(QmpJson.GetInt64(q, "major") ?? 0),
            (int)(QmpJson.GetInt64(q, "minor") ?? 0),
            (int)(QmpJson.GetInt64(q, "micro") ?? 0));
        return new QemuVersionInfo(version, QmpJson.GetString(obj, "package")?.Trim() ?? string.Empty);
    }
}

/// <summary>The greeting QEMU sends when a client connects.</summary>
/// <param name="Version">QEMU's version.</param>
/// <param name="Capabilities">Capabilities QEMU offers (7.2: <c>oob</c>); the client enables none of them.</param>
/// <param name="Raw">The greeting's <c>QMP</c> object as sent.</param>
public sealed record QmpGreeting(QemuVersionInfo Version, IReadOnlyList<string> Capabilities, JsonElement Raw)
{
    internal static QmpGreeting FromJson(JsonElement qmp)
    {
        QmpJson.TryGet(qmp, "version", out JsonElement version);
        var caps = new List<string>();
        if (QmpJson.TryGet(qmp, "capabilities", out JsonElement c) && c.ValueKind == JsonValueKind.Array)
        {
            foreach (JsonElement item in c.EnumerateArray())
            {
                if (item.ValueKind == JsonValueKind.String)
                {
                    caps.Add(item.GetString()!);
                }
            }
        }

        return new QmpGreeting(QemuVersionInfo.FromJson(version), caps, qmp.Clone());
    }
}

/// <summary>Result of <c>query-status</c>.</summary>
/// <param name="Status">QEMU's run state, e.g. <c>prelaunch</c>, <c>running</c>, <c>paused</c>, <c>inmigrate</c>, <c>postmigrate</c>, <c>finish-migrate</c>, <c>shutdown</c>.</param>
/// <param name="Running">Whether the vCPUs run.</param>
public sealed record VmStatus(string Status, bool Running)
{
    internal static VmStatus FromJson(JsonElement obj) =>
        new(QmpJson.GetString(obj, "status") ?? "unknown", QmpJson.GetBoolean(obj, "running") ?? false);
}

/// <summary>Result of <c>query-memory-size-summary</c>.</summary>
/// <param name="BaseMemory">Boot memory in bytes (<c>-m</c>).</param>
/// <param name="PluggedMemory">Hot-plugged memory in bytes, when QEMU reports it.</param>
public sealed record MemorySizeSummary(long BaseMemory, long? PluggedMemory)
{
    internal static MemorySizeSummary FromJson(JsonElement obj) =>
        new(QmpJson.GetInt64(obj, "base-memory") ?? 0, QmpJson.GetInt64(obj, "plugged-memory"));
}

/// <summary>
/// Result of <c>query-migrate</c>. QEMU omits members depending on the migration state (a VM that never
/// migrated answers <c>{}</c>; after <c>migrate_cancel</c> only the status is left), so everything is nullable;
/// <see cref="Raw"/> keeps the whole answer.
/// </summary>
public sealed record MigrationInfo
{
    /// <summary><c>status</c>: none, setup, active, pre-switchover, device, completed, failed, cancelling, cancelled, postcopy-*, colo, wait-unplug. Null when QEMU sent none (never migrated).</summary>
    public string? Status { get; init; }

    /// <summary><c>total-time</c> in milliseconds (so far when active).</summary>
    public long? TotalTimeMs { get; init; }

    /// <summary><c>downtime</c> in milliseconds (only once completed).</summary>
    public long? DowntimeMs { get; init; }

    /// <summary><c>expected-downtime</c> in milliseconds (only while active).</summary>
    public long? ExpectedDowntimeMs { get; init; }

    /// <summary><c>setup-time</c> in milliseconds.</summary>
    public long? SetupTimeMs { get; init; }

    /// <summary><c>error-desc</c>, when the migration failed.</summary>
    public string? ErrorDescription { get; init; }

    /// <summary><c>cpu-throttle-percentage</c>, when auto-converge throttles the guest.</summary>
    public long? CpuThrottlePercentage { get; init; }

    /// <summary><c>ram</c> statistics.</summary>
    public MigrationRamStats? Ram { get; init; }

    /// <summary><c>xbzrle-cache</c> statistics (only with the xbzrle capability).</summary>
    public XbzrleCacheStats? XbzrleCache { get; init; }

    /// <summary>The answer as QEMU sent it.</summary>
    public JsonElement Raw { get; init; }

    /// <summary>True when the status is one QEMU will not leave by itself (completed, failed, cancelled).</summary>
    public bool IsFinished => Status is "completed" or "failed" or "cancelled";

    public static MigrationInfo FromJson(JsonElement obj)
    {
        obj = obj.Clone();
        return new MigrationInfo
        {
            Status = QmpJson.GetString(obj, "status"),
            TotalTimeMs = QmpJson.GetInt64(obj, "total-time"),
            DowntimeMs = QmpJson.GetInt64(obj, "downtime"),
            ExpectedDowntimeMs = QmpJson.GetInt64(obj, "expected-downtime"),
            SetupTimeMs = QmpJson.GetInt64(obj, "setup-time"),
            ErrorDescription = QmpJson.GetString(obj, "error-desc"),
            CpuThrottlePercentage = QmpJson.GetInt64(obj, "cpu-throttle-percentage"),
            Ram = QmpJson.TryGet(obj, "ram", out JsonElement ram) && ram.ValueKind == JsonValueKind.Object ? MigrationRamStats.FromJson(ram) : null,
            XbzrleCache = QmpJson.TryGet(obj, "xbzrle-cache", out JsonElement x) && x.ValueKind == JsonValueKind.Object ? XbzrleCacheStats.FromJson(x) : null,
            Raw = obj,
        };
    }
}

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

/// <summary>The <c>xbzrle-cache</c> member of <c>query-migrate</c>.</summary>
public sealed record XbzrleCacheStats
{
    /// <summary><c>cache-size</c> in bytes.</summary>
    public long? CacheSize { get; init; }

    /// <summary><c>bytes</c>: encoded bytes sent.</summary>
    public long? Bytes { get; init; }

    /// <summary><c>pages</c>: pages sent XBZRLE-encoded.</summary>
    public long? Pages { get; init; }

    /// <summary><c>cache-miss</c>.</summary>
    public long? CacheMiss { get; init; }

    /// <summary><c>cache-miss-rate</c> (0..1).</summary>
    public double? CacheMissRate { get; init; }

    /// <summary><c>encoding-rate</c>.</summary>
    public double? EncodingRate { get; init; }

    /// <summary><c>overflow</c>: pages whose encoding did not fit.</summary>
    public long? Overflow { get; init; }

    internal static XbzrleCacheStats FromJson(JsonElement o) => new()
    {
        CacheSize = QmpJson.GetInt64(o, "cache-size"),
        Bytes = QmpJson.GetInt64(o, "bytes"),
        Pages = QmpJson.GetInt64(o, "pages"),
        CacheMiss = QmpJson.GetInt64(o, "cache-miss"),
        CacheMissRate = QmpJson.GetDouble(o, "cache-miss-rate"),
        EncodingRate = QmpJson.GetDouble(o, "encoding-rate"),
        Overflow = QmpJson.GetInt64(o, "overflow"),
    };
}
