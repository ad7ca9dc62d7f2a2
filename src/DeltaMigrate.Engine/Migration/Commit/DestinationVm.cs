using System.Diagnostics;
using DeltaMigrate.Engine.Qmp;
using DeltaMigrate.Engine.Vm;
using Microsoft.Extensions.Logging;

namespace DeltaMigrate.Engine.Migration.Commit;

/// <summary>
/// The waiting VM of a migration, through its monitor: the checks before any byte moves, the wait
/// until its QEMU has loaded the stream, the commit that runs it, and the kill that removes it.
/// Shared by the one-host path and Receive-KvmVM, so both ends apply the same rules.
/// </summary>
public sealed class DestinationVm : IAsyncDisposable
{
    private static readonly TimeSpan QuitGrace = TimeSpan.FromSeconds(10);

    private readonly QmpClient _qmp;
    private readonly ILogger _logger;
    private readonly int? _pid;

    private DestinationVm(QmpClient qmp, string name, int? pid, bool holdsForCommit, ILogger logger)
    {
        _qmp = qmp;
        Name = name;
        _pid = pid;
        HoldsForCommit = holdsForCommit;
        _logger = logger;
    }

    public string Name { get; }

    /// <summary>QEMU will not run the guest by itself once the stream is loaded (started with -S, or told by <see cref="EnsureWaitingAsync"/>).</summary>
    public bool HoldsForCommit { get; private set; }

    /// <summary>Connects to the control monitor of a VM the run directory knows, or of a foreign one (<see cref="ForeignVm"/>).</summary>
    public static async Task<DestinationVm> ConnectAsync(VmRecord record, ILogger logger, CancellationToken ct)
    {
        QmpClient qmp;
        try
        {
            qmp = await QmpClient.ConnectUnixAsync(record.ControlSocket, logger, TimeSpan.FromSeconds(10), ct);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            throw new EngineException("VMNotReachable", ErrorKind.ConnectionError,
                $"Cannot reach the QMP monitor of VM '{record.Name}' at {record.ControlSocket}: {e.Message}. Check that the VM runs (Get-KvmVM) and that no other client holds its monitor.",
                e)
            { Target = record.Name };
        }

        return new DestinationVm(qmp, record.Name, record.Pid > 0 ? record.Pid : null, record.HoldsForCommit, logger);
    }

    /// <summary>What this VM is (memory, machine type, QEMU version), for the other side to compare.</summary>
    public async Task<VmDescription> DescribeAsync(CancellationToken ct) => await DescribeAsync(_qmp, Name, ct);

    public static async Task<VmDescription> DescribeAsync(QmpClient qmp, string name, CancellationToken ct)
    {
        var memory = (await qmp.QueryMemorySizeSummaryAsync(ct)).BaseMemory;
        var type = await qmp.ExecuteAsync("qom-get", new Dictionary<string, object> { ["path"] = "/machine", ["property"] = "type" }, null, ct);
        var machine = type.ValueKind == System.Text.Json.JsonValueKind.String ? type.GetString()! : "unknown";
        var version = (await qmp.QueryVersionAsync(ct)).Qemu.ToString(3);
        return new VmDescription(name, memory, machine, version);
    }

    /// <summary>
    /// Refuses, with the fix, a destination that is not waiting or differs from the source where
    /// QEMU would refuse the stream (memory size, machine type); holds it for the commit.
    /// </summary>
    public async Task<VmDescription> CheckAsync(VmDescription source, CancellationToken ct)
    {
        await EnsureWaitingAsync(source.Name, ct);
        var mine = await DescribeAsync(ct);
        if (mine.MemoryBytes != source.MemoryBytes)
        {
            throw new EngineException("MemorySizeMismatch", ErrorKind.InvalidArgument,
                $"Destination VM '{Name}' has {mine.MemoryBytes / (1024 * 1024)} MiB of memory but '{source.Name}' has {source.MemoryBytes / (1024 * 1024)} MiB; start the destination with -Memory {source.MemoryBytes / (1024 * 1024)}MB.")
            { Target = Name };
        }

        if (!string.Equals(mine.Machine, source.Machine, StringComparison.Ordinal))
        {
            throw new EngineException("MachineTypeMismatch", ErrorKind.InvalidArgument,
                $"Destination VM '{Name}' is a '{mine.MachineName}' machine (QEMU {mine.QemuVersion}) but '{source.Name}' is '{source.MachineName}' (QEMU {source.QemuVersion}); QEMU would refuse the stream. Start the destination with -Machine {source.MachineName}.")
            { Target = Name };
        }

        return mine;
    }

    /// <summary>
    /// Refuses a VM that is not waiting for a migration, and makes sure QEMU will not run the guest
    /// by itself once the stream is loaded: a QEMU started without -S (one we did not start) would,
    /// and a `stop` while it waits clears that (QEMU's autostart), so it too waits for the commit.
    /// </summary>
    public async Task EnsureWaitingAsync(string? sourceName, CancellationToken ct)
    {
        var status = await _qmp.QueryStatusAsync(ct);
        if (status.Status != "inmigrate")
        {
            throw new EngineException("DestinationNotWaiting", ErrorKind.InvalidState,
                $"Destination VM '{Name}' is '{status.Status}', not waiting for a migration. Start it with Start-KvmVM -Incoming" +
                (sourceName is null ? "" : $" and the same -Memory and -Machine as '{sourceName}'") +
                " (a QEMU you start yourself needs -incoming defer).")
            { Target = Name };
        }

        if (!HoldsForCommit)
        {
            await _qmp.StopAsync(ct);
            HoldsForCommit = true;
            _logger.LogInformation("Destination VM {Name} was started without -S: told it to stay paused after loading, until the commit", Name);
        }
    }

    /// <summary>migrate-incoming on <paramref name="uri"/>; returns the port QEMU picked for tcp:HOST:0, else null.</summary>
    public async Task<int?> ListenAsync(string uri, CancellationToken ct)
    {
        await _qmp.MigrateSetCapabilitiesAsync(new Dictionary<string, bool> { ["events"] = true }, ct);
        // QEMU 9.1+ can stay up after a stream it cannot load, so its reason reaches us (older ones
        // exit and print it on their stderr); we remove it ourselves then.
        var arguments = new Dictionary<string, object> { ["uri"] = uri };
        if ((await _qmp.QueryVersionAsync(ct)).Qemu >= new Version(9, 1))
        {
            arguments["exit-on-error"] = false;
        }

        await _qmp.ExecuteAsync("migrate-incoming", arguments, null, ct);
        if (!uri.StartsWith("tcp:", StringComparison.Ordinal))
        {
            return null;
        }

        var incoming = await _qmp.QueryMigrateAsync(ct);
        if (QmpJson.TryGet(incoming.Raw, "socket-address", out var addresses))
        {
            foreach (var address in addresses.EnumerateArray())
            {
                if (int.TryParse(QmpJson.GetString(address, "port"), out var port) && port != 0)
                {
                    return port;
                }
            }
        }

        throw new EngineException("DestinationNotWaiting", ErrorKind.ProtocolError,
            $"Destination VM '{Name}' did not report the port it listens on for the migration.")
        { Target = Name };
    }

    /// <summary>
    /// Waits until QEMU has loaded the complete stream and holds the guest paused; throws
    /// DestinationLoadFailed with QEMU's reason when it failed or exited instead.
    /// </summary>
    public async Task WaitLoadedAsync(TimeSpan timeout, CancellationToken ct)
    {
        var clock = Stopwatch.StartNew();
        string reason;
        try
        {
            while (true)
            {
                var migration = await _qmp.QueryMigrateAsync(ct);
                var status = await _qmp.QueryStatusAsync(ct);
                if (migration.Status == "completed" && status.Status == "paused")
                {
                    return;
                }

                if (migration.Status == "failed" || status.Status is not ("inmigrate" or "paused" or "restore-vm"))
                {
                    reason = $"QEMU reports the incoming migration '{migration.Status}' and the VM '{status.Status}'" +
                        (migration.ErrorDescription is { } desc ? $": {desc}" : "");
                    break;
                }

                if (clock.Elapsed > timeout)
                {
                    reason = $"QEMU had not finished loading the stream after {timeout.TotalSeconds:0} s (still '{migration.Status ?? status.Status}')";
                    break;
                }

                await Task.Delay(TimeSpan.FromMilliseconds(20), ct);
            }
        }
        catch (QmpConnectionClosedException)
        {
            // QEMU exits when it cannot load an incoming stream; its reason goes to its stderr.
            reason = "its QEMU exited while loading the stream (QEMU prints why on its own stderr: most often a device or machine type the source has and it has not)";
        }
        catch (TimeoutException e)
        {
            reason = $"its monitor stopped answering ({e.Message})";
        }

        throw new EngineException("DestinationLoadFailed", ErrorKind.InvalidState,
            $"Destination VM '{Name}' did not load the migration: {reason}.")
        { Target = Name };
    }

    /// <summary>After a broken stream: QEMU's own reason (failed, or exited), or null if it has none.</summary>
    public async Task<string?> FailureReasonAsync()
    {
        try
        {
            // Briefly: a hung QEMU must not hold up the abort.
            using var budget = new CancellationTokenSource(TimeSpan.FromSeconds(3));
            await WaitLoadedAsync(TimeSpan.FromSeconds(2), budget.Token);
            return null;
        }
        catch (EngineException e)
        {
            return e.Message;
        }
        catch (OperationCanceledException)
        {
            return "its monitor does not answer (the QEMU hangs)";
        }
    }

    /// <summary>The commit: runs the guest unless it should stay paused; returns its state.</summary>
    public async Task<string> CommitAsync(bool stayPaused, CancellationToken ct)
    {
        if (!stayPaused)
        {
            await _qmp.ContAsync(ct);
        }

        return (await _qmp.QueryStatusAsync(ct)).Status;
    }

    /// <summary>Removes the destination and confirms it is gone: quit, then SIGKILL if it lingers. Never throws.</summary>
    public async Task<string> KillAsync()
    {
        _logger.LogWarning("Destination VM {Name}: removing it, the source keeps the guest", Name);
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            await _qmp.QuitAsync(timeout.Token);
        }
        catch (Exception e) when (e is QmpException or OperationCanceledException or TimeoutException)
        {
            // Already gone, or hung: the pid check below decides.
        }

        if (_pid is not int pid)
        {
            return await ConfirmClosedAsync() ? "exited" : "unknown";
        }

        var clock = Stopwatch.StartNew();
        while (QemuLauncher.IsAlive(pid) && clock.Elapsed < QuitGrace)
        {
            await Task.Delay(50);
        }

        if (QemuLauncher.IsAlive(pid))
        {
            try
            {
                using var process = Process.GetProcessById(pid);
                process.Kill();
                await process.WaitForExitAsync(new CancellationTokenSource(QuitGrace).Token);
            }
            catch (Exception e) when (e is ArgumentException or InvalidOperationException or OperationCanceledException or System.ComponentModel.Win32Exception)
            {
                // exited meanwhile, or not ours to kill: checked below
            }
        }

        return QemuLauncher.IsAlive(pid) ? "unknown" : "exited";
    }

    private async Task<bool> ConfirmClosedAsync()
    {
        try
        {
            await _qmp.QueryStatusAsync(new CancellationTokenSource(QuitGrace).Token);
            return false;
        }
        catch (QmpConnectionClosedException)
        {
            return true;
        }
        catch (Exception)
        {
            return false;
        }
    }

    /// <summary>Its state now, or "exited".</summary>
    public async Task<string> StateAsync()
    {
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            return (await _qmp.QueryStatusAsync(timeout.Token)).Status;
        }
        catch (Exception e) when (e is QmpException or OperationCanceledException or TimeoutException)
        {
            return "exited";
        }
    }

    public ValueTask DisposeAsync() => _qmp.DisposeAsync();
}
