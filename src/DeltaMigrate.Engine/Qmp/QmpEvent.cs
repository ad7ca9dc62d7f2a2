using System.Text.Json;

namespace DeltaMigrate.Engine.Qmp;

/// <summary>An asynchronous event QEMU sent on the monitor, e.g. <c>STOP</c>, <c>RESUME</c>, <c>MIGRATION</c>.</summary>
/// <param name="Name">The event name, e.g. <c>RESUME</c>.</param>
/// <param name="Data">The event's <c>data</c> object (an empty object when QEMU sent none); owned by the event, safe to keep.</param>
/// <param name="Timestamp">When QEMU emitted the event (QEMU's host clock, microsecond precision).</param>
public sealed record QmpEvent(string Name, JsonElement Data, DateTimeOffset Timestamp)
{
    /// <summary>Reads a string member of <see cref="Data"/>, or null when absent or not a string.</summary>
    public string? GetDataString(string property) =>
        Data.ValueKind == JsonValueKind.Object && Data.TryGetProperty(property, out JsonElement value) && value.ValueKind == JsonValueKind.String
            ? value.GetString()
            : null;

    public override string ToString() => $"{Name} {Data.GetRawText()} @ {Timestamp:O}";
}
