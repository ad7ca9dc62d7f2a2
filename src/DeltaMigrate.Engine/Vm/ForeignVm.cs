using System.Text.Json;
using DeltaMigrate.Engine.Logging;
using DeltaMigrate.Engine.Qmp;
using Microsoft.Extensions.Logging;

namespace DeltaMigrate.Engine.Vm;

/// <summary>
/// A QEMU we did not start (by hand, by a script, by another manager), known only by a QMP socket
/// that may be its only monitor. What we need of it comes from QEMU itself, over one short
/// connection: its name, memory, machine type and boot settings (QOM), its pid (the socket's peer).
/// The monitor is released at once, so the VM's own manager can use it again.
/// </summary>
public static class ForeignVm
{
    private static readonly TimeSpan ConnectTimeout = TimeSpan.FromSeconds(5);

    /// <summary>The same, logging to a host's <see cref="IEngineLogSink"/> (the cmdlets: no logging types cross into PowerShell's load context).</summary>
    public static Task<VmRecord> DescribeAsync(string socket, RunDirectory runDirectory, IEngineLogSink log, CancellationToken ct) =>
        DescribeAsync(socket, runDirectory, SinkLogger.From(log), ct);

    /// <summary>
    /// A record of the VM behind <paramref name="socket"/>, for the same code paths as ours (never
    /// saved); a migration of it keeps its sockets in <paramref name="runDirectory"/>.
    /// </summary>
    /// <exception cref="EngineException">VMNotReachable when the socket does not answer in time.</exception>
    public static async Task<VmRecord> DescribeAsync(string socket, RunDirectory runDirectory, ILogger logger, CancellationToken ct)
    {
        runDirectory.EnsureSecure();
        QmpClient qmp;
        try
        {
            qmp = await QmpClient.ConnectUnixAsync(socket, logger, ConnectTimeout, ct);
        }
        catch (Exception e) when (e is QmpException or IOException or TimeoutException or System.Net.Sockets.SocketException)
        {
            throw new EngineException("VMNotReachable", ErrorKind.ConnectionError,
                $"No QEMU answers on the QMP socket '{socket}': {e.Message} Check the path, that the VM runs, and that no other client holds its only monitor.",
                e)
            { Target = socket };
        }

        await using (qmp)
        {
            var pid = qmp.PeerProcessId ?? 0;
            var drives = await DrivesAsync(qmp, ct);
            var name = PlainName(await qmp.QueryNameAsync(ct)) ?? PlainName(Path.GetFileNameWithoutExtension(socket)) ?? "vm";
            var memory = (await qmp.QueryMemorySizeSummaryAsync(ct)).BaseMemory;
            var machine = await QomStringAsync(qmp, "type", ct) ?? "pc";
            var spec = new VmSpec
            {
                Name = name,
                MemoryBytes = memory,
                Machine = machine.EndsWith("-machine", StringComparison.Ordinal) ? machine[..^"-machine".Length] : machine,
                Kernel = Empty(await QomStringAsync(qmp, "kernel", ct)),
                Initrd = Empty(await QomStringAsync(qmp, "initrd", ct)),
                Append = Empty(await QomStringAsync(qmp, "append", ct)),
                Accelerator = await UsesKvmAsync(qmp, ct) ? Accelerator.Kvm : Accelerator.Tcg,
                QemuPath = QemuBinary(pid),
                ExtraArguments = await CpuCountAsync(qmp, ct) is > 1 and var cpus ? ["-smp", cpus.ToString(System.Globalization.CultureInfo.InvariantCulture)] : [],
            };
            return new VmRecord
            {
                Name = name,
                Pid = pid,
                MemoryBytes = memory,
                Machine = spec.Machine,
                QemuPath = spec.QemuPath ?? "",
                ControlSocket = socket,
                QuerySocket = socket,
                SerialLog = "",
                CommandLine = [],
                Foreign = true,
                TunnelDirectory = runDirectory.Path,
                // Drives are attached in ways we cannot repeat from QMP alone (bus, format, options):
                // no spec then, so nothing starts a look-alike that would fail to load the stream.
                Spec = drives.Count > 0 ? null : spec,
                ForeignDrives = drives,
            };
        }
    }

    /// <summary>The image files of the drives that hold media (an empty CD-ROM is not one).</summary>
    private static async Task<IReadOnlyList<string>> DrivesAsync(QmpClient qmp, CancellationToken ct)
    {
        var files = new List<string>();
        foreach (var block in (await qmp.ExecuteAsync("query-block", null, null, ct)).EnumerateArray())
        {
            if (QmpJson.TryGet(block, "inserted", out var inserted) && QmpJson.GetString(inserted, "file") is { Length: > 0 } file)
            {
                files.Add(file);
            }
        }

        return files;
    }

    private static async Task<string?> QomStringAsync(QmpClient qmp, string property, CancellationToken ct)
    {
        try
        {
            var value = await qmp.ExecuteAsync("qom-get", new Dictionary<string, object> { ["path"] = "/machine", ["property"] = property }, null, ct);
            return value.ValueKind == JsonValueKind.String ? value.GetString() : null;
        }
        catch (QmpCommandException)
        {
            return null; // a machine without that property (no direct kernel boot there)
        }
    }

    private static async Task<bool> UsesKvmAsync(QmpClient qmp, CancellationToken ct)
    {
        var kvm = await qmp.ExecuteAsync("query-kvm", null, null, ct);
        return kvm.TryGetProperty("enabled", out var enabled) && enabled.ValueKind == JsonValueKind.True;
    }

    private static async Task<int> CpuCountAsync(QmpClient qmp, CancellationToken ct) =>
        (await qmp.ExecuteAsync("query-cpus-fast", null, null, ct)).GetArrayLength();

    /// <summary>The QEMU binary of a process, if the kernel lets us read it.</summary>
    private static string? QemuBinary(int pid)
    {
        try
        {
            return pid > 0 ? new FileInfo($"/proc/{pid}/exe").LinkTarget : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    private static string? Empty(string? value) => string.IsNullOrEmpty(value) ? null : value;

    /// <summary>A name usable for our own files: a QEMU -name may hold anything.</summary>
    private static string? PlainName(string? name) =>
        string.IsNullOrWhiteSpace(name) || name.IndexOfAny(['/', '\0', ' ', ',']) >= 0 || name is "." or ".." ? null : name;
}
