using System.Text.Json;
using DeltaMigrate.Engine.Qmp;

namespace DeltaMigrate.Engine.Tests.Qmp;

public sealed class MigrationInfoTests
{
    /// <summary>Captured from QEMU 7.2.22 after a completed migration with xbzrle on.</summary>
    private const string Completed72 =
        """{"xbzrle-cache": {"encoding-rate": 0, "bytes": 0, "cache-size": 67108864, "cache-miss-rate": 0, "pages": 0, "overflow": 0, "cache-miss": 4}, "status": "completed", "setup-time": 7, "downtime": 2, "total-time": 132, "ram": {"total": 67641344, "postcopy-requests": 0, "dirty-sync-count": 3, "multifd-bytes": 0, "pages-per-second": 128017, "downtime-bytes": 16423, "page-size": 4096, "remaining": 0, "postcopy-bytes": 0, "mbps": 46.823104000000001, "transferred": 619702, "dirty-sync-missed-zero-copy": 0, "precopy-bytes": 603279, "duplicate": 16403, "dirty-pages-rate": 0, "skipped": 0, "normal-bytes": 471040, "normal": 115}}""";

    /// <summary>An active migration as QAPI documents it (expected-downtime and throttle only while active).</summary>
    private const string Active =
        """{"status": "active", "setup-time": 12, "total-time": 5230, "expected-downtime": 6300, "cpu-throttle-percentage": 20, "ram": {"transferred": 123456789, "remaining": 2048000, "total": 1082195968, "duplicate": 250000, "skipped": 0, "normal": 30000, "normal-bytes": 122880000, "dirty-pages-rate": 2900, "mbps": 100.5, "dirty-sync-count": 4, "postcopy-requests": 0, "page-size": 4096, "multifd-bytes": 0, "pages-per-second": 2950, "precopy-bytes": 123456789, "downtime-bytes": 0, "postcopy-bytes": 0, "dirty-sync-missed-zero-copy": 0}, "xbzrle-cache": {"cache-size": 67108864, "bytes": 7000000, "pages": 9000, "cache-miss": 1200, "cache-miss-rate": 0.125, "encoding-rate": 5.75, "overflow": 3}}""";

    private static MigrationInfo Parse(string json)
    {
        using var doc = JsonDocument.Parse(json);
        return MigrationInfo.FromJson(doc.RootElement);
    }

    [Fact]
    public void Parses_every_stat_of_a_completed_QEMU_7_2_answer()
    {
        MigrationInfo info = Parse(Completed72);
        Assert.Equal("completed", info.Status);
        Assert.True(info.IsFinished);
        Assert.Equal(132, info.TotalTimeMs);
        Assert.Equal(2, info.DowntimeMs);
        Assert.Equal(7, info.SetupTimeMs);
        Assert.Null(info.ExpectedDowntimeMs);
        Assert.Null(info.ErrorDescription);
        Assert.Null(info.CpuThrottlePercentage);

        MigrationRamStats ram = Assert.IsType<MigrationRamStats>(info.Ram);
        Assert.Equal(619702, ram.Transferred);
        Assert.Equal(0, ram.Remaining);
        Assert.Equal(67641344, ram.Total);
        Assert.Equal(16403, ram.Duplicate);
        Assert.Equal(0, ram.Skipped);
        Assert.Equal(115, ram.Normal);
        Assert.Equal(471040, ram.NormalBytes);
        Assert.Equal(0, ram.DirtyPagesRate);
        Assert.Equal(46.823104, ram.Mbps!.Value, 6);
        Assert.Equal(3, ram.DirtySyncCount);
        Assert.Equal(0, ram.PostcopyRequests);
        Assert.Equal(4096, ram.PageSize);
        Assert.Equal(0, ram.MultifdBytes);
        Assert.Equal(128017, ram.PagesPerSecond);
        Assert.Equal(603279, ram.PrecopyBytes);
        Assert.Equal(16423, ram.DowntimeBytes);
        Assert.Equal(0, ram.PostcopyBytes);
        Assert.Equal(0, ram.DirtySyncMissedZeroCopy);

        XbzrleCacheStats x = Assert.IsType<XbzrleCacheStats>(info.XbzrleCache);
        Assert.Equal(67108864, x.CacheSize);
        Assert.Equal(0, x.Bytes);
        Assert.Equal(0, x.Pages);
        Assert.Equal(4, x.CacheMiss);
        Assert.Equal(0, x.CacheMissRate);
        Assert.Equal(0, x.EncodingRate);
        Assert.Equal(0, x.Overflow);

        Assert.Equal(67641344, info.Raw.GetProperty("ram").GetProperty("total").GetInt64());
    }

    [Fact]
    public void Parses_an_active_answer_with_fractional_rates()
    {
        MigrationInfo info = Parse(Active);
        Assert.Equal("active", info.Status);
        Assert.False(info.IsFinished);
        Assert.Equal(6300, info.ExpectedDowntimeMs);
        Assert.Equal(20, info.CpuThrottlePercentage);
        Assert.Null(info.DowntimeMs);
        Assert.Equal(2048000, info.Ram!.Remaining);
        Assert.Equal(100.5, info.Ram.Mbps);
        Assert.Equal(0.125, info.XbzrleCache!.CacheMissRate);
        Assert.Equal(5.75, info.XbzrleCache.EncodingRate);
        Assert.Equal(3, info.XbzrleCache.Overflow);
    }

    [Fact]
    public void Empty_answer_of_a_VM_that_never_migrated_leaves_everything_null()
    {
        MigrationInfo info = Parse("{}");
        Assert.Null(info.Status);
        Assert.Null(info.Ram);
        Assert.Null(info.XbzrleCache);
        Assert.Null(info.TotalTimeMs);
        Assert.False(info.IsFinished);
        Assert.Equal(JsonValueKind.Object, info.Raw.ValueKind);
    }

    [Fact]
    public void Failed_answer_carries_the_error_description()
    {
        MigrationInfo info = Parse("""{"status": "failed", "error-desc": "Unable to write to socket: Broken pipe"}""");
        Assert.Equal("failed", info.Status);
        Assert.Equal("Unable to write to socket: Broken pipe", info.ErrorDescription);
        Assert.True(info.IsFinished);
    }

    [Fact]
    public void Raw_outlives_the_document_it_came_from()
    {
        MigrationInfo info = Parse(Completed72);
        GC.Collect();
        Assert.Equal("completed", info.Raw.GetProperty("status").GetString());
    }

    [Fact]
    public void Unsigned_counters_beyond_long_range_saturate_instead_of_vanishing()
    {
        MigrationInfo info = Parse("""{"ram": {"transferred": 18446744073709551615}}""");
        Assert.Equal(long.MaxValue, info.Ram!.Transferred);
    }
}
