using System.Net;
using System.Net.Sockets;
using DeltaMigrate.Engine.Transport;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace DeltaMigrate.Engine.Tunnel;

/// <summary>
/// The destination end of the tunnel: listens, authenticates one sender with the <see cref="MigrationToken"/>,
/// and writes every payload byte, in order, to the destination stream.
/// </summary>
public sealed class TunnelListener : IAsyncDisposable
{
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

    /// <summary>Starts listening on <paramref name="endpoint"/>. From <paramref name="options"/> only the handshake, idle and keepalive times count.</summary>
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
    /// Receives one stream: waits for an authenticated sender (<see cref="AcceptAsync"/>), opens the
    /// destination, writes every payload byte to it until the sender's End frame, flushes, and answers
    /// Loaded. The destination is not disposed. A migration uses <see cref="AcceptAsync"/> and
    /// <see cref="IncomingTunnel"/> itself, to check the destination QEMU before it answers.
    /// </summary>
    /// <exception cref="TunnelException">
    /// Corrupt (tampered or malformed frame), Closed (connection cut before End), RemoteError (the sender
    /// failed; its message is carried), IdleTimeout; when <paramref name="ct"/> fires after senders were
    /// rejected, the reason of the last rejection (AuthenticationFailed, VersionMismatch, ...) instead of a cancellation.
    /// </exception>
    public async Task<TunnelStats> ReceiveAsync(Func<CancellationToken, Task<System.IO.Stream>> openDestination, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(openDestination);
        await using var tunnel = await AcceptAsync(ct);
        System.IO.Stream destination;
        try
        {
            destination = await openDestination(ct);
        }
        catch (Exception ex)
        {
            await tunnel.TrySendErrorAsync($"The destination could not be opened: {ex.Message}");
            throw;
        }

        try
        {
            var stats = await tunnel.PumpAsync(destination, ct);
            await tunnel.SendAsync(FrameType.Loaded, ReadOnlyMemory<byte>.Empty, ct);
            return stats;
        }
        catch (Exception ex) when (!IncomingTunnel.SenderGone(ex))
        {
            // Tell the sender why, so its error says more than "connection reset".
            _logger.LogWarning("Tunnel: receiving failed after {Stats}: {Reason}", tunnel.Stats, ex.Message);
            await tunnel.TrySendErrorAsync(ex.Message);
            throw;
        }
    }

    /// <summary>
    /// Waits for one sender that passes the handshake, stops listening, and returns the authenticated
    /// connection. Handshakes run side by side: a connection that stays silent (or a slow attacker)
    /// does not hold up the real sender; rejected ones are logged and the wait goes on.
    /// </summary>
    public async Task<IncomingTunnel> AcceptAsync(CancellationToken ct)
    {
        if (Interlocked.Exchange(ref _receiving, 1) != 0)
        {
            throw new InvalidOperationException("A listener accepts only one sender.");
        }

        using var stopAll = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var handshakes = new List<Task<IncomingTunnel>>();
        Task<Socket>? accepting = null;
        TunnelException? lastRejection = null;
        int rejected = 0;
        try
        {
            while (true)
            {
                accepting ??= _listener.AcceptSocketAsync(stopAll.Token).AsTask();
                var done = await Task.WhenAny(handshakes.Append<Task>(accepting));
                if (done == accepting)
                {
                    var accepted = accepting;
                    accepting = null;
                    Socket socket;
                    try
                    {
                        socket = await accepted;
                    }
                    catch (OperationCanceledException ex)
                    {
                        // The wait ended: a rejection still being answered counts too, and says more than "cancelled".
                        foreach (var pending in handshakes)
                        {
                            try
                            {
                                await (await pending).DisposeAsync();
                            }
                            catch (TunnelException rejection)
                            {
                                rejected++;
                                lastRejection = rejection;
                            }
                            catch (Exception)
                            {
                                // cancelled with the wait
                            }
                        }

                        handshakes.Clear();
                        if (lastRejection is null)
                        {
                            throw;
                        }

                        throw new TunnelException(lastRejection.ErrorId, lastRejection.Kind,
                            $"No sender was accepted before the wait ended; {rejected} connection(s) were rejected, the last one because: {lastRejection.Message}", ex)
                        { Target = LocalEndpoint };
                    }

                    handshakes.Add(HandshakeAsync(socket, stopAll.Token));
                    continue;
                }

                var handshake = (Task<IncomingTunnel>)done;
                handshakes.Remove(handshake);
                try
                {
                    var tunnel = await handshake;
                    _listener.Stop();
                    return tunnel;
                }
                catch (TunnelException ex)
                {
                    rejected++;
                    lastRejection = ex;
                }
            }
        }
        finally
        {
            await stopAll.CancelAsync();
            // The others end with the cancellation; one that won a race meanwhile is closed.
            foreach (var other in handshakes)
            {
                _ = other.ContinueWith(t => t.Result.DisposeAsync(), CancellationToken.None, TaskContinuationOptions.OnlyOnRanToCompletion, TaskScheduler.Default);
                _ = other.ContinueWith(t => t.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted, TaskScheduler.Default);
            }

            _ = accepting?.ContinueWith(t => t.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted, TaskScheduler.Default);
        }
    }

    /// <summary>One connection's handshake, within its own deadline; a TunnelException means rejected.</summary>
    private async Task<IncomingTunnel> HandshakeAsync(Socket socket, CancellationToken ct)
    {
        EndPoint? remote = socket.RemoteEndPoint;
        TcpLiveness.Apply(socket, _options.IdleTimeout);
        var stream = new NetworkStream(socket, ownsSocket: true);
        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
            timeout.CancelAfter(_options.HandshakeTimeout);
            SessionKeys keys;
            try
            {
                keys = await Handshake.ServerAsync(stream, _token, timeout.Token);
            }
            catch (OperationCanceledException ex) when (!ct.IsCancellationRequested)
            {
                throw new TunnelException(TunnelException.HandshakeTimeout, ErrorKind.OperationTimeout,
                    $"The connection from {remote} did not finish the tunnel handshake within {_options.HandshakeTimeout.TotalSeconds:0.#} s.", ex);
            }

            _logger.LogInformation("Tunnel: sender {Remote} authenticated", remote);
            return new IncomingTunnel(stream, keys, _options, _logger);
        }
        catch (Exception ex)
        {
            if (ex is TunnelException)
            {
                _logger.LogWarning("Tunnel: rejected the connection from {Remote}: {Reason}", remote, ex.Message);
            }

            await stream.DisposeAsync();
            throw;
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
}
