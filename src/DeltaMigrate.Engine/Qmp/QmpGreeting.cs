using System.Text.Json;

namespace DeltaMigrate.Engine.Qmp;

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
