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
