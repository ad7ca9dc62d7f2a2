using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using DeltaMigrate.Engine.Transport;

namespace DeltaMigrate.Engine.Tests.Migration;

/// <summary>What the proxy does when its trigger frame comes by.</summary>
public enum FaultAction
{
    /// <summary>Reset both connections (RST), without forwarding the frame.</summary>
    Cut,

    /// <summary>Stop forwarding anything, either way, and keep both connections open: a host that lost power.</summary>
    Blackhole,

    /// <summary>Only report the frame (<see cref="FaultProxy.Fired"/>): the test injects its own fault then (Ctrl-C).</summary>
    Signal,

    /// <summary>Report the frame and hold it (and all after it, that way) until <see cref="FaultProxy.Release"/>: the test kills a process meanwhile.</summary>
    Hold,
}

/// <summary>
/// A TCP proxy between the tunnel's sender and receiver that follows the protocol's frame
/// boundaries (frame headers travel in clear, authenticated) and strikes at a chosen frame:
/// the Nth frame of a type, in one direction. Only this fault cannot be had from the real link on
/// demand; everything else in the tests is real (QEMU, sockets, the tunnel).
/// </summary>
internal sealed class FaultProxy : IAsyncDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly IPEndPoint _target;
    private readonly FrameType? _triggerType;
    private readonly bool _fromSender;
    private readonly int _occurrence;
    private readonly FaultAction _action;
    private readonly CancellationTokenSource _stop = new();
    private readonly TaskCompletionSource _fired = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource<bool> _released = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly List<Socket> _sockets = [];
    private readonly Task _accept;
    private volatile bool _holding;
    private volatile bool _armed;
    private int _seen;

    /// <param name="target">The receiver's endpoint.</param>
    /// <param name="triggerType">The frame type that triggers; null: any frame.</param>
    /// <param name="fromSender">The trigger frame travels sender to receiver (Data, End, Commit) or back (Loaded, Running).</param>
    /// <param name="occurrence">Strike at this occurrence (1 = the first) of the trigger frame.</param>
    /// <param name="action">What to do then.</param>
    /// <param name="armed">False: frames count only after <see cref="Arm"/> (e.g. once the source stopped for the final copy).</param>
    public FaultProxy(IPEndPoint target, FrameType? triggerType, bool fromSender, int occurrence, FaultAction action, bool armed = true)
    {
        _armed = armed;
        _target = target;
        _triggerType = triggerType;
        _fromSender = fromSender;
        _occurrence = occurrence;
        _action = action;
        _listener.Start();
        Port = ((IPEndPoint)_listener.LocalEndpoint).Port;
        _accept = Task.Run(AcceptAsync);
    }

    public int Port { get; }

    /// <summary>Completes when the fault struck: a test that expects it asserts it did.</summary>
    public Task Fired => _fired.Task;

    private async Task AcceptAsync()
    {
        try
        {
            var client = await _listener.AcceptSocketAsync(_stop.Token);
            var server = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            await server.ConnectAsync(_target, _stop.Token);
            lock (_sockets)
            {
                _sockets.Add(client);
                _sockets.Add(server);
            }

            // Sender to receiver: after its client hello; receiver to sender: after server hello and reply.
            var up = PumpAsync(client, server, Handshake.ClientHelloLength, fromSender: true);
            var down = PumpAsync(server, client, Handshake.ServerHelloLength + Handshake.ServerReplyLength, fromSender: false);
            await Task.WhenAll(up, down);
        }
        catch (Exception)
        {
            // stopped, or a side went away: the tunnel sees it
        }
    }

    private async Task PumpAsync(Socket from, Socket to, int handshakeBytes, bool fromSender)
    {
        var header = new byte[Protocol.HeaderLength];
        try
        {
            await CopyAsync(from, to, handshakeBytes);
            while (true)
            {
                await ReadExactAsync(from, header);
                var type = (FrameType)header[0];
                var rest = (int)BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(2)) + Protocol.TagLength;
                if (_armed && fromSender == _fromSender && (_triggerType is null || type == _triggerType) && Interlocked.Increment(ref _seen) == _occurrence)
                {
                    Strike();
                    if (_action == FaultAction.Hold && !await _released.Task.WaitAsync(_stop.Token))
                    {
                        throw new OperationCanceledException("the held frame is dropped");
                    }
                }

                if (_holding)
                {
                    await DiscardForeverAsync(from);
                    return;
                }

                await to.SendAsync(header, SocketFlags.None, _stop.Token);
                await CopyAsync(from, to, rest);
            }
        }
        catch (Exception)
        {
            if (!_holding)
            {
                Reset();
            }
        }
    }

    public void Arm() => _armed = true;

    /// <summary>Lets a held frame go on, or drops it (and resets the link), as if its sender had died before sending it.</summary>
    public void Release(bool forward) => _released.TrySetResult(forward);

    private void Strike()
    {
        _fired.TrySetResult();
        if (_action is FaultAction.Signal or FaultAction.Hold)
        {
            return;
        }

        if (_action == FaultAction.Blackhole)
        {
            _holding = true;
        }
        else
        {
            Reset();
        }
    }

    /// <summary>RST both ways: linger 0, then close.</summary>
    private void Reset()
    {
        lock (_sockets)
        {
            foreach (var socket in _sockets)
            {
                try
                {
                    socket.LingerState = new LingerOption(true, 0);
                    socket.Close();
                }
                catch (Exception)
                {
                    // already closed
                }
            }
        }
    }

    private async Task DiscardForeverAsync(Socket from)
    {
        var sink = new byte[64 * 1024];
        while (await from.ReceiveAsync(sink, SocketFlags.None, _stop.Token) > 0)
        {
        }
    }

    private async Task CopyAsync(Socket from, Socket to, int count)
    {
        var buffer = new byte[Math.Min(count, 256 * 1024)];
        while (count > 0)
        {
            var n = await from.ReceiveAsync(buffer.AsMemory(0, Math.Min(count, buffer.Length)), SocketFlags.None, _stop.Token);
            if (n == 0)
            {
                throw new EndOfStreamException();
            }

            if (_holding)
            {
                await DiscardForeverAsync(from);
                return;
            }

            await to.SendAsync(buffer.AsMemory(0, n), SocketFlags.None, _stop.Token);
            count -= n;
        }
    }

    private async Task ReadExactAsync(Socket from, byte[] buffer)
    {
        var read = 0;
        while (read < buffer.Length)
        {
            var n = await from.ReceiveAsync(buffer.AsMemory(read), SocketFlags.None, _stop.Token);
            if (n == 0)
            {
                throw new EndOfStreamException();
            }

            read += n;
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Stop();
        Reset();
        try
        {
            await _accept.WaitAsync(TimeSpan.FromSeconds(5));
        }
        catch (Exception)
        {
            // it ends with the sockets
        }

        _stop.Dispose();
    }
}
