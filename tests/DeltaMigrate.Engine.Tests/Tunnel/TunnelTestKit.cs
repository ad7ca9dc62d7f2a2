using System.Net;
using System.Net.Sockets;
using DeltaMigrate.Engine.Tunnel;

namespace DeltaMigrate.Engine.Tests.Tunnel;

/// <summary>Helpers for the tunnel tests: test data, a man-in-the-middle proxy, a gated destination stream.</summary>
internal static class TunnelTestKit
{
    public static readonly IPEndPoint Loopback = new(IPAddress.Loopback, 0);

    /// <summary>Random bytes (incompressible).</summary>
    public static byte[] RandomBytes(int length, int seed)
    {
        var data = new byte[length];
        new Random(seed).NextBytes(data);
        return data;
    }

    /// <summary>Guest-memory-like bytes: runs of zeros, repeated text and a few random words (compresses well).</summary>
    public static byte[] CompressibleBytes(int length, int seed)
    {
        var random = new Random(seed);
        var data = new byte[length];
        byte[] text = "The quick brown fox jumps over the lazy dog. "u8.ToArray();
        for (int i = 0; i < length; i++)
        {
            int page = i / 4096;
            data[i] = (page % 3) switch
            {
                0 => 0,
                1 => text[i % text.Length],
                _ => (i % 64) == 0 ? (byte)random.Next(256) : (byte)(i >> 8),
            };
        }

        return data;
    }

    /// <summary>Writes <paramref name="data"/> in ragged pieces (1 byte to ~300 KiB) to exercise frame boundaries.</summary>
    public static async Task WriteRaggedAsync(TunnelSender sender, byte[] data, CancellationToken ct)
    {
        var random = new Random(7);
        int offset = 0;
        while (offset < data.Length)
        {
            int n = Math.Min(data.Length - offset, random.Next(3) switch { 0 => random.Next(1, 100), 1 => random.Next(1, 70_000), _ => random.Next(1, 300_000) });
            await sender.WriteAsync(data.AsMemory(offset, n), ct);
            offset += n;
        }
    }
}

/// <summary>
/// A one-connection TCP proxy that records the sender-to-receiver direction and can flip one byte of it,
/// cut it, drop a range of it, or send a range again right after itself (a replay). Offsets count every
/// byte the sender sends, the 131-byte handshake hello included.
/// </summary>
internal sealed class TamperProxy : IAsyncDisposable
{
    private readonly TcpListener _listener;
    private readonly IPEndPoint _target;
    private readonly long? _flipAt;
    private readonly long? _cutAt;
    private readonly (long Start, int Length)? _drop;
    private readonly (long Start, int Length)? _replay;
    private readonly long[] _splits;
    private readonly MemoryStream _captured = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _run;

    public TamperProxy(IPEndPoint target, long? flipAt = null, long? cutAt = null, (long Start, int Length)? drop = null, (long Start, int Length)? replay = null)
    {
        _target = target;
        _flipAt = flipAt;
        _cutAt = cutAt;
        _drop = drop;
        _replay = replay;
        // Received chunks are split at these offsets so each piece is wholly inside or outside a range.
        _splits = [.. new long?[] { cutAt, drop?.Start, drop?.Start + drop?.Length, replay?.Start + replay?.Length }.OfType<long>()];
        _listener = new TcpListener(TunnelTestKit.Loopback);
        _listener.Start();
        Port = ((IPEndPoint)_listener.LocalEndpoint).Port;
        _run = RunAsync();
    }

    public int Port { get; }

    /// <summary>Every byte the sender sent so far, as it left the sender (before any tampering).</summary>
    public byte[] Captured
    {
        get
        {
            lock (_captured)
            {
                return _captured.ToArray();
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        _listener.Stop();
        try
        {
            await _run;
        }
        catch (Exception)
        {
            // The proxy's own failures do not matter once the test is over.
        }

        _stop.Dispose();
    }

    private async Task RunAsync()
    {
        using Socket client = await _listener.AcceptSocketAsync(_stop.Token);
        using var server = new Socket(SocketType.Stream, ProtocolType.Tcp);
        await server.ConnectAsync(_target, _stop.Token);
        Task up = PumpAsync(client, server, tamper: true);
        Task down = PumpAsync(server, client, tamper: false);
        await Task.WhenAny(up, down);
        // Either side finished (or the cut happened): close both so nothing hangs.
        client.Close();
        server.Close();
        await Task.WhenAll(up, down).ContinueWith(_ => { }, TaskScheduler.Default);
    }

    private async Task PumpAsync(Socket from, Socket to, bool tamper)
    {
        var buffer = new byte[64 * 1024];
        long offset = 0;
        while (true)
        {
            int n = await from.ReceiveAsync(buffer, _stop.Token);
            if (n == 0)
            {
                to.Shutdown(SocketShutdown.Send);
                return;
            }

            if (!tamper)
            {
                await SendAllAsync(to, buffer.AsMemory(0, n));
                continue;
            }

            // Recorded before forwarding, so it is complete once the receiver has seen the bytes.
            lock (_captured)
            {
                _captured.Write(buffer, 0, n);
            }

            int start = 0;
            while (start < n)
            {
                long at = offset + start;
                int end = (int)Math.Min(n, _splits.Where(s => s > at).DefaultIfEmpty(long.MaxValue).Min() - offset);
                if (!await ForwardAsync(to, buffer.AsMemory(start, end - start), at))
                {
                    return;
                }

                start = end;
            }

            offset += n;
        }
    }

    /// <summary>Forwards a piece that starts at sender offset <paramref name="at"/>; false once the cut is reached.</summary>
    private async Task<bool> ForwardAsync(Socket to, Memory<byte> piece, long at)
    {
        if (_cutAt is long cut && at >= cut)
        {
            return false;
        }

        if (_flipAt is long flip && flip >= at && flip < at + piece.Length)
        {
            piece.Span[(int)(flip - at)] ^= 0x01;
        }

        bool dropped = _drop is { } drop && at >= drop.Start && at < drop.Start + drop.Length;
        if (!dropped)
        {
            await SendAllAsync(to, piece);
        }

        if (_replay is { } replay && at + piece.Length == replay.Start + replay.Length)
        {
            await SendAllAsync(to, Captured.AsMemory((int)replay.Start, replay.Length));
        }

        return true;
    }

    private async Task SendAllAsync(Socket socket, ReadOnlyMemory<byte> data)
    {
        while (!data.IsEmpty)
        {
            int sent = await socket.SendAsync(data, SocketFlags.None, _stop.Token);
            data = data[sent..];
        }
    }
}

/// <summary>A destination whose writes wait until <see cref="Open"/> is called; counts what it received.</summary>
internal sealed class GatedStream : System.IO.Stream
{
    private readonly TaskCompletionSource _gate = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private long _written;

    public long Written => Interlocked.Read(ref _written);

    public override bool CanRead => false;

    public override bool CanSeek => false;

    public override bool CanWrite => true;

    public override long Length => throw new NotSupportedException();

    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public void Open() => _gate.TrySetResult();

    public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        await _gate.Task.WaitAsync(cancellationToken);
        Interlocked.Add(ref _written, buffer.Length);
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException("Async only.");

    public override void Flush()
    {
    }

    public override Task FlushAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();
}
