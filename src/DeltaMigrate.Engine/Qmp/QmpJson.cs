using System.Text.Json;

namespace DeltaMigrate.Engine.Qmp;

/// <summary>Lenient readers for QMP objects: QEMU omits members depending on state, so absence is never an error.</summary>
internal static class QmpJson
{
    public static readonly JsonElement EmptyObject = ParseConstant("{}");

    public static JsonElement ParseConstant(string json)
    {
        using var doc = JsonDocument.Parse(json);
        return doc.RootElement.Clone();
    }

    public static bool TryGet(JsonElement obj, string name, out JsonElement value)
    {
        if (obj.ValueKind == JsonValueKind.Object && obj.TryGetProperty(name, out value))
        {
            return true;
        }

        value = default;
        return false;
    }

    public static string? GetString(JsonElement obj, string name) =>
        TryGet(obj, name, out JsonElement v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;

    public static long? GetInt64(JsonElement obj, string name)
    {
        if (!TryGet(obj, name, out JsonElement v) || v.ValueKind != JsonValueKind.Number)
        {
            return null;
        }

        if (v.TryGetInt64(out long l))
        {
            return l;
        }

        // uint64 counters above long.MaxValue, or a number written with a fraction.
        if (!v.TryGetDouble(out double d))
        {
            return null;
        }

        return d >= long.MaxValue ? long.MaxValue : d <= long.MinValue ? long.MinValue : (long)d;
    }

    public static double? GetDouble(JsonElement obj, string name) =>
        TryGet(obj, name, out JsonElement v) && v.ValueKind == JsonValueKind.Number && v.TryGetDouble(out double d) ? d : null;

    public static bool? GetBoolean(JsonElement obj, string name) =>
        TryGet(obj, name, out JsonElement v) && v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.GetBoolean() : null;
}
