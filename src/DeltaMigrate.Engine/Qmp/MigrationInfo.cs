using System.Text.Json;

namespace DeltaMigrate.Engine.Qmp;

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
