using System.Runtime.InteropServices;
using System.Runtime.Versioning;
using System.Text.Json;
using DeltaMigrate.Engine.Vm;

namespace DeltaMigrate.Engine.Tests.Vm;

/// <summary>The run directory on the real filesystem, in a private temp folder: who may own it, and what it follows.</summary>
[UnsupportedOSPlatform("windows")]
public sealed partial class RunDirectoryTests : IDisposable
{
    private const UnixFileMode Mode0700 = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;
    private const UnixFileMode Mode0600 = UnixFileMode.UserRead | UnixFileMode.UserWrite;

    private readonly string _root = Directory.CreateTempSubdirectory("dm-rundir-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);   // removes links, never their targets

    [Fact]
    public void EnsureSecure_CreatesAMissingFolderWithMode0700()
    {
        var path = Path.Combine(_root, "parent", "run");

        new RunDirectory(path).EnsureSecure();

        Assert.True(Directory.Exists(path));
        Assert.Equal(Mode0700, File.GetUnixFileMode(path));
    }

    [Fact]
    public void EnsureSecure_AcceptsAFolderThatIsOurs()
    {
        var path = Directory.CreateDirectory(Path.Combine(_root, "run"), Mode0700).FullName;

        Assert.Equal(path, new RunDirectory(path).EnsureSecure().Path);
    }

    [Fact]
    public void EnsureSecure_RefusesAFolderOthersCanRead()
    {
        var path = Directory.CreateDirectory(Path.Combine(_root, "run"), Mode0700).FullName;
        File.SetUnixFileMode(path, Mode0700 | UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute);

        var error = AssertInsecure(() => new RunDirectory(path).EnsureSecure());

        Assert.Contains("0755", error.Message);
        Assert.Contains("chmod 700", error.Message);
        Assert.Contains(RunDirectory.EnvironmentVariable, error.Message);
    }

    [Theory]
    [InlineData("link")]
    [InlineData("link/")]
    public void EnsureSecure_RefusesASymlinkedFolder(string name)
    {
        var real = Directory.CreateDirectory(Path.Combine(_root, "real"), Mode0700).FullName;
        Directory.CreateSymbolicLink(Path.Combine(_root, "link"), real);

        var error = AssertInsecure(() => new RunDirectory(Path.Combine(_root, name)).EnsureSecure());

        Assert.Contains("symbolic link", error.Message);
    }

    [Fact]
    public void EnsureSecure_RefusesAFolderSomeoneElseOwns()
    {
        var path = Directory.CreateDirectory(Path.Combine(_root, "run"), Mode0700).FullName;
        Assert.True(Chown(path, 65534, 65534) == 0, $"chown failed (errno {Marshal.GetLastPInvokeError()}): this test needs root");

        var error = AssertInsecure(() => new RunDirectory(path).LoadAll());

        Assert.Contains("uid 65534", error.Message);
    }

    [Fact]
    public void EnsureSecure_RefusesAFile()
    {
        var path = Path.Combine(_root, "run");
        File.WriteAllText(path, "");

        AssertInsecure(() => new RunDirectory(path).Save(Record(new RunDirectory(path), "vm")));
    }

    [Fact]
    public void Save_WritesA0600Record_ThatLoadReadsBack()
    {
        var run = NewRunDirectory();

        run.Save(Record(run, "vm"));

        Assert.Equal(Mode0600, File.GetUnixFileMode(run.RecordFile("vm")));
        Assert.Equal(4242, run.Load("vm")?.Pid);
        Assert.Equal(["vm"], run.LoadAll().Select(r => r.Name));
    }

    [Fact]
    public void Save_ReplacesASymlinkedRecord_AndLeavesItsTargetAlone()
    {
        var run = NewRunDirectory();
        var victim = Victim();
        File.CreateSymbolicLink(run.RecordFile("vm"), victim);
        File.CreateSymbolicLink(run.RecordFile("vm") + ".tmp", victim);

        run.Save(Record(run, "vm"));

        Assert.Equal("precious", File.ReadAllText(victim));
        Assert.Null(new FileInfo(run.RecordFile("vm")).LinkTarget);
        Assert.Equal("vm", run.Load("vm")?.Name);
    }

    [Fact]
    public void Load_IgnoresASymlinkedRecord()
    {
        // Decided: a symlinked record is not ours, so it is skipped like a foreign file (null), not an error.
        var run = NewRunDirectory();
        var elsewhere = Path.Combine(_root, "elsewhere.json");
        File.WriteAllText(elsewhere, JsonSerializer.Serialize(Record(run, "vm")));
        File.CreateSymbolicLink(run.RecordFile("vm"), elsewhere);

        Assert.Null(run.Load("vm"));
        Assert.Empty(run.LoadAll());
    }

    [Fact]
    public void Load_IgnoresAPlantedRecordThatPointsElsewhere()
    {
        var run = NewRunDirectory();
        run.Save(Record(run, "good"));
        var planted = new Dictionary<string, VmRecord>
        {
            ["control"] = Record(run, "control") with { ControlSocket = "/tmp/other.qmp" },
            ["query"] = Record(run, "query") with { QuerySocket = "/run/other/query.qmp" },
            ["serial"] = Record(run, "serial") with { SerialLog = "/etc/passwd" },
            ["renamed"] = Record(run, "other"),
            ["pid"] = Record(run, "pid") with { Pid = -1 },
        };
        foreach (var (name, record) in planted)
        {
            File.WriteAllText(run.RecordFile(name), JsonSerializer.Serialize(record));
        }

        Assert.All(planted.Keys, name => Assert.Null(run.Load(name)));
        Assert.Equal(["good"], run.LoadAll().Select(r => r.Name));
    }

    [Fact]
    public void Load_OfANameThatLeavesTheFolderIsNull()
    {
        var run = NewRunDirectory();
        var outside = new RunDirectory(_root);
        File.WriteAllText(outside.RecordFile("x"), JsonSerializer.Serialize(Record(outside, "x")));

        Assert.Null(run.Load("../x"));
    }

    [Fact]
    public void PrepareQemuFiles_ReplacesPlantedLinks_WithEmpty0600Files()
    {
        var run = NewRunDirectory();
        var victim = Victim();
        File.CreateSymbolicLink(run.SerialLog("vm"), victim);
        File.CreateSymbolicLink(run.PidFile("vm"), victim);

        run.PrepareQemuFiles("vm");

        Assert.Equal("precious", File.ReadAllText(victim));
        foreach (var file in new[] { run.SerialLog("vm"), run.PidFile("vm") })
        {
            var info = new FileInfo(file);
            Assert.Null(info.LinkTarget);
            Assert.Equal(0, info.Length);
            Assert.Equal(Mode0600, info.UnixFileMode);
        }
    }

    [Fact]
    public void ReadPid_RefusesASymlink()
    {
        var run = NewRunDirectory();
        var elsewhere = Path.Combine(_root, "pid");
        File.WriteAllText(elsewhere, "1\n");
        File.CreateSymbolicLink(run.PidFile("vm"), elsewhere);

        AssertInsecure(() => run.ReadPid("vm"));
    }

    [Theory]
    [InlineData("/my/run", 0u, "/run/user/0", "/my/run")]
    [InlineData(null, 0u, "/run/user/0", "/run/deltamigrate")]
    [InlineData(null, 1000u, "/run/user/1000", "/run/user/1000/deltamigrate")]
    [InlineData("", 1000u, null, "deltamigrate-1000")]
    public void Default_PicksTheOverrideThenRootsThenTheSessionsFolder(string? configured, uint euid, string? runtime, string expected)
    {
        string? Environment(string name) => name == RunDirectory.EnvironmentVariable ? configured : name == "XDG_RUNTIME_DIR" ? runtime : null;

        var path = RunDirectory.DefaultPath(Environment, euid);

        Assert.Equal(expected == "deltamigrate-1000" ? Path.Combine(Path.GetTempPath(), expected) : expected, path);
    }

    private RunDirectory NewRunDirectory() => new RunDirectory(Path.Combine(_root, "run")).EnsureSecure();

    private string Victim()
    {
        var victim = Path.Combine(_root, "victim");
        File.WriteAllText(victim, "precious");
        return victim;
    }

    private static VmRecord Record(RunDirectory run, string name) => new()
    {
        Name = name,
        Pid = 4242,
        MemoryBytes = 64L * 1024 * 1024,
        Machine = "pc",
        QemuPath = "/usr/bin/qemu-system-x86_64",
        ControlSocket = run.ControlSocket(name),
        QuerySocket = run.QuerySocket(name),
        SerialLog = run.SerialLog(name),
        CommandLine = ["qemu-system-x86_64"],
    };

    private static EngineException AssertInsecure(Action action)
    {
        var error = Assert.Throws<EngineException>(action);
        Assert.Equal(RunDirectory.InsecureErrorId, error.ErrorId);
        Assert.Equal(ErrorKind.InvalidState, error.Kind);
        return error;
    }

    [LibraryImport("libc", EntryPoint = "chown", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Chown(string path, uint owner, uint group);
}
