using System.Diagnostics;
using DeltaMigrate.Engine.Tunnel;

namespace DeltaMigrate.Engine.Transport;

/// <summary>
/// One authenticated tunnel connection, seen from either end: frames go out under one lock (data,
/// control frames and keepalives share the socket), frames come in with an idle deadline, and a
/// KeepAlive goes out whenever this side has been quiet, so the other side's deadline only fires
/// when the link or this host is really gone.
/// </summary>
internal sealed class FrameLink : IAsyncDisposable
{
    private readonly System.IO.Stream _stream;
    private readonly FrameWriter _writer;
    private readonly FrameReader _reader;
    private readonly TunnelStats _stats;
    private readonly TimeSpan _idleTimeout;
    private readonly TimeSpan _keepAliveInterval;
    private readonly SemaphoreSlim _sendLock = new(1, 1);
    private readonly CancellationTokenSource _lifetime = new();
    private readonly Task _keepAlive;
    private long _lastSend = Stopwatch.GetTimestamp();
    private int _disposed;

    public FrameLink(System.IO.Stream stream, byte[] sendKey, byte[] receiveKey, TunnelOptions options, TunnelStats stats)
    {
        _stream = stream;
        _writer = new FrameWriter(stream, sendKey);
        _reader = new FrameReader(stream, receiveKey);
        _stats = stats;
        _idleTimeout = options.IdleTimeout;
        _keepAliveInterval = options.KeepAliveInterval;
        _keepAlive = Task.Run(KeepAliveLoopAsync);
    }

    /// <summary>Seals and sends the frame whose payload is at <c>buffer[HeaderLength..]</c>; returns its wire length.</summary>
    public async ValueTask<int> SendAsync(byte[] buffer, FrameType type, byte flags, int payloadLength, int rawLength, CancellationToken ct)
    {
        await _sendLock.WaitAsync(ct);
        try
        {
            int wire = await _writer.SendAsync(buffer, type, flags, payloadLength, rawLength, ct);
            Volatile.Write(ref _lastSend, Stopwatch.GetTimestamp());
            _stats.AddWire(wire);
            return wire;
        }
        finally
        {
            _sendLock.Release();
        }
    }

    /// <summary>Sends a control frame (Prepare, Loaded, Commit, ...) with a small payload.</summary>
    public async Task SendControlAsync(FrameType type, ReadOnlyMemory<byte> payload, CancellationToken ct)
    {
        byte[] buffer = Protocol.Rent(payload.Length);
        try
        {
            payload.Span.CopyTo(buffer.AsSpan(Protocol.HeaderLength));
            await SendAsync(buffer, type, 0, payload.Length, payload.Length, ct);
        }
        finally
        {
            Protocol.Return(buffer);
        }
    }

    /// <summary>Best effort: an Error frame with <paramref name="message"/>, giving up quietly after <paramref name="timeout"/>.</summary>
    public async Task TrySendErrorAsync(string message, TimeSpan timeout)
    {
        byte[] buffer = Protocol.RentErrorFrame(message, out int length);
        try
        {
            using var cts = new CancellationTokenSource(timeout);
            await SendAsync(buffer, FrameType.Error, 0, length, length, cts.Token);
        }
        catch (Exception)
        {
            // The connection may already be gone.
        }
        finally
        {
            Protocol.Return(buffer);
        }
    }

    /// <summary>
    /// The next frame other than a KeepAlive; its payload is valid until the next read.
    /// Throws <see cref="TunnelException"/> IdleTimeout when the peer has sent nothing for the idle timeout.
    /// </summary>
    public async ValueTask<Frame> ReadAsync(CancellationToken ct)
    {
        while (true)
        {
            using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ct);
            deadline.CancelAfter(_idleTimeout);
            Frame frame;
            try
            {
                frame = await _reader.ReadAsync(deadline.Token);
            }
            catch (OperationCanceledException ex) when (!ct.IsCancellationRequested)
            {
                throw TunnelException.Idle(
                    $"The other end of the tunnel has sent nothing for {_idleTimeout.TotalSeconds:0.#} s: the link or the other host is down.", ex);
            }

            _stats.AddWire(frame.WireLength);
            if (frame.Type != FrameType.KeepAlive)
            {
                return frame;
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        await _lifetime.CancelAsync();
        // Closing the stream first unblocks a send or read stuck in a socket call.
        await _stream.DisposeAsync();
        await _keepAlive;
        // The ciphers go only once no send is using them.
        if (await _sendLock.WaitAsync(TimeSpan.FromSeconds(5)))
        {
            _writer.Dispose();
        }

        _reader.Dispose();
        _lifetime.Dispose();
    }

    private async Task KeepAliveLoopAsync()
    {
        using var timer = new PeriodicTimer(_keepAliveInterval / 2);
        try
        {
            while (await timer.WaitForNextTickAsync(_lifetime.Token))
            {
                if (Stopwatch.GetElapsedTime(Volatile.Read(ref _lastSend)) < _keepAliveInterval || !await _sendLock.WaitAsync(0))
                {
                    continue; // something went out recently, or is going out now
                }

                byte[] buffer = Protocol.Rent(0);
                try
                {
                    using var timeout = CancellationTokenSource.CreateLinkedTokenSource(_lifetime.Token);
                    timeout.CancelAfter(_idleTimeout);
                    _stats.AddWire(await _writer.SendAsync(buffer, FrameType.KeepAlive, 0, 0, 0, timeout.Token));
                    Volatile.Write(ref _lastSend, Stopwatch.GetTimestamp());
                }
                finally
                {
                    Protocol.Return(buffer);
                    _sendLock.Release();
                }
            }
        }
        catch (Exception)
        {
            // Cancelled, or the connection broke: the reads report it.
        }
    }
}
