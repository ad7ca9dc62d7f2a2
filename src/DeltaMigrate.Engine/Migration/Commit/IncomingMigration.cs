using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using DeltaMigrate.Engine.Tunnel;
using Microsoft.Extensions.Logging;

namespace DeltaMigrate.Engine.Migration.Commit;

/// <summary>
/// The destination's half of every migration, on one host or two: prepare (check the waiting VM
/// against the source), receive (our tunnel's data, or QEMU's own transport beside it), finish
/// (QEMU loaded the stream and holds the guest paused: answer Loaded), and run the guest only on
/// the sender's Commit. Before Loaded any failure removes the destination, so the sender may resume
/// its source; once Loaded, a lost sender leaves the destination paused and in doubt, because only
/// the sender knows whether it resumed its source.
/// </summary>
public sealed class IncomingMigration(DestinationVm destination, bool stayPaused, string incomingSocket, IPAddress? qemuTcpListen, ILogger logger)
{
    /// <summary>How long QEMU may take to load what arrived after the stream ended.</summary>
    public TimeSpan LoadTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>How long the sender may take to commit after Loaded (it answers at once unless something broke).</summary>
    public TimeSpan CommitTimeout { get; init; } = TimeSpan.FromSeconds(60);

    public IncomingPhase Phase { get; private set; } = IncomingPhase.Preparing;

    public async Task<ReceiveResult> RunAsync(IncomingTunnel tunnel, CancellationToken ct)
    {
        var clock = Stopwatch.StartNew();
        var started = DateTimeOffset.UtcNow;
        var prepare = CommitJson.Read<PrepareRequest>(await tunnel.ExpectAsync(TunnelFrame.Prepare, ct), "Prepare");
        PreparedReply prepared;
        try
        {
            var source = prepare.Source ?? throw new EngineException("TunnelProtocolError", ErrorKind.ProtocolError, "The sender did not describe its VM.");
            var mine = await destination.CheckAsync(source, ct);
            var tcp = prepare.Path == DataPath.Qemu && qemuTcpListen is not null;
            if (!tcp)
            {
                File.Delete(incomingSocket);
            }

            var port = await destination.ListenAsync(
                tcp ? $"tcp:{RemoteTarget.FormatUriHost(qemuTcpListen!.ToString())}:0" : $"unix:{incomingSocket}", ct);
            prepared = new PreparedReply(mine, tcp ? null : incomingSocket, port);
        }
        catch (EngineException e)
        {
            // Nothing has moved: the destination is still only waiting. Tell the sender why.
            await tunnel.TrySendErrorAsync(CommitJson.Refusal(e));
            throw;
        }

        await tunnel.SendAsync(TunnelFrame.Prepared, CommitJson.Write(prepared), ct);
        try
        {
            Phase = IncomingPhase.Receiving;
            var stats = prepare.Path == DataPath.Tunnel ? await PumpIntoQemuAsync(tunnel, ct) : null;
            if (stats is null)
            {
                await tunnel.ExpectAsync(TunnelFrame.End, ct);
            }

            Phase = IncomingPhase.Loading;
            await destination.WaitLoadedAsync(LoadTimeout, ct);
            Phase = IncomingPhase.AwaitingCommit;
            await tunnel.SendAsync(TunnelFrame.Loaded, ReadOnlyMemory<byte>.Empty, ct);
            logger.LogInformation("{VM}: loaded the complete state; waiting for the sender's commit", destination.Name);

            using var commitDeadline = CancellationTokenSource.CreateLinkedTokenSource(ct);
            commitDeadline.CancelAfter(CommitTimeout);
            await tunnel.ExpectAsync(TunnelFrame.Commit, commitDeadline.Token);
            Phase = IncomingPhase.Committed;
            var state = await destination.CommitAsync(stayPaused, CancellationToken.None);
            await TrySendRunningAsync(tunnel, state);
            logger.LogInformation("{VM}: committed, now {State}", destination.Name, state);
            return new ReceiveResult
            {
                VMName = destination.Name,
                Status = MigrationStatus.Completed,
                DestinationState = state,
                TotalTime = clock.Elapsed,
                StreamBytes = stats?.PayloadBytes ?? 0,
                WireBytes = tunnel.Stats.WireBytes,
                MigrationId = prepare.MigrationId,
                StartTime = started,
                EndTime = DateTimeOffset.UtcNow,
            };
        }
        catch (Exception e) when (Phase == IncomingPhase.AwaitingCommit && IsLostSender(e, ct))
        {
            // The sender went silent after Loaded: it may have resumed its source (it never saw Loaded)
            // or be waiting for our answer to a Commit that was lost. Only the admin can tell.
            var reason = e is OperationCanceledException ? $"no commit within {CommitTimeout.TotalSeconds:0} s" : e.Message;
            throw new MigrationInDoubtException(
                $"VM '{destination.Name}' holds the complete state, paused, but the sender went away before committing ({reason}). " +
                $"If the source VM '{prepare.Source?.Name}' runs on its host (Get-KvmVM there), remove this copy: Stop-KvmVM {destination.Name} -Force. " +
                $"If the source is paused (postmigrate), finish here: Resume-KvmVM {destination.Name}, then Stop-KvmVM {prepare.Source?.Name} -Force on the source host.",
                destination.Name, null);
        }
        catch (Exception e) when (Phase != IncomingPhase.Committed)
        {
            // Before Loaded (or the sender aborted): remove the destination so the sender may resume its source.
            // A stream QEMU refused shows up here as a broken socket; QEMU's own view says why.
            var reason = Phase == IncomingPhase.Receiving && !IncomingTunnel.SenderGone(e)
                ? await destination.FailureReasonAsync() ?? e.Message
                : e.Message;
            if (!IncomingTunnel.SenderGone(e))
            {
                await tunnel.TrySendErrorAsync($"Destination VM '{destination.Name}' failed while {Describe(Phase)}: {reason}");
            }

            var state = await destination.KillAsync();
            throw new EngineException("MigrationFailed", ErrorKind.OperationStopped,
                $"The migration into '{destination.Name}' failed while {Describe(Phase)}: {reason}. The destination VM was removed ({state}); the source keeps the guest.", e)
            { Target = destination.Name };
        }
    }

    private static bool IsLostSender(Exception e, CancellationToken ct) =>
        !ct.IsCancellationRequested && e is OperationCanceledException or TunnelException { ErrorId: TunnelException.Closed or TunnelException.IdleTimeout };

    private static string Describe(IncomingPhase phase) => phase switch
    {
        IncomingPhase.Receiving => "receiving the stream",
        IncomingPhase.Loading => "loading the stream",
        IncomingPhase.AwaitingCommit => "waiting for the commit",
        _ => "preparing",
    };

    /// <summary>The answer to Commit; if it is lost, the sender reports the doubt (it knows we had Commit).</summary>
    private async Task TrySendRunningAsync(IncomingTunnel tunnel, string state)
    {
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            await tunnel.SendAsync(TunnelFrame.Running, CommitJson.Write(new RunningReply(state)), timeout.Token);
        }
        catch (Exception e)
        {
            logger.LogWarning("{VM}: committed and {State}, but the sender did not get the answer: {Error}", destination.Name, state, e.Message);
        }
    }

    /// <summary>Our tunnel's data into QEMU's incoming unix socket (opened only now, for an authenticated sender).</summary>
    private async Task<TunnelStats> PumpIntoQemuAsync(IncomingTunnel tunnel, CancellationToken ct)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(incomingSocket), ct);
        }
        catch
        {
            socket.Dispose();
            throw;
        }

        await using var toQemu = new NetworkStream(socket, ownsSocket: true);
        return await tunnel.PumpAsync(toQemu, ct);
    }
}
