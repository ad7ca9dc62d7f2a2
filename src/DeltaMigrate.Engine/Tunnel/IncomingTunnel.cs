using System.Buffers;
using System.Diagnostics;
using DeltaMigrate.Engine.Transport;
using Microsoft.Extensions.Logging;

namespace DeltaMigrate.Engine.Tunnel;

/// <summary>
/// The receiver's end of one authenticated tunnel (from <see cref="TunnelListener.AcceptAsync"/>):
/// control frames both ways, and the data pump into the destination.
/// </summary>
public sealed class IncomingTunnel : IAsyncDisposable
{
    private static readonly TimeSpan ErrorReplyTimeout = TimeSpan.FromSeconds(2);

    private readonly FrameLink _link;
    private readonly ILogger _logger;
    private readonly TimeSpan _destinationTimeout;

    internal IncomingTunnel(System.IO.Stream stream, SessionKeys keys, TunnelOptions options, ILogger logger)
    {
        _logger = logger;
        // While a write into the destination waits, nothing is read from the sender: bound it too.
        _destinationTimeout = options.IdleTimeout * 4;
        _link = new FrameLink(stream, keys.ReceiverToSender, keys.SenderToReceiver, options, Stats);
    }

    public TunnelStats Stats { get; } = new();

    /// <summary>The next control frame; an Error from the sender is thrown as RemoteError.</summary>
    internal async Task<(FrameType Type, byte[] Payload)> ReadControlAsync(CancellationToken ct)
    {
        Frame frame = await _link.ReadAsync(ct);
        return frame.Type switch
        {
            FrameType.Error => throw TunnelException.Remote($"The sender failed: {Protocol.DecodeErrorMessage(frame.Payload.Span)}"),
            FrameType.Prepare or FrameType.End or FrameType.Commit => (frame.Type, frame.Payload.ToArray()),
            _ => throw TunnelException.Corruption($"The sender sent an unexpected {frame.Type} frame."),
        };
    }

    /// <summary>Reads the next control frame and demands <paramref name="expected"/>; returns its payload.</summary>
    public async Task<byte[]> ExpectAsync(TunnelFrame expected, CancellationToken ct)
    {
        var (type, payload) = await ReadControlAsync(ct);
        return type == (FrameType)expected ? payload
            : throw TunnelException.Corruption($"The sender sent {type} where {expected} was expected.");
    }

    public Task SendAsync(TunnelFrame type, ReadOnlyMemory<byte> payload, CancellationToken ct) =>
        SendAsync((FrameType)type, payload, ct);

    internal Task SendAsync(FrameType type, ReadOnlyMemory<byte> payload, CancellationToken ct) =>
        _link.SendControlAsync(type, payload, ct);

    /// <summary>Relays bytes the destination QEMU wrote back (its return path) to the sender, which hands them to the source QEMU.</summary>
    public Task SendReturnAsync(ReadOnlyMemory<byte> data, CancellationToken ct) => _link.SendControlAsync(FrameType.Return, data, ct);

    /// <summary>True when the failure is the sender's doing or the link's, so there is nobody to tell.</summary>
    public static bool SenderGone(Exception ex) =>
        ex is OperationCanceledException or TunnelException { ErrorId: TunnelException.RemoteError or TunnelException.Closed or TunnelException.IdleTimeout };

    /// <summary>Best effort: tells the sender why this side gives up.</summary>
    public Task TrySendErrorAsync(string message) => _link.TrySendErrorAsync(message, ErrorReplyTimeout);

    /// <summary>
    /// Writes every Data payload, in order, to <paramref name="destination"/> until the sender's End
    /// frame, then flushes it. Anything else than Data, End or a keepalive fails the tunnel. The
    /// caller tells the sender why (<see cref="TrySendErrorAsync"/>): it may know better (QEMU's reason).
    /// </summary>
    public async Task<TunnelStats> PumpAsync(System.IO.Stream destination, CancellationToken ct)
    {
        byte[]? raw = null;
        using var decoder = new FrameDecoder();
        try
        {
            while (true)
            {
                Frame frame = await _link.ReadAsync(ct);
                switch (frame.Type)
                {
                    case FrameType.Data:
                        ReadOnlyMemory<byte> data = frame.Payload;
                        if (frame.Codec != WireCodec.Raw)
                        {
                            raw ??= ArrayPool<byte>.Shared.Rent(Protocol.MaxFrameLength);
                            long started = Stopwatch.GetTimestamp();
                            decoder.Decode(frame.Codec, frame.Payload.Span, raw.AsSpan(0, frame.RawLength), Stats.Frames);
                            Stats.AddCompressTicks(Stopwatch.GetTimestamp() - started);
                            data = raw.AsMemory(0, frame.RawLength);
                        }

                        await WriteToDestinationAsync(destination, data, ct);
                        Stats.AddDataFrame(data.Length, new CodecOption(frame.Codec), frame.WireLength);
                        break;

                    case FrameType.End:
                        await destination.FlushAsync(ct);
                        _logger.LogInformation("Tunnel: received {Stats}", Stats);
                        return Stats;

                    case FrameType.Error:
                        throw TunnelException.Remote($"The sender failed: {Protocol.DecodeErrorMessage(frame.Payload.Span)}");

                    default:
                        throw TunnelException.Corruption($"The sender sent an unexpected {frame.Type} frame.");
                }
            }
        }
        finally
        {
            if (raw is not null)
            {
                ArrayPool<byte>.Shared.Return(raw);
            }
        }
    }

    private async Task WriteToDestinationAsync(System.IO.Stream destination, ReadOnlyMemory<byte> data, CancellationToken ct)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ct);
        deadline.CancelAfter(_destinationTimeout);
        try
        {
            await destination.WriteAsync(data, deadline.Token);
        }
        catch (OperationCanceledException ex) when (!ct.IsCancellationRequested)
        {
            throw new TunnelException("DestinationStalled", ErrorKind.OperationTimeout,
                $"The destination took none of the stream for {_destinationTimeout.TotalSeconds:0} s: its QEMU hangs.", ex);
        }
    }

    public ValueTask DisposeAsync() => _link.DisposeAsync();
}
