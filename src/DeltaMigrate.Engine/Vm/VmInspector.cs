using DeltaMigrate.Engine.Logging;
using DeltaMigrate.Engine.Qmp;
using Microsoft.Extensions.Logging;

namespace DeltaMigrate.Engine.Vm;

/// <summary>Asks a VM's monitor for its state, quickly, without holding the control socket.</summary>
public static class VmInspector
{
    private static readonly TimeSpan QueryTimeout = TimeSpan.FromSeconds(5);

    /// <summary>The same, logging to a host's <see cref="IEngineLogSink"/> (the cmdlets: no logging types cross into PowerShell's load context).</summary>
    public static Task<VmInfo> InspectAsync(VmRecord record, IEngineLogSink log, CancellationToken cancellationToken) =>
        InspectAsync(record, SinkLogger.From(log), cancellationToken);

    public static async Task<VmInfo> InspectAsync(VmRecord record, ILogger? logger, CancellationToken cancellationToken)
    {
        var info = new VmInfo
        {
            Name = record.Name,
            State = "exited",
            MemoryBytes = record.MemoryBytes,
            Pid = record.Pid,
            Machine = record.Machine,
            QmpPath = record.ControlSocket,
            QuerySocket = record.QuerySocket,
            SerialLog = record.SerialLog,
            QemuPath = record.QemuPath,
            StartedPaused = record.StaysPaused,
        };
        if (!QemuLauncher.IsAlive(record.Pid))
        {
            return info;
        }

        var live = await InspectSocketAsync(record.QuerySocket, logger, cancellationToken);
        return info with { State = live.State, QemuVersion = live.QemuVersion, MemoryBytes = live.MemoryBytes > 0 ? live.MemoryBytes : record.MemoryBytes };
    }

    /// <summary>The same, logging to a host's <see cref="IEngineLogSink"/> (the cmdlets: no logging types cross into PowerShell's load context).</summary>
    public static Task<VmInfo> InspectSocketAsync(string socket, IEngineLogSink log, CancellationToken cancellationToken) =>
        InspectSocketAsync(socket, SinkLogger.From(log), cancellationToken);

    /// <summary>A VM we did not start, known only by a QMP socket (held only while it answers).</summary>
    public static async Task<VmInfo> InspectSocketAsync(string socket, ILogger? logger, CancellationToken cancellationToken)
    {
        try
        {
            await using var qmp = await QmpClient.ConnectUnixAsync(socket, logger, QueryTimeout, cancellationToken);
            var status = await qmp.QueryStatusAsync(cancellationToken);
            var memory = await qmp.QueryMemorySizeSummaryAsync(cancellationToken);
            var name = await qmp.QueryNameAsync(cancellationToken);
            return new VmInfo
            {
                Name = name ?? Path.GetFileNameWithoutExtension(socket),
                State = status.Status,
                MemoryBytes = memory.BaseMemory,
                QemuVersion = qmp.QemuVersion.ToString(),
                Pid = qmp.PeerProcessId,
                QmpPath = socket,
                Foreign = true,
            };
        }
        catch (TimeoutException e)
        {
            // Connected but no greeting: QMP serves one client, and another one (a migration, the VM's manager) has it.
            logger?.LogDebug("No greeting from {Socket}: {Error}", socket, e.Message);
            return new VmInfo { Name = Path.GetFileNameWithoutExtension(socket), State = "busy", QmpPath = socket, Foreign = true };
        }
        catch (Exception e) when (e is QmpException or IOException or System.Net.Sockets.SocketException)
        {
            logger?.LogDebug("No answer from {Socket}: {Error}", socket, e.Message);
            return new VmInfo { Name = Path.GetFileNameWithoutExtension(socket), State = "unreachable", QmpPath = socket, Foreign = true };
        }
    }
}
