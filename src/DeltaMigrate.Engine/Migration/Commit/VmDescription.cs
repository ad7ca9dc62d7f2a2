using System.Text.Json.Serialization;

namespace DeltaMigrate.Engine.Migration.Commit;

/// <summary>What a side of a migration says about its VM (both ends compare before any byte moves).</summary>
public sealed record VmDescription(string Name, long MemoryBytes, string Machine, string QemuVersion)
{
    /// <summary>"pc-i440fx-7.2" rather than QOM's "pc-i440fx-7.2-machine".</summary>
    [JsonIgnore]
    public string MachineName => Machine.EndsWith("-machine", StringComparison.Ordinal) ? Machine[..^"-machine".Length] : Machine;
}
