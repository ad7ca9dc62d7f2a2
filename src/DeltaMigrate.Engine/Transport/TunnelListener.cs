using System.Buffers;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using K4os.Compression.LZ4;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace DeltaMigrate.Engine.Transport;

/// <summary>
/// The destination end of the tunnel: listens, authenticates one sender with the <see cref="MigrationToken"/>,
/// and writes every payload byte, in order, to the destination stream.
/// </summary>
public sealed class TunnelListener : IAsyncDisposable
{
    private static readonly TimeSpan ErrorReplyTimeout = TimeSpan.FromSeconds(2);

    private readonly TcpListener _listener;
    private readonly MigrationToken _token;
    private readonly TunnelOptions _options;
    private readonly ILogger _logger;
    private int _receiving;
    private int _disposed;

    private TunnelListener(TcpListener listener, MigrationToken token, TunnelOptions options, ILogger logger)
    {
        _listener = listener;
        _token = token;
        _options = options;
        _logger = logger;
        LocalEndpoint = (IPEndPoint)listener.LocalEndpoint;
    }

    /// <summary>The bound endpoint (with the real port when started on port 0).</summary>
    public IPEndPoint LocalEndpoint { get; }

    /// <summary>Starts listening on <paramref name="endpoint"/>. Only <see cref="TunnelOptions.HandshakeTimeout"/> is used from <paramref name="options"/>.</summary>
    public static TunnelListener Start(IPEndPoint endpoint, MigrationToken token, ILogger? logger = null, TunnelOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(endpoint);
        ArgumentNullException.ThrowIfNull(token);
        options ??= new TunnelOptions();
        options.Validate();
        var listener = new TcpListener(endpoint);
        try
        {
            listener.Start();
        }
        catch (SocketException ex)
        {
            throw new TunnelException("TunnelListenFailed", ErrorKind.ResourceUnavailable, $"Cannot listen on {endpoint}: {ex.Message}", ex) { Target = endpoint };
        }

        return new TunnelListener(listener, token, options, logger ?? NullLogger.Instance);
    }

    /// <summary>
    /// Waits for one sender that passes the handshake (others are rejected, logged, and the wait goes on),
    /// stops listening, opens the destination, and writes every payload byte to it until the sender's End
    /// frame; then flushes the destination and tells the sender Done. The destination is not disposed.
    /// </summary>
    /// <exception cref="TunnelException">
    /// Corrupt (tampered or malformed frame), Closed (connection cut before End), RemoteError (the sender
    /// failed; its message is carried); when <paramref name="ct"/> fires after senders were rejected, the
    /// reason of the last rejection (AuthenticationFailed, VersionMismatch, ...) instead of a cancellation.
    /// </exception>
    public async Task<TunnelStats> ReceiveAsync(Func<CancellationToken, Task<System.IO.Stream>> openDestination, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(openDestination);
        if (Interlocked.Exchange(ref _receiving, 1) != 0)
        {
            throw new InvalidOperationException("ReceiveAsync can be called only once per listener.");
        }

        TunnelException? lastRejection = null;
        int rejected = 0;
        while (true)
        {
            Socket socket;
            try
            {
                socket = await _listener.AcceptSocketAsync(ct);
            }
            catch (OperationCanceledException ex) when (lastRejection is not null)
            {
                throw new TunnelException(lastRejection.ErrorId, lastRejection.Kind,
                    $"No sender was accepted before the wait ended; {rejected} connection(s) were rejected, the last one because: {lastRejection.Message}", ex)
                { Target = LocalEndpoint };
            }

            EndPoint? remote = socket.RemoteEndPoint;
            var stream = new NetworkStream(socket, ownsSocket: true);
            SessionKeys keys;
            try
            {
                using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
                timeout.CancelAfter(_options.HandshakeTimeout);
                try
                {
                    keys = await Handshake.ServerAsync(stream, _token, timeout.Token);
                }
                catch (OperationCanceledException ex) when (!ct.IsCancellationRequested)
                {
                    throw new TunnelException(TunnelException.HandshakeTimeout, ErrorKind.OperationTimeout,
                        $"The connection from {remote} did not finish the tunnel handshake within {_options.HandshakeTimeout.TotalSeconds:0.#} s.", ex);
                }
            }
            catch (TunnelException ex)
            {
                rejected++;
                lastRejection = ex;
                _logger.LogWarning("Tunnel: rejected the connection from {Remote}: {Reason}", remote, ex.Message);
                await stream.DisposeAsync();
                continue;
            }
            catch
            {
                await stream.DisposeAsync();
                throw;
            }

            _listener.Stop();
            _logger.LogInformation("Tunnel: sender {Remote} authenticated", remote);
            await using (stream)
            {
                return await PumpAsync(stream, keys, openDestination, ct);
            }
        }
    }

    public ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            _listener.Stop();
        }

        return ValueTask.CompletedTask;
    }

    private async Task<TunnelStats> PumpAsync(System.IO.Stream stream, SessionKeys keys, Func<CancellationToken, Task<System.IO.Stream>> openDestination, CancellationToken ct)
    {
        var stats = new TunnelStats();
        using var writer = new FrameWriter(stream, keys.ReceiverToSender);
        using var reader = new FrameReader(stream, keys.SenderToReceiver);
        System.IO.Stream destination;
        try
        {
            destination = await openDestination(ct);
        }
        catch (Exception ex)
        {
            await writer.TrySendErrorAsync($"The destination could not be opened: {ex.Message}", ErrorReplyTimeout);
            throw;
        }

        byte[]? raw = null;
        try
        {
            while (true)
            {
                Frame frame = await reader.ReadAsync(ct);
                stats.AddWire(frame.WireLength);
                switch (frame.Type)
                {
                    case FrameType.Data:
                        ReadOnlyMemory<byte> data = frame.Payload;
                        if (frame.IsLz4)
                        {
                            raw ??= ArrayPool<byte>.Shared.Rent(Protocol.MaxFrameLength);
                            long started = Stopwatch.GetTimestamp();
                            int decoded = LZ4Codec.Decode(frame.Payload.Span, raw.AsSpan(0, frame.RawLength));
                            stats.AddCompressTicks(Stopwatch.GetTimestamp() - started);
                            if (decoded != frame.RawLength)
                            {
                                throw TunnelException.Corruption($"Frame {stats.Frames} does not decompress to its stated {frame.RawLength} bytes.");
                            }

                            data = raw.AsMemory(0, decoded);
                        }

                        await destination.WriteAsync(data, ct);
                        stats.AddDataFrame(data.Length, frame.IsLz4);
                        break;

                    case FrameType.End:
                        await destination.FlushAsync(ct);
                        byte[] done = Protocol.Rent(0);
                        try
                        {
                            stats.AddWire(await writer.SendAsync(done, FrameType.Done, 0, 0, 0, ct));
                        }
                        finally
                        {
                            Protocol.Return(done);
                        }

                        _logger.LogInformation("Tunnel: received {Stats}", stats);
                        return stats;

                    case FrameType.Error:
                        throw TunnelException.Remote($"The sender failed: {Protocol.DecodeErrorMessage(frame.Payload.Span)}");

                    default:
                        throw TunnelException.Corruption($"The sender sent an unexpected {frame.Type} frame.");
                }
            }
        }
        catch (Exception ex) when (ex is not OperationCanceledException
            && ex is not TunnelException { ErrorId: TunnelException.RemoteError or TunnelException.Closed })
        {
            // Tell the sender why, so its error says more than "connection reset".
            _logger.LogWarning("Tunnel: receiving failed after {Stats}: {Reason}", stats, ex.Message);
            await writer.TrySendErrorAsync(ex.Message, ErrorReplyTimeout);
            throw;
        }
        finally
        {
            if (raw is not null)
            {
                ArrayPool<byte>.Shared.Return(raw);
            }
        }
    }
}
