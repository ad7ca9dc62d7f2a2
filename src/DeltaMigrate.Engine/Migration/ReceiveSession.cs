using System.Net;
using DeltaMigrate.Engine.Logging;
using DeltaMigrate.Engine.Migration.Commit;
using DeltaMigrate.Engine.Transport;
using DeltaMigrate.Engine.Tunnel;
using DeltaMigrate.Engine.Vm;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace DeltaMigrate.Engine.Migration;

/// <summary>
/// The destination host's side of a migration (Receive-KvmVM), in every mode: a waiting VM, a tunnel
/// listener with a fresh token, and the destination's half of the commit protocol once a sender is in.
/// </summary>
public sealed class ReceiveSession(VmRecord record, IPEndPoint listen, MigrationToken? token, ILogger? logger = null)
{
    private readonly ILogger _logger = logger ?? NullLogger.Instance;

    /// <summary>The same, logging to a host's <see cref="IEngineLogSink"/> (the cmdlets: no logging types cross into PowerShell's load context).</summary>
    public ReceiveSession(VmRecord record, IPEndPoint listen, MigrationToken? token, IEngineLogSink log)
        : this(record, listen, token, SinkLogger.From(log))
    {
    }

    /// <summary>The tunnel's idle deadline; the same meaning as <see cref="MigrationOptions.LinkTimeout"/>.</summary>
    public TimeSpan LinkTimeout { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>
    /// <paramref name="acceptTimeout"/> limits only the wait for an authenticated sender; once one
    /// is in, the migration runs to its end (Ctrl-C still aborts it and removes the destination).
    /// </summary>
    public async Task<ReceiveResult> RunAsync(Action<ReceiverReady> ready, TimeSpan? acceptTimeout, CancellationToken cancellationToken)
    {
        await using var destination = await DestinationVm.ConnectAsync(record, _logger, cancellationToken);
        await destination.EnsureWaitingAsync(null, cancellationToken);

        var secret = token ?? MigrationToken.Create();
        await using var listener = TunnelListener.Start(listen, secret, _logger, new TunnelOptions().WithLinkTimeout(LinkTimeout));
        var shown = listener.LocalEndpoint.Address.Equals(IPAddress.Any) || listener.LocalEndpoint.Address.Equals(IPAddress.IPv6Any)
            ? $"{Dns.GetHostName()}:{listener.LocalEndpoint.Port}"
            : listener.LocalEndpoint.ToString();
        ready(new ReceiverReady(record.Name, shown, secret.ToString()));
        _logger.LogInformation("Waiting for {VM}'s migration on {Endpoint}", record.Name, listener.LocalEndpoint);

        IncomingTunnel tunnel;
        using (var wait = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken))
        {
            if (acceptTimeout is { } limit)
            {
                wait.CancelAfter(limit);
            }

            try
            {
                tunnel = await listener.AcceptAsync(wait.Token);
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                throw new EngineException("ReceiveTimedOut", ErrorKind.OperationTimeout,
                    $"No migration arrived for '{record.Name}' within {acceptTimeout!.Value.TotalSeconds:0} s; the VM is still waiting.")
                { Target = record.Name };
            }
        }

        await using (tunnel)
        {
            // QEMU's own transport (None, Native) listens where our tunnel does, on a port QEMU picks.
            var incoming = new IncomingMigration(destination, record.StaysPaused,
                RunDirectory.ForTunnelOf(record).IncomingSocket(record.Name), listener.LocalEndpoint.Address, _logger)
            {
                CommitTimeout = LinkTimeout * 4,
            };
            return await incoming.RunAsync(tunnel, cancellationToken);
        }
    }
}
