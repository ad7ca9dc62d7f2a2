using System.Diagnostics;
using DeltaMigrate.Engine.Logging;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace DeltaMigrate.Engine.Vm;

/// <summary>
/// Starts QEMU as a daemon (it outlives the shell that started it) with its QMP sockets,
/// serial log and pid file in a <see cref="RunDirectory"/>.
/// </summary>
public sealed class QemuLauncher(RunDirectory runDirectory, ILogger? logger = null)
{
    private readonly ILogger _logger = logger ?? NullLogger.Instance;

    /// <summary>The same, logging to a host's <see cref="IEngineLogSink"/> (the cmdlets: no logging types cross into PowerShell's load context).</summary>
    public QemuLauncher(RunDirectory runDirectory, IEngineLogSink log)
        : this(runDirectory, SinkLogger.From(log))
    {
    }

    public RunDirectory RunDirectory { get; } = runDirectory;

    public async Task<VmRecord> StartAsync(VmSpec spec, CancellationToken cancellationToken = default)
    {
        Validate(spec);
        RunDirectory.EnsureSecure();
        var existing = RunDirectory.Load(spec.Name);
        if (existing is not null && IsAlive(existing.Pid))
        {
            throw new EngineException("VMAlreadyExists", ErrorKind.InvalidArgument,
                $"A VM named '{spec.Name}' is already running (pid {existing.Pid}). Pick another -Name or stop it with Stop-KvmVM.")
            { Target = spec.Name };
        }

        RunDirectory.Remove(spec.Name);
        RunDirectory.PrepareQemuFiles(spec.Name);
        var qemu = ResolveQemu(spec.QemuPath);
        var arguments = BuildArguments(spec, qemu);
        _logger.LogInformation("Starting VM {Name}: {Qemu} {Arguments}", spec.Name, qemu, string.Join(' ', arguments));

        var start = new ProcessStartInfo(qemu) { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        // With -daemonize the first process exits once the VM is set up; its exit code and stderr say whether it worked.
        using (var process = Process.Start(start) ?? throw new InvalidOperationException("Process.Start returned null"))
        {
            var stderr = process.StandardError.ReadToEndAsync(cancellationToken);
            await process.WaitForExitAsync(cancellationToken);
            if (process.ExitCode != 0)
            {
                throw new EngineException("QemuStartFailed", ErrorKind.InvalidArgument,
                    $"QEMU could not start VM '{spec.Name}' (exit code {process.ExitCode}): {(await stderr).Trim()}")
                { Target = spec.Name };
            }
        }

        var pid = RunDirectory.ReadPid(spec.Name);
        RunDirectory.RestrictSockets(spec.Name);
        var record = new VmRecord
        {
            Name = spec.Name,
            Pid = pid,
            MemoryBytes = spec.MemoryBytes,
            Machine = spec.Machine,
            QemuPath = qemu,
            ControlSocket = RunDirectory.ControlSocket(spec.Name),
            QuerySocket = RunDirectory.QuerySocket(spec.Name),
            SerialLog = RunDirectory.SerialLog(spec.Name),
            CommandLine = [qemu, .. arguments],
            StartTime = DateTimeOffset.Now,
            StaysPaused = spec.Paused,
            Spec = spec with { QemuPath = qemu },
        };
        RunDirectory.Save(record);
        return record;
    }

    internal IReadOnlyList<string> BuildArguments(VmSpec spec, string qemu)
    {
        var name = spec.Name;
        var args = new List<string>
        {
            "-name", name,
            "-machine", spec.Machine,
            "-accel", ChooseAccelerator(spec.Accelerator),
            "-m", $"{spec.MemoryBytes / (1024 * 1024)}M",
            "-nodefaults", "-no-user-config", "-display", "none",
            "-qmp", $"unix:{RunDirectory.ControlSocket(name)},server=on,wait=off",
            "-qmp", $"unix:{RunDirectory.QuerySocket(name)},server=on,wait=off",
            "-serial", $"file:{RunDirectory.SerialLog(name)}",
            "-pidfile", RunDirectory.PidFile(name),
            "-daemonize",
        };
        foreach (var firmware in FirmwareFolders(qemu))
        {
            args.AddRange(["-L", firmware]);
        }

        if (spec.Kernel is not null)
        {
            args.AddRange(["-kernel", spec.Kernel]);
            if (spec.Append is not null)
            {
                args.AddRange(["-append", spec.Append]);
            }

            if (spec.Initrd is not null)
            {
                args.AddRange(["-initrd", spec.Initrd]);
            }
        }

        if (spec.Disk is not null)
        {
            args.AddRange(["-drive", $"file={spec.Disk},if=virtio"]);
        }

        // A waiting VM is always held paused: it may run only once the migration commits (the
        // source is stopped for good); -Paused alone, or on top, means "stay paused after that".
        if (spec.Paused || spec.Incoming)
        {
            args.Add("-S");
        }

        if (spec.Incoming)
        {
            args.AddRange(["-incoming", "defer"]);
        }

        args.AddRange(spec.ExtraArguments);
        return args;
    }

    /// <summary>
    /// A QEMU unpacked outside /usr (QEMU 10.0 from backports under .tools/) brings its firmware
    /// in ../share/qemu and ../share/seabios beside its binary; QEMU looks only in its built-in path.
    /// </summary>
    internal static IEnumerable<string> FirmwareFolders(string qemu)
    {
        var prefix = Path.GetDirectoryName(Path.GetDirectoryName(Path.GetFullPath(qemu)));
        if (prefix is null || prefix == "/usr")
        {
            yield break;
        }

        foreach (var folder in new[] { "share/qemu", "share/seabios" })
        {
            var path = Path.Combine(prefix, folder);
            if (Directory.Exists(path))
            {
                yield return path;
            }
        }
    }

    public static string ResolveQemu(string? path)
    {
        if (!string.IsNullOrEmpty(path))
        {
            return File.Exists(path)
                ? Path.GetFullPath(path)
                : throw new EngineException("QemuNotFound", ErrorKind.NotFound,
                    $"The QEMU binary '{path}' does not exist. Give the full path of a qemu-system-x86_64.")
                { Target = path };
        }

        foreach (var folder in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries))
        {
            var candidate = Path.Combine(folder, "qemu-system-x86_64");
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }

        throw new EngineException("QemuNotFound", ErrorKind.NotFound,
            "qemu-system-x86_64 is not on PATH. Install it (apt-get install qemu-system-x86) or pass -QemuPath.");
    }

    public static bool IsAlive(int pid)
    {
        // /proc/<pid> exists for a live process; a zombie has state Z in /proc/<pid>/stat.
        var stat = $"/proc/{pid}/stat";
        try
        {
            var text = File.ReadAllText(stat);
            var close = text.LastIndexOf(')');
            return close < 0 || close + 2 >= text.Length || text[close + 2] != 'Z';
        }
        catch (IOException)
        {
            return false;
        }
    }

    private static string ChooseAccelerator(Accelerator accelerator) => accelerator switch
    {
        Accelerator.Kvm => "kvm",
        Accelerator.Tcg => "tcg",
        _ => File.Exists("/dev/kvm") ? "kvm" : "tcg",
    };

    private static void Validate(VmSpec spec)
    {
        if (string.IsNullOrWhiteSpace(spec.Name) || spec.Name.IndexOfAny(['/', '\0', ' ', ',']) >= 0)
        {
            throw new EngineException("InvalidVMName", ErrorKind.InvalidArgument,
                $"'{spec.Name}' is not a usable VM name: use letters, digits, '-', '_' or '.'.")
            { Target = spec.Name };
        }

        if (spec.MemoryBytes < 16L * 1024 * 1024 || spec.MemoryBytes % (1024 * 1024) != 0)
        {
            throw new EngineException("InvalidMemorySize", ErrorKind.InvalidArgument,
                $"-Memory must be a whole number of MiB, at least 16MB (got {spec.MemoryBytes} bytes).")
            { Target = spec.Name };
        }

        if (spec.Kernel is not null && !File.Exists(spec.Kernel))
        {
            throw new EngineException("KernelNotFound", ErrorKind.NotFound,
                $"The kernel '{spec.Kernel}' does not exist.")
            { Target = spec.Kernel };
        }

        if (spec.Initrd is not null && !File.Exists(spec.Initrd))
        {
            throw new EngineException("InitrdNotFound", ErrorKind.NotFound, $"The initrd '{spec.Initrd}' does not exist.")
            { Target = spec.Initrd };
        }

        if (spec.Disk is not null && !File.Exists(spec.Disk))
        {
            throw new EngineException("DiskNotFound", ErrorKind.NotFound, $"The disk image '{spec.Disk}' does not exist.")
            { Target = spec.Disk };
        }
    }
}
