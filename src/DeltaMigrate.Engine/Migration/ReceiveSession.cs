using System.Diagnostics;
using System.Net;
using DeltaMigrate.Engine.Delta;
using DeltaMigrate.Engine.Qmp;
using DeltaMigrate.Engine.Transport;
using DeltaMigrate.Engine.Vm;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace DeltaMigrate.Engine.Migration;

/// <summary>What a sender needs: where to connect, and the one-time token.</summary>
public sealed record ReceiverReady(string VMName, string Endpoint, string Token);

/// <summary>The receiving host's view of a finished migration.</summary>
public sealed record ReceiveResult
{
    public required string VMName { get; init; }
    public required MigrationStatus Status { get; init; }
    public required string DestinationState { get; init; }
    public required TimeSpan TotalTime { get; init; }
    public long StreamBytes { get; init; }
    public long WireBytes { get; init; }
}

/// <summary>
/// The destination host's side of a Delta or Lz4 migration (Receive-KvmVM): a VM waiting with
/// -incoming defer, a tunnel listener with a fresh token, and confirmation that the VM runs afterwards.
/// </summary>
public sealed class ReceiveSession(string vmName, string controlSocket, bool expectPaused, IPEndPoint listen, MigrationToken? token, ILogger? logger = null)
{
    private readonly ILogger _logger = logger ?? NullLogger.Instance;

    public async Task<ReceiveResult> RunAsync(Action<ReceiverReady> ready, CancellationToken cancellationToken)
    {
        await using var qmp = await QmpClient.ConnectUnixAsync(controlSocket, _logger, null, cancellationToken);
        var status = await qmp.QueryStatusAsync(cancellationToken);
        if (status.Status != "inmigrate")
        {
            throw new EngineException("DestinationNotWaiting", ErrorKind.InvalidState,
                $"VM '{vmName}' is '{status.Status}', not waiting for a migration. Start it with Start-KvmVM -Incoming.")
            { Target = vmName };
        }

        await qmp.MigrateSetCapabilitiesAsync(new Dictionary<string, bool> { ["events"] = true }, cancellationToken);
        var incoming = new RunDirectory(Path.GetDirectoryName(controlSocket)!).IncomingSocket(vmName);
        File.Delete(incoming);
        await qmp.MigrateIncomingAsync($"unix:{incoming}", cancellationToken);

        var secret = token ?? MigrationToken.Create();
        await using var receiver = DeltaReceiver.Start(listen, secret, incoming, _logger);
        var shown = receiver.Endpoint.Address.Equals(IPAddress.Any) || receiver.Endpoint.Address.Equals(IPAddress.IPv6Any)
            ? $"{Dns.GetHostName()}:{receiver.Endpoint.Port}"
            : receiver.Endpoint.ToString();
        ready(new ReceiverReady(vmName, shown, secret.ToString()));
        _logger.LogInformation("Waiting for {VM}'s migration on {Endpoint}", vmName, receiver.Endpoint);

        var received = Stopwatch.StartNew();
        var stats = await receiver.ReceiveAsync(cancellationToken);
        var clock = Stopwatch.StartNew();
        var state = "unknown";
        try
        {
            while (clock.Elapsed < TimeSpan.FromSeconds(30))
            {
                state = (await qmp.QueryStatusAsync(cancellationToken)).Status;
                if (state == "running" || (state == "paused" && expectPaused))
                {
                    return new ReceiveResult
                    {
                        VMName = vmName,
                        Status = MigrationStatus.Completed,
                        DestinationState = state,
                        TotalTime = received.Elapsed,
                        StreamBytes = stats.PayloadBytes,
                        WireBytes = stats.WireBytes,
                    };
                }

                await Task.Delay(100, cancellationToken);
            }
        }
        catch (QmpException)
        {
            state = "exited";
        }

        throw new EngineException("DestinationNotRunning", ErrorKind.InvalidState,
            $"VM '{vmName}' received the migration but is '{state}' instead of running; the sender resumes its source.")
        { Target = vmName };
    }
}
