using System.Globalization;
using System.Text.Json;

namespace DeltaMigrate.Engine.Vm;

/// <summary>
/// The folder where every VM we start keeps its QMP sockets, serial log and a small JSON record,
/// so that another shell (or Get-KvmVM tomorrow) finds it again.
/// </summary>
/// <remarks>
/// QEMU (often as root) writes guest output and a pid file here, and the records say which socket and pid
/// Stop-KvmVM and Move-KvmVM act on. So the folder must be ours alone: a directory (not a symlink) owned by
/// our effective uid with mode 0700. <see cref="EnsureSecure"/> checks that before anything creates or trusts
/// a file in it; inside such a folder only we (or root) can plant a symlink or a record, so the checks of
/// single files below are a second line, not the first.
/// </remarks>
public sealed class RunDirectory
{
    /// <summary>Overrides the default location (tests use a folder of their own).</summary>
    public const string EnvironmentVariable = "DELTAMIGRATE_RUNDIR";

    /// <summary>The ErrorId when the folder (or a file QEMU must write) is not safe to use.</summary>
    public const string InsecureErrorId = "RunDirectoryInsecure";

    private const UnixFileMode GroupOrOther = UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.GroupExecute
        | UnixFileMode.OtherRead | UnixFileMode.OtherWrite | UnixFileMode.OtherExecute;

    public RunDirectory(string path)
    {
        // Without a trailing '/': lstat("link/") would follow the link it must report.
        Path = System.IO.Path.TrimEndingDirectorySeparator(System.IO.Path.GetFullPath(path));
    }

    public string Path { get; }

    /// <summary>
    /// $DELTAMIGRATE_RUNDIR, else /run/deltamigrate as root, else $XDG_RUNTIME_DIR/deltamigrate,
    /// else /tmp/deltamigrate-&lt;uid&gt; (all checked alike by <see cref="EnsureSecure"/>).
    /// </summary>
    public static RunDirectory Default => new(DefaultPath(Environment.GetEnvironmentVariable, UnixFile.EffectiveUserId));

    internal static string DefaultPath(Func<string, string?> environment, uint effectiveUserId)
    {
        var configured = environment(EnvironmentVariable);
        if (!string.IsNullOrEmpty(configured))
        {
            return configured;
        }

        if (effectiveUserId == 0)
        {
            return "/run/deltamigrate";
        }

        var runtime = environment("XDG_RUNTIME_DIR");
        return !string.IsNullOrEmpty(runtime)
            ? System.IO.Path.Combine(runtime, "deltamigrate")
            : System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"deltamigrate-{effectiveUserId}");
    }

    /// <summary>
    /// Where a migration of this VM puts its tunnel's sockets: beside its monitors for a VM of ours;
    /// for a VM we did not start, the run directory it was described with, never beside its own socket.
    /// </summary>
    public static RunDirectory ForTunnelOf(VmRecord record) =>
        new(record.TunnelDirectory ?? System.IO.Path.GetDirectoryName(record.ControlSocket)!);

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

    /// <summary>
    /// Creates the folder with mode 0700 when it is missing, then refuses it (RunDirectoryInsecure) unless it is
    /// a real directory owned by our effective uid with no group or other permissions.
    /// </summary>
    public RunDirectory EnsureSecure()
    {
        if (UnixFile.Lstat(Path) is null)
        {
            UnixFile.CreatePrivateDirectory(Path);
        }

        // Checked after creating too: someone may have made it first, and CreateDirectory accepts an existing folder.
        var euid = UnixFile.EffectiveUserId;
        var (problem, fix) = UnixFile.Lstat(Path) switch
        {
            null => ("it vanished right after it was created", "try again"),
            { Type: UnixFileType.SymbolicLink } => ("it is a symbolic link", "remove the link"),
            { Type: not UnixFileType.Directory } => ("it is not a directory", "remove it"),
            { OwnerId: var owner } when owner != euid => ($"it is owned by uid {owner}, not by you (uid {euid})", "remove it"),
            { Mode: var mode } when (mode & GroupOrOther) != 0 => ($"its mode is {Octal(mode)}, so other users can reach into it", "chmod 700 it, or remove it"),
            _ => ((string?)null, ""),
        };
        if (problem is not null)
        {
            throw new EngineException(InsecureErrorId, ErrorKind.InvalidState,
                $"The run directory '{Path}' is not safe to use: {problem}. QEMU writes sockets, pid files and guest output there. "
                + $"To fix it, {fix} (DeltaMigrate creates a missing one with mode 0700), or set ${EnvironmentVariable} to a folder you own with mode 0700.")
            { Target = Path };
        }

        return this;
    }

    public void Save(VmRecord record)
    {
        EnsureSecure();
        var temp = RecordFile(record.Name) + ".tmp";
        System.IO.File.Delete(temp);   // a leftover or a planted link: CreateNew below never opens an existing entry
        using (var stream = UnixFile.CreatePrivateFile(temp))
        {
            JsonSerializer.Serialize(stream, record, JsonOptions);
        }

        // rename() replaces whatever has the name, a symlink included, and never writes through it.
        System.IO.File.Move(temp, RecordFile(record.Name), overwrite: true);
    }

    /// <summary>The record of a VM, or null when there is none or it is not trusted (see <see cref="LoadAll"/>).</summary>
    public VmRecord? Load(string name)
    {
        EnsureSecure();
        return IsPlainName(name) ? Read(name, RecordFile(name)) : null;
    }

    /// <summary>
    /// Every VM record in the folder, by name. A record that is a symlink, does not parse, or names sockets or a
    /// serial log other than the ones this folder gives its VM is skipped: it is not one we wrote, and trusting it
    /// would point Stop-KvmVM or Move-KvmVM at someone else's socket or process.
    /// </summary>
    public IEnumerable<VmRecord> LoadAll()
    {
        EnsureSecure();
        return Directory.EnumerateFiles(Path, "*.json")
            .Order(StringComparer.Ordinal)
            .Select(file => Read(System.IO.Path.GetFileNameWithoutExtension(file), file))
            .OfType<VmRecord>()
            .ToList();
    }

    /// <summary>
    /// Before QEMU starts: replaces whatever is at the serial log and pid file with empty 0600 files. QEMU opens
    /// both with O_CREAT and follows a symlink, so a link planted there would have it write where the link points.
    /// </summary>
    internal void PrepareQemuFiles(string name)
    {
        EnsureSecure();
        foreach (var file in new[] { SerialLog(name), PidFile(name) })
        {
            System.IO.File.Delete(file);   // unlinks a symlink itself, never its target
            UnixFile.CreatePrivateFile(file).Dispose();
        }
    }

    /// <summary>After QEMU starts: its QMP sockets get mode 0600 (QEMU creates them with its umask).</summary>
    internal void RestrictSockets(string name)
    {
        // The folder's 0700 is what really keeps others out; this only keeps a socket private if it is ever moved or linked.
        foreach (var socket in new[] { ControlSocket(name), QuerySocket(name) })
        {
            if (UnixFile.Lstat(socket) is { Type: UnixFileType.Socket })
            {
                UnixFile.MakePrivate(socket);
            }
        }
    }

    /// <summary>The pid QEMU wrote; a pid file that is not a plain file is refused rather than followed.</summary>
    internal int ReadPid(string name)
    {
        var file = PidFile(name);
        if (UnixFile.Lstat(file) is not { Type: UnixFileType.Regular })
        {
            throw new EngineException(InsecureErrorId, ErrorKind.InvalidState,
                $"The pid file '{file}' is missing or not a plain file (a symlink?), so VM '{name}' cannot be tracked. Stop its QEMU by hand and check who else writes to '{Path}'.")
            { Target = name };
        }

        return int.Parse(System.IO.File.ReadAllText(file).Trim(), CultureInfo.InvariantCulture);
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

    /// <summary>A name that stays inside the folder (Move-KvmVM asks about any -Destination text).</summary>
    private static bool IsPlainName(string name) => name.Length > 0 && name.IndexOfAny(['/', '\0']) < 0 && name is not "." and not "..";

    private VmRecord? Read(string name, string file)
    {
        // Only a plain file: through a symlink we would parse, and then trust, a file that is not ours.
        if (UnixFile.Lstat(file) is not { Type: UnixFileType.Regular })
        {
            return null;
        }

        VmRecord? record;
        try
        {
            record = JsonSerializer.Deserialize<VmRecord>(System.IO.File.ReadAllText(file), JsonOptions);
        }
        catch (Exception e) when (e is JsonException or IOException)
        {
            return null; // half-written or foreign file: not one of ours
        }

        return record is not null && Describes(record, name) ? record : null;
    }

    /// <summary>Whether a record is one this folder would have written for that name: its files, a real pid.</summary>
    private bool Describes(VmRecord record, string name) =>
        record.Name == name
        && record.Pid > 0   // kill(0) or kill(-1) would signal whole process groups
        && record.ControlSocket == ControlSocket(name)
        && record.QuerySocket == QuerySocket(name)
        && record.SerialLog == SerialLog(name);

    private static string Octal(UnixFileMode mode) => "0" + Convert.ToString((int)mode, 8);

    private static readonly JsonSerializerOptions JsonOptions = new() { WriteIndented = true };
}
