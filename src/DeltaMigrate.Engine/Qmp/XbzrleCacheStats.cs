using System.Text.Json;

namespace DeltaMigrate.Engine.Qmp;

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
