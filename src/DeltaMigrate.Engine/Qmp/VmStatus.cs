using System.Text.Json;

namespace DeltaMigrate.Engine.Qmp;

/// <summary>Result of <c>query-status</c>.</summary>
/// <param name="Status">QEMU's run state, e.g. <c>prelaunch</c>, <c>running</c>, <c>paused</c>, <c>inmigrate</c>, <c>postmigrate</c>, <c>finish-migrate</c>, <c>shutdown</c>.</param>
/// <param name="Running">Whether the vCPUs run.</param>
public sealed record VmStatus(string Status, bool Running)
{
    internal static VmStatus FromJson(JsonElement obj) =>
        new(QmpJson.GetString(obj, "status") ?? "unknown", QmpJson.GetBoolean(obj, "running") ?? false);
}
