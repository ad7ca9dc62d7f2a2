using System.Net;
using DeltaMigrate.Engine.Transport;
using DeltaMigrate.Engine.Tunnel;
using DeltaMigrate.Engine.Vm;
using Microsoft.Extensions.Logging;

namespace DeltaMigrate.Engine.Migration.Commit;

/// <summary>
/// The sender's line to the destination's half: an authenticated tunnel to Receive-KvmVM on another
/// host, or, for a VM on this host, to an <see cref="IncomingMigration"/> this process runs itself,
/// so one host and two follow the same protocol. Carries the data in Delta and Lz4 modes, and the
/// prepare, finish and commit messages in every mode.
/// </summary>
internal sealed class DestinationLink : IAsyncDisposable
{
    // Every byte buffered between the QEMUs is downtime in the final copy: small frames, few in flight.
    private static readonly TunnelOptions SenderOptions = new() { FrameSize = 64 * 1024, MaxFramesInFlight = 4 };

    private readonly CancellationTokenSource _stopping = new();
    private readonly List<IAsyncDisposable> _owned = [];

    private DestinationLink(string host)
    {
        Host = host;
    }

    public TunnelSender Control { get; private set; } = null!;

    /// <summary>The destination host as the source QEMU reaches it (for QEMU's own transport).</summary>
    public string Host { get; }

    /// <summary>Only for a destination on this host: the half we run, which reports how it ended.</summary>
    public Task<ReceiveResult>? Local { get; private set; }

    public static async Task<DestinationLink> ConnectRemoteAsync(RemoteTarget target, MigrationToken token, MigrationOptions options, ILogger logger, CancellationToken ct)
    {
        var link = new DestinationLink(target.Host);
        link.Control = await TunnelSender.ConnectAsync(target.Host, target.Port, token, TunnelOptionsFor(options), logger, ct);
        return link;
    }

    // Delta picks its wire codec per frame (CodecChooser); Lz4 stays LZ4 only, for comparison.
    private static TunnelOptions TunnelOptionsFor(MigrationOptions options) =>
        SenderOptions.WithLinkTimeout(options.LinkTimeout) with
        {
            BandwidthBytesPerSecond = options.Bandwidth,
            SharedBandwidth = options.SharedBandwidth,
            Adaptive = options.Compress == CompressionMode.Delta,
        };

    /// <summary>Starts the destination's half for a VM on this host, then connects to it like any sender.</summary>
    public static async Task<DestinationLink> StartLocalAsync(LocalVmTarget target, MigrationOptions options, ILogger logger, CancellationToken ct)
    {
        var meeting = options.LocalLink;
        var link = new DestinationLink(meeting.Connect.ToString());
        try
        {
            var destination = await DestinationVm.ConnectAsync(target.Record, logger, ct);
            link._owned.Add(destination);
            var token = MigrationToken.Create();
            var listener = TunnelListener.Start(new IPEndPoint(meeting.Listen, 0), token, logger, TunnelOptionsFor(options));
            link._owned.Add(listener);
            // QEMU's own transport meets in the run directory (a unix socket only its owner reaches),
            // unless the benchmark's delay line asks for the TCP link between two addresses.
            var incoming = new IncomingMigration(destination, target.Record.StaysPaused,
                RunDirectory.ForTunnelOf(target.Record).IncomingSocket(target.Name),
                meeting == LocalLink.Loopback ? null : meeting.Listen, logger);
            var stopping = link._stopping.Token;
            link.Local = Task.Run(async () =>
            {
                await using var tunnel = await listener.AcceptAsync(stopping);
                return await incoming.RunAsync(tunnel, stopping);
            }, CancellationToken.None);
            link.Control = await TunnelSender.ConnectAsync(meeting.Connect.ToString(), listener.LocalEndpoint.Port, token,
                TunnelOptionsFor(options), logger, ct);
            return link;
        }
        catch
        {
            await link.DisposeAsync();
            throw;
        }
    }

    /// <summary>Prepare: the destination checks itself against <paramref name="source"/> and says where QEMU listens.</summary>
    public async Task<PreparedReply> PrepareAsync(DataPath path, VmDescription source, Guid migrationId, CancellationToken ct)
    {
        try
        {
            var reply = await Control.PrepareAsync(CommitJson.Write(new PrepareRequest(path, source, migrationId)), ct);
            return CommitJson.Read<PreparedReply>(reply, "Prepared");
        }
        catch (TunnelException) when (Local is not null)
        {
            // On one host the destination's own error (MemorySizeMismatch, ...) says it best.
            await Local.WaitAsync(TimeSpan.FromSeconds(10), CancellationToken.None);
            throw;
        }
        catch (TunnelException e) when (e.ErrorId == TunnelException.RemoteError)
        {
            // The receiver's own id (MemorySizeMismatch, MachineTypeMismatch, ...) when it sent one.
            var text = e.Message.Replace("The receiver failed: ", "", StringComparison.Ordinal);
            var refusal = CommitJson.ParseRefusal(text);
            throw new EngineException(refusal?.Id ?? "DestinationRefused", ErrorKind.InvalidState,
                $"The destination refused the migration: {refusal?.Message ?? text}", e);
        }
    }

    /// <summary>
    /// After the sender aborted or the link broke: for a destination on this host, waits until its
    /// half has removed it (confirmed dead); on another host, Receive-KvmVM does so on its own.
    /// Returns the destination's state as far as this side can know it.
    /// </summary>
    public async Task<string> ConfirmGoneAsync()
    {
        if (Local is null)
        {
            return "removed by the receiver";
        }

        try
        {
            await Local.WaitAsync(TimeSpan.FromSeconds(60));
            return "running"; // it committed after all: never after an abort, since Commit was not sent
        }
        catch (MigrationInDoubtException)
        {
            return "paused";
        }
        catch (TimeoutException)
        {
            return "unknown (its half did not finish in time; it can never run without a commit)";
        }
        catch (Exception)
        {
            return "exited";
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (Control is not null)
        {
            await Control.DisposeAsync();
        }

        await _stopping.CancelAsync();
        if (Local is not null)
        {
            try
            {
                await Local.WaitAsync(TimeSpan.FromSeconds(30));
            }
            catch (Exception)
            {
                // reported by whoever waited for it; here only observed
            }
        }

        for (var i = _owned.Count - 1; i >= 0; i--)
        {
            await _owned[i].DisposeAsync();
        }

        _stopping.Dispose();
    }
}
