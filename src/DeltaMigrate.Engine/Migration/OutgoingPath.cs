using DeltaMigrate.Engine.Migration.Commit;
using DeltaMigrate.Engine.Tunnel;
using Microsoft.Extensions.Logging;

namespace DeltaMigrate.Engine.Migration;

/// <summary>
/// How the source QEMU's stream reaches the destination: what differs between our tunnel and
/// QEMU's own transport. Everything else (prepare, finish, commit) is the session's, the same for both.
/// </summary>
internal abstract class OutgoingPath : IAsyncDisposable
{
    /// <summary>Where the source QEMU migrates to.</summary>
    public abstract string QemuUri { get; }

    /// <summary>Our tunnel's pipeline, when the stream goes through it.</summary>
    public virtual TunnelSource? Pipeline => null;

    public virtual void Start()
    {
    }

    /// <summary>The source completed: waits for the destination's Loaded (throws when it failed instead).</summary>
    public abstract Task FinishAsync(CancellationToken ct);

    /// <summary>The migration is cancelled on purpose: a cut stream is expected.</summary>
    public virtual void ExpectCancel()
    {
    }

    public virtual ValueTask DisposeAsync() => ValueTask.CompletedTask;

    public static OutgoingPath Create(DataPath path, DestinationLink link, PreparedReply prepared, string outgoingSocket,
        bool delta, long cacheBytes, ILogger logger) => path switch
        {
            DataPath.Tunnel => new TunnelPath(TunnelSource.Create(outgoingSocket, link.Control, delta, cacheBytes, logger)),
            _ => new QemuTransportPath(link.Control, prepared.QemuUnixPath is { } unix ? $"unix:{unix}"
                : $"tcp:{RemoteTarget.FormatUriHost(link.Host)}:{prepared.QemuPort ?? throw new EngineException("TunnelProtocolError", ErrorKind.ProtocolError, "The destination did not say where its QEMU listens.")}"),
        };
}

/// <summary>Delta and Lz4: QEMU migrates into our pipeline, which carries the stream and ends with End and Loaded.</summary>
internal sealed class TunnelPath(TunnelSource pipeline) : OutgoingPath
{
    private readonly CancellationTokenSource _stopping = new();
    private Task? _sending;

    public override string QemuUri => pipeline.QemuUri;

    public override TunnelSource Pipeline => pipeline;

    // The tunnel's own lifetime, not the user's token: on Ctrl-C QEMU is cancelled first (so it
    // reports "cancelled"), and the pipeline ends when QEMU closes its socket.
    public override void Start() => _sending = pipeline.RunAsync(_stopping.Token);

    public override async Task FinishAsync(CancellationToken ct) => await _sending!.WaitAsync(ct);

    public override void ExpectCancel() => pipeline.ExpectCancel();

    public override async ValueTask DisposeAsync()
    {
        await _stopping.CancelAsync();
        await pipeline.DisposeAsync();
        if (_sending is not null)
        {
            try
            {
                await _sending.WaitAsync(TimeSpan.FromSeconds(5));
            }
            catch (Exception)
            {
                // reported by FinishAsync, or the migration ended another way
            }
        }

        _stopping.Dispose();
    }
}

/// <summary>None and Native: QEMU's own stream goes straight to the destination QEMU; the tunnel only says End and hears Loaded.</summary>
internal sealed class QemuTransportPath(TunnelSender control, string uri) : OutgoingPath
{
    public override string QemuUri => uri;

    public override async Task FinishAsync(CancellationToken ct) => await control.CompleteAsync(ct);
}
