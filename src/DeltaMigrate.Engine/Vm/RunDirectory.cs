using System.Text.Json;

namespace DeltaMigrate.Engine.Vm;

/// <summary>
/// The folder where every VM we start keeps its QMP sockets, serial log and a small JSON record,
/// so that another shell (or Get-KvmVM tomorrow) finds it again.
/// </summary>
public sealed class RunDirectory
{
    /// <summary>Overrides the default location (tests use a folder of their own).</summary>
    public const string EnvironmentVariable = "DELTAMIGRATE_RUNDIR";

    public RunDirectory(string path)
    {
        Path = System.IO.Path.GetFullPath(path);
    }

    public string Path { get; }

    /// <summary>$DELTAMIGRATE_RUNDIR, else $XDG_RUNTIME_DIR/deltamigrate, else /tmp/deltamigrate-&lt;user&gt;.</summary>
    public static RunDirectory Default
    {
        get
        {
            var configured = Environment.GetEnvironmentVariable(EnvironmentVariable);
            if (!string.IsNullOrEmpty(configured))
            {
                return new RunDirectory(configured);
            }

            var runtime = Environment.GetEnvironmentVariable("XDG_RUNTIME_DIR");
            return !string.IsNullOrEmpty(runtime)
                ? new RunDirectory(System.IO.Path.Combine(runtime, "deltamigrate"))
                : new RunDirectory(System.IO.Path.Combine(System.IO.Path.GetTempPath(), "deltamigrate-" + Environment.UserName));
        }
    }

    /// <summary>The socket a migration holds for as long as it runs.</summary>
    public string ControlSocket(string name) => File(name, "qmp");

    /// <summary>A second monitor, so that Get-KvmVM and Invoke-KvmQmp answer while a migration holds the first (QMP serves one client).</summary>
    public string QuerySocket(string name) => File(name, "query.qmp");

    /// <summary>Where our tunnel feeds a destination QEMU (migrate-incoming unix:...).</summary>
    public string IncomingSocket(string name) => File(name, "incoming.sock");

    /// <summary>Where a source QEMU migrates into our tunnel (migrate unix:...).</summary>
    public string OutgoingSocket(string name) => File(name, "outgoing.sock");

    public string SerialLog(string name) => File(name, "serial.log");

    public string PidFile(string name) => File(name, "pid");

    public string RecordFile(string name) => File(name, "json");

    public void Create() => Directory.CreateDirectory(Path);

    public void Save(VmRecord record)
    {
        Create();
        var temp = RecordFile(record.Name) + ".tmp";
        System.IO.File.WriteAllText(temp, JsonSerializer.Serialize(record, JsonOptions));
        System.IO.File.Move(temp, RecordFile(record.Name), overwrite: true);
    }

    public VmRecord? Load(string name)
    {
        var file = RecordFile(name);
        return System.IO.File.Exists(file) ? Read(file) : null;
    }

    /// <summary>Every VM record in the folder, by name.</summary>
    public IEnumerable<VmRecord> LoadAll()
    {
        if (!Directory.Exists(Path))
        {
            yield break;
        }

        foreach (var file in Directory.EnumerateFiles(Path, "*.json").Order(StringComparer.Ordinal))
        {
            var record = Read(file);
            if (record is not null)
            {
                yield return record;
            }
        }
    }

    /// <summary>Removes what a VM left behind once its QEMU has gone.</summary>
    public void Remove(string name)
    {
        foreach (var file in new[] { ControlSocket(name), QuerySocket(name), PidFile(name), RecordFile(name), IncomingSocket(name), OutgoingSocket(name) })
        {
            System.IO.File.Delete(file);
        }
    }

    private string File(string name, string extension) => System.IO.Path.Combine(Path, $"{name}.{extension}");

    private static VmRecord? Read(string file)
    {
        try
        {
            return JsonSerializer.Deserialize<VmRecord>(System.IO.File.ReadAllText(file), JsonOptions);
        }
        catch (Exception e) when (e is JsonException or IOException)
        {
            return null; // half-written or foreign file: not one of ours
        }
    }

    private static readonly JsonSerializerOptions JsonOptions = new() { WriteIndented = true };
}

/// <summary>What we know about a VM we started, kept beside its sockets.</summary>
public sealed record VmRecord
{
    public required string Name { get; init; }
    public required int Pid { get; init; }
    public required long MemoryBytes { get; init; }
    public required string Machine { get; init; }
    public required string QemuPath { get; init; }
    public required string ControlSocket { get; init; }
    public required string QuerySocket { get; init; }
    public required string SerialLog { get; init; }
    public required IReadOnlyList<string> CommandLine { get; init; }
    public DateTimeOffset StartTime { get; init; }

    /// <summary>-Paused: the VM stays paused after a migration into it commits, too.</summary>
    public bool StaysPaused { get; init; }

    /// <summary>QEMU was started with -S (every -Incoming VM is): it will not run the guest until told to, so a migration into it waits for the commit.</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public bool HoldsForCommit => CommandLine.Contains("-S");
}
