using System.Text.Json;

namespace DeltaMigrate.Engine.Qmp;

/// <summary>Result of <c>query-memory-size-summary</c>.</summary>
/// <param name="BaseMemory">Boot memory in bytes (<c>-m</c>).</param>
/// <param name="PluggedMemory">Hot-plugged memory in bytes, when QEMU reports it.</param>
public sealed record MemorySizeSummary(long BaseMemory, long? PluggedMemory)
{
    internal static MemorySizeSummary FromJson(JsonElement obj) =>
        new(QmpJson.GetInt64(obj, "base-memory") ?? 0, QmpJson.GetInt64(obj, "plugged-memory"));
}
