using System.Diagnostics;
using System.Net;
using DeltaMigrate.Engine.Transport;
using DeltaMigrate.Engine.Tunnel;
using Xunit.Abstractions;

namespace DeltaMigrate.Engine.Tests.Tunnel;

public sealed class TunnelTests(ITestOutputHelper output)
{
    private static readonly TimeSpan TestTimeout = TimeSpan.FromSeconds(60);

    /// <summary>Offset of the first Data frame in the sender-to-receiver byte stream (after the 131-byte hello).</summary>
    private const int FirstFrameOffset = Handshake.ClientHelloLength;

    /// <summary>Offset of the first Data frame's payload in the sender-to-receiver byte stream.</summary>
    private const int FirstPayloadOffset = FirstFrameOffset + 18;

    /// <summary>Wire length of a full 256 KiB frame of random (uncompressed) data: header, payload, tag.</summary>
    private const int FullRawFrameLength = 18 + (256 * 1024) + 16;

    [Fact]
    public async Task MixedData_RoundTripsByteForByte_AndCompresses()
    {
        using var cts = new CancellationTokenSource(TestTimeout);
        byte[] data = [.. TunnelTestKit.CompressibleBytes(3 << 20, 1), .. TunnelTestKit.RandomBytes(1 << 20, 2), .. TunnelTestKit.CompressibleBytes(1 << 20, 3)];
        var token = MigrationToken.Create();
        await using var listener = TunnelListener.Start(TunnelTestKit.Loopback, token);
        var received = new MemoryStream();
        Task<TunnelStats> receive = listener.ReceiveAsync(_ => Task.FromResult<System.IO.Stream>(received), cts.Token);

        await using var sender = await TunnelSender.ConnectAsync("127.0.0.1", listener.LocalEndpoint.Port, token, new TunnelOptions(), null, cts.Token);
        await TunnelTestKit.WriteRaggedAsync(sender, data, cts.Token);
        await sender.CompleteAsync(cts.Token);
        TunnelStats receiverStats = await receive;

        Assert.Equal(data.Length, received.Length);
        Assert.True(data.AsSpan().SequenceEqual(received.ToArray()), "received bytes differ");
        output.WriteLine($"sender: {sender.Stats}");
        output.WriteLine($"receiver: {receiverStats}");
        Assert.Equal(data.Length, sender.Stats.PayloadBytes);
        Assert.Equal(data.Length, receiverStats.PayloadBytes);
        Assert.Equal(20, sender.Stats.Frames);
        Assert.Equal(sender.Stats.Frames, receiverStats.Frames);
        Assert.Equal(sender.Stats.CompressedFrames, receiverStats.CompressedFrames);
        Assert.Equal(16, sender.Stats.CompressedFrames);
        Assert.True(sender.Stats.WireBytes < sender.Stats.PayloadBytes / 2, "compressible data should shrink on the wire");
        // Receiver counts the frames it read plus its Done; the sender counts what it sent plus the Done it read.
        Assert.Equal(sender.Stats.WireBytes, receiverStats.WireBytes);
    }

    [Fact]
    public async Task RandomData_IsSentRaw()
    {
        using var cts = new CancellationTokenSource(TestTimeout);
        byte[] data = TunnelTestKit.RandomBytes((2 << 20) + 12345, 4);
        var (received, senderStats, receiverStats) = await TransferAsync(data, new TunnelOptions { FrameSize = 64 * 1024 }, cts.Token);

        Assert.True(data.AsSpan().SequenceEqual(received), "received bytes differ");
        Assert.Equal(0, senderStats.CompressedFrames);
        Assert.Equal(33, senderStats.Frames);
        Assert.True(senderStats.WireBytes > senderStats.PayloadBytes);
        Assert.Equal(data.Length, receiverStats.PayloadBytes);
    }

    [Fact]
    public async Task CompressionOff_And_FlushAsync_SendPartialFrames()
    {
        using var cts = new CancellationTokenSource(TestTimeout);
        var token = MigrationToken.Create();
        await using var listener = TunnelListener.Start(TunnelTestKit.Loopback, token);
        var destination = new MemoryStream();
        Task<TunnelStats> receive = listener.ReceiveAsync(_ => Task.FromResult<System.IO.Stream>(destination), cts.Token);
        await using var sender = await TunnelSender.ConnectAsync("localhost", listener.LocalEndpoint.Port, token, new TunnelOptions { Compress = false }, null, cts.Token);
        byte[] zeros = new byte[1000];
        await sender.WriteAsync(zeros, cts.Token);
        await sender.FlushAsync(cts.Token);
        await sender.FlushAsync(cts.Token); // nothing buffered: no empty frame
        await sender.WriteAsync(zeros, cts.Token);
        await sender.CompleteAsync(cts.Token);
        TunnelStats stats = await receive;

        Assert.Equal(2000, destination.Length);
        Assert.Equal(2, stats.Frames);
        Assert.Equal(0, stats.CompressedFrames);
        await Assert.ThrowsAsync<InvalidOperationException>(async () => await sender.WriteAsync(zeros, cts.Token));
    }

    [Fact]
    public async Task WrongToken_FailsOnBothSides_AndNeverOpensTheDestination()
    {
        using var cts = new CancellationTokenSource(TestTimeout);
        await using var listener = TunnelListener.Start(TunnelTestKit.Loopback, MigrationToken.Create());
        bool opened = false;
        using var wait = CancellationTokenSource.CreateLinkedTokenSource(cts.Token);
        Task<TunnelStats> receive = listener.ReceiveAsync(_ =>
        {
            opened = true;
            return Task.FromResult<System.IO.Stream>(new MemoryStream());
        }, wait.Token);

        var senderError = await Assert.ThrowsAsync<TunnelException>(() =>
            TunnelSender.ConnectAsync("127.0.0.1", listener.LocalEndpoint.Port, MigrationToken.Create(), new TunnelOptions(), null, cts.Token));
        Assert.Equal(TunnelException.AuthenticationFailed, senderError.ErrorId);

        // The receiver keeps waiting for the right sender; when the caller gives up, it says why nobody got in.
        Assert.False(receive.IsCompleted);
        wait.Cancel();
        var receiverError = await Assert.ThrowsAsync<TunnelException>(() => receive);
        Assert.Equal(TunnelException.AuthenticationFailed, receiverError.ErrorId);
        Assert.Contains("1 connection", receiverError.Message);
        Assert.False(opened);
    }

    [Fact]
    public async Task AfterRejectingAnImpostor_TheRightSenderStillGetsThrough()
    {
        using var cts = new CancellationTokenSource(TestTimeout);
        var token = MigrationToken.Create();
        await using var listener = TunnelListener.Start(TunnelTestKit.Loopback, token);
        int opened = 0;
        var destination = new MemoryStream();
        Task<TunnelStats> receive = listener.ReceiveAsync(_ =>
        {
            opened++;
            return Task.FromResult<System.IO.Stream>(destination);
        }, cts.Token);

        await Assert.ThrowsAsync<TunnelException>(() =>
            TunnelSender.ConnectAsync("127.0.0.1", listener.LocalEndpoint.Port, MigrationToken.Parse(MigrationToken.Create().ToString()), new TunnelOptions(), null, cts.Token));
        await using var sender = await TunnelSender.ConnectAsync("127.0.0.1", listener.LocalEndpoint.Port, MigrationToken.Parse(token.ToString()), new TunnelOptions(), null, cts.Token);
        await sender.WriteAsync("hello"u8.ToArray(), cts.Token);
        await sender.CompleteAsync(cts.Token);
        await receive;

        Assert.Equal(1, opened);
        Assert.Equal("hello"u8.ToArray(), destination.ToArray());
    }

    [Fact]
    public async Task NotATunnel_IsAVersionMismatch()
    {
        using var cts = new CancellationTokenSource(TestTimeout);
        using var fake = new System.Net.Sockets.TcpListener(TunnelTestKit.Loopback);
        fake.Start();
        Task serve = Task.Run(async () =>
        {
            using var socket = await fake.AcceptSocketAsync(cts.Token);
            await socket.SendAsync("SSH-2.0-OpenSSH_9.6 and some more bytes to fill a hello"u8.ToArray(), cts.Token);
            await socket.ReceiveAsync(new byte[100], cts.Token);
        });

        var error = await Assert.ThrowsAsync<TunnelException>(() =>
            TunnelSender.ConnectAsync("127.0.0.1", ((IPEndPoint)fake.LocalEndpoint).Port, MigrationToken.Create(), new TunnelOptions(), null, cts.Token));
        Assert.Equal(TunnelException.VersionMismatch, error.ErrorId);
        await serve;
    }

    [Theory]
    [InlineData(FirstFrameOffset + 0)] // type
    [InlineData(FirstFrameOffset + 1)] // flags (would claim LZ4)
    [InlineData(FirstFrameOffset + 5)] // payload length, lowest byte
    [InlineData(FirstFrameOffset + 9)] // raw length, lowest byte
    [InlineData(FirstFrameOffset + 17)] // sequence number, lowest byte
    [InlineData(FirstPayloadOffset)] // first payload byte
    [InlineData(FirstPayloadOffset + 1000)]
    [InlineData(FirstFrameOffset + FullRawFrameLength - 16)] // first tag byte
    [InlineData(FirstFrameOffset + FullRawFrameLength - 1)] // last tag byte
    public async Task FlippedBit_InHeaderPayloadOrTag_IsTunnelCorrupt(long flipAt)
    {
        using var cts = new CancellationTokenSource(TestTimeout);
        var error = await TransferThroughProxyAsync(flipAt: flipAt, cutAt: null, cts.Token);
        Assert.Equal(TunnelException.Corrupt, error.ErrorId);
        Assert.Contains("integrity", error.Message);
    }

    [Fact]
    public async Task ReplayedFrame_IsTunnelCorrupt()
    {
        using var cts = new CancellationTokenSource(TestTimeout);
        var error = await TransferThroughProxyAsync(flipAt: null, cutAt: null, cts.Token, replay: (FirstFrameOffset, FullRawFrameLength), delivered: 256 * 1024);
        Assert.Equal(TunnelException.Corrupt, error.ErrorId);
        Assert.Contains("Frame 0 arrived where frame 1 was expected", error.Message);
    }

    [Fact]
    public async Task DroppedFrame_IsTunnelCorrupt()
    {
        using var cts = new CancellationTokenSource(TestTimeout);
        var error = await TransferThroughProxyAsync(flipAt: null, cutAt: null, cts.Token, drop: (FirstFrameOffset, FullRawFrameLength));
        Assert.Equal(TunnelException.Corrupt, error.ErrorId);
        Assert.Contains("Frame 1 arrived where frame 0 was expected", error.Message);
    }

    [Fact]
    public async Task Payload_IsEncryptedOnTheWire()
    {
        using var cts = new CancellationTokenSource(TestTimeout);
        byte[] marker = "DeltaMigrate plaintext marker: readable on the wire only if the tunnel does not encrypt. "u8.ToArray();
        byte[] data = [.. Enumerable.Range(0, 4000).SelectMany(_ => marker), .. TunnelTestKit.RandomBytes(300_000, 10)];
        byte[] randomPart = data.AsSpan(data.Length - 300_000, 64).ToArray();
        var token = MigrationToken.Create();
        await using var listener = TunnelListener.Start(TunnelTestKit.Loopback, token);
        await using var proxy = new TamperProxy(listener.LocalEndpoint);
        var destination = new MemoryStream();
        Task<TunnelStats> receive = listener.ReceiveAsync(_ => Task.FromResult<System.IO.Stream>(destination), cts.Token);
        await using var sender = await TunnelSender.ConnectAsync("127.0.0.1", proxy.Port, token, new TunnelOptions { Compress = false }, null, cts.Token);
        await TunnelTestKit.WriteRaggedAsync(sender, data, cts.Token);
        await sender.CompleteAsync(cts.Token);
        TunnelStats receiverStats = await receive;

        Assert.True(data.AsSpan().SequenceEqual(destination.ToArray()), "received bytes differ");
        Assert.Equal(0, receiverStats.CompressedFrames);
        byte[] wire = proxy.Captured;
        // The capture holds the hello and every frame the sender sent (its wire count includes the 34-byte Done it read).
        Assert.Equal(Handshake.ClientHelloLength + sender.Stats.WireBytes - 34, wire.Length);
        Assert.Equal(-1, wire.AsSpan().IndexOf(marker.AsSpan(0, 16)));
        Assert.Equal(-1, wire.AsSpan().IndexOf(randomPart));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public async Task OlderPeers_AreAVersionMismatch(ushort oldVersion)
    {
        using var cts = new CancellationTokenSource(TestTimeout);

        // An old sender against this receiver: it reads the 42-byte start of the hello and sends its 66-byte hello;
        // the receiver answers status 2 and reports the mismatch.
        await using (var listener = TunnelListener.Start(TunnelTestKit.Loopback, MigrationToken.Create()))
        {
            using var wait = CancellationTokenSource.CreateLinkedTokenSource(cts.Token);
            Task<TunnelStats> receive = listener.ReceiveAsync(_ => Task.FromResult<System.IO.Stream>(new MemoryStream()), wait.Token);
            using var client = new System.Net.Sockets.Socket(System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
            await client.ConnectAsync(listener.LocalEndpoint, cts.Token);
            var stream = new System.Net.Sockets.NetworkStream(client);
            byte[] hello = new byte[Handshake.ServerHelloLength];
            await stream.ReadExactlyAsync(hello, cts.Token);
            Assert.Equal([0, 4], hello[8..10]);
            byte[] clientHello = new byte[66];
            clientHello[1] = (byte)oldVersion;
            await stream.WriteAsync(clientHello, cts.Token);
            byte[] reply = new byte[33];
            await stream.ReadExactlyAsync(reply, cts.Token);
            Assert.Equal(2, reply[0]);

            wait.Cancel();
            var receiverError = await Assert.ThrowsAsync<TunnelException>(() => receive);
            Assert.Equal(TunnelException.VersionMismatch, receiverError.ErrorId);
            Assert.Contains($"version {oldVersion}", receiverError.Message);
        }

        // An old receiver (42-byte hello) against this sender: the sender still sends a hello an old receiver can read.
        using var fake = new System.Net.Sockets.TcpListener(TunnelTestKit.Loopback);
        fake.Start();
        Task<byte[]> serve = Task.Run(async () =>
        {
            using var socket = await fake.AcceptSocketAsync(cts.Token);
            byte[] hello = [.. "DMTUNNEL"u8, 0, (byte)oldVersion, .. new byte[32]];
            await socket.SendAsync(hello, cts.Token);
            using var stream = new System.Net.Sockets.NetworkStream(socket);
            byte[] clientHello = new byte[66];
            await stream.ReadExactlyAsync(clientHello, cts.Token);
            return clientHello;
        });

        var senderError = await Assert.ThrowsAsync<TunnelException>(() =>
            TunnelSender.ConnectAsync("127.0.0.1", ((IPEndPoint)fake.LocalEndpoint).Port, MigrationToken.Create(), new TunnelOptions(), null, cts.Token));
        Assert.Equal(TunnelException.VersionMismatch, senderError.ErrorId);
        Assert.Contains($"version {oldVersion}", senderError.Message);
        Assert.Equal([0, 4], (await serve)[..2]);
    }

    [Fact]
    public async Task Handshake_GivesBothEndsTheSameKeys_OnePerDirection()
    {
        using var cts = new CancellationTokenSource(TestTimeout);
        var token = MigrationToken.Create();
        using var server = new System.Net.Sockets.TcpListener(TunnelTestKit.Loopback);
        server.Start();
        using var client = new System.Net.Sockets.Socket(System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
        await client.ConnectAsync((IPEndPoint)server.LocalEndpoint, cts.Token);
        using var accepted = await server.AcceptSocketAsync(cts.Token);
        using var clientStream = new System.Net.Sockets.NetworkStream(client);
        using var serverStream = new System.Net.Sockets.NetworkStream(accepted);

        Task<SessionKeys> serverKeys = Handshake.ServerAsync(serverStream, token, cts.Token);
        SessionKeys senderKeys = await Handshake.ClientAsync(clientStream, token, cts.Token);
        SessionKeys receiverKeys = await serverKeys;

        Assert.Equal(senderKeys.SenderToReceiver, receiverKeys.SenderToReceiver);
        Assert.Equal(senderKeys.ReceiverToSender, receiverKeys.ReceiverToSender);
        Assert.NotEqual(senderKeys.SenderToReceiver, senderKeys.ReceiverToSender);

        // Frame 0 of each direction: same plaintext, different ciphertext (no shared key and nonce).
        using var up = Protocol.CreateCipher(senderKeys.SenderToReceiver);
        using var down = Protocol.CreateCipher(senderKeys.ReceiverToSender);
        byte[] a = Protocol.Rent(64);
        byte[] b = Protocol.Rent(64);
        a.AsSpan(18, 64).Clear();
        b.AsSpan(18, 64).Clear();
        int length = Protocol.Seal(a, up, FrameType.Data, 0, 64, 64, 0);
        Protocol.Seal(b, down, FrameType.Data, 0, 64, 64, 0);
        Assert.False(a.AsSpan(18, length - 18).SequenceEqual(b.AsSpan(18, length - 18)));
        Assert.True(Protocol.Open(a, up, 64, 0));
        Assert.True(a.AsSpan(18, 64).IndexOfAnyExcept((byte)0) < 0);
        Assert.False(Protocol.Open(b, up, 64, 0)); // the other direction's key does not open it
        Protocol.Return(a);
        Protocol.Return(b);
    }

    [Fact]
    public async Task ConnectionCutMidFrame_IsTunnelClosed()
    {
        using var cts = new CancellationTokenSource(TestTimeout);
        var error = await TransferThroughProxyAsync(flipAt: null, cutAt: FirstPayloadOffset + 5000, cts.Token);
        Assert.Equal(TunnelException.Closed, error.ErrorId);
        Assert.Contains("frame 0", error.Message); // "closed in the middle of" or "broke while receiving" (RST)
    }

    [Fact]
    public async Task SenderFailAsync_IsTunnelRemoteErrorWithTheMessage()
    {
        using var cts = new CancellationTokenSource(TestTimeout);
        var token = MigrationToken.Create();
        await using var listener = TunnelListener.Start(TunnelTestKit.Loopback, token);
        var destination = new MemoryStream();
        Task<TunnelStats> receive = listener.ReceiveAsync(_ => Task.FromResult<System.IO.Stream>(destination), cts.Token);
        var sender = await TunnelSender.ConnectAsync("127.0.0.1", listener.LocalEndpoint.Port, token, new TunnelOptions(), null, cts.Token);
        await sender.WriteAsync(TunnelTestKit.RandomBytes(600_000, 5), cts.Token);
        await sender.FailAsync("boom");

        var error = await Assert.ThrowsAsync<TunnelException>(() => receive);
        Assert.Equal(TunnelException.RemoteError, error.ErrorId);
        Assert.Contains("boom", error.Message);
        await Assert.ThrowsAsync<ObjectDisposedException>(async () => await sender.WriteAsync(new byte[1], cts.Token));
    }

    [Fact]
    public async Task DestinationFailure_ReachesTheSender()
    {
        using var cts = new CancellationTokenSource(TestTimeout);
        var token = MigrationToken.Create();
        await using var listener = TunnelListener.Start(TunnelTestKit.Loopback, token);
        Task<TunnelStats> receive = listener.ReceiveAsync(_ => throw new IOException("QEMU is not listening"), cts.Token);
        await using var sender = await TunnelSender.ConnectAsync("127.0.0.1", listener.LocalEndpoint.Port, token, new TunnelOptions(), null, cts.Token);

        await Assert.ThrowsAsync<IOException>(() => receive);
        var error = await Assert.ThrowsAsync<TunnelException>(async () =>
        {
            await sender.WriteAsync(new byte[10], cts.Token);
            await sender.CompleteAsync(cts.Token);
        });
        Assert.Equal(TunnelException.RemoteError, error.ErrorId);
        Assert.Contains("QEMU is not listening", error.Message);
    }

    [Fact]
    public async Task BandwidthLimit_SlowsTheTransfer()
    {
        using var cts = new CancellationTokenSource(TestTimeout);
        byte[] data = TunnelTestKit.RandomBytes(2 << 20, 6);
        var warm = Stopwatch.StartNew();
        await TransferAsync(data, new TunnelOptions { FrameSize = 64 * 1024 }, cts.Token);
        output.WriteLine($"unlimited: {warm.Elapsed.TotalSeconds:F2} s");
        var stopwatch = Stopwatch.StartNew();
        var (received, senderStats, _) = await TransferAsync(data, new TunnelOptions { BandwidthBytesPerSecond = 4 << 20, FrameSize = 64 * 1024 }, cts.Token);
        stopwatch.Stop();

        output.WriteLine($"{senderStats.WireBytes} wire bytes in {stopwatch.Elapsed.TotalSeconds:F2} s");
        Assert.Equal(data.Length, received.Length);
        // (2 MiB - 0.4 MiB burst) / 4 MiB/s = 0.4 s; allow for timer slack.
        Assert.True(stopwatch.Elapsed >= TimeSpan.FromSeconds(0.35), $"took only {stopwatch.Elapsed}");
    }

    [Fact]
    public async Task SlowDestination_BlocksTheSenderWithBoundedMemory()
    {
        using var cts = new CancellationTokenSource(TestTimeout);
        var token = MigrationToken.Create();
        await using var listener = TunnelListener.Start(TunnelTestKit.Loopback, token);
        var gated = new GatedStream();
        Task<TunnelStats> receive = listener.ReceiveAsync(_ => Task.FromResult<System.IO.Stream>(gated), cts.Token);
        await using var sender = await TunnelSender.ConnectAsync("127.0.0.1", listener.LocalEndpoint.Port, token,
            new TunnelOptions { FrameSize = 64 * 1024, MaxFramesInFlight = 4 }, null, cts.Token);

        byte[] chunk = TunnelTestKit.RandomBytes(1 << 20, 8);
        const long total = 512L << 20;
        long accepted = 0;
        Task writer = Task.Run(async () =>
        {
            while (Interlocked.Read(ref accepted) < total)
            {
                await sender.WriteAsync(chunk, cts.Token);
                Interlocked.Add(ref accepted, chunk.Length);
            }
        });

        // Wait until the writer stalls: no progress over a quarter of a second (it never finishes if backpressure works).
        long last = -1;
        while (!writer.IsCompleted && Interlocked.Read(ref accepted) != last)
        {
            last = Interlocked.Read(ref accepted);
            await Task.WhenAny(writer, Task.Delay(250, cts.Token));
        }

        output.WriteLine($"writer stalled after {last >> 20} MiB");
        Assert.False(writer.IsCompleted, "the sender buffered everything instead of blocking");
        Assert.True(last < 64L << 20, $"{last} bytes accepted while the destination was blocked");
        Assert.Equal(0, gated.Written);

        gated.Open();
        await writer;
        await sender.CompleteAsync(cts.Token);
        TunnelStats stats = await receive;
        Assert.Equal(total, stats.PayloadBytes);
        Assert.Equal(total, gated.Written);
    }

    private static async Task<(byte[] Received, TunnelStats Sender, TunnelStats Receiver)> TransferAsync(byte[] data, TunnelOptions options, CancellationToken ct)
    {
        var token = MigrationToken.Create();
        await using var listener = TunnelListener.Start(TunnelTestKit.Loopback, token);
        var destination = new MemoryStream();
        Task<TunnelStats> receive = listener.ReceiveAsync(_ => Task.FromResult<System.IO.Stream>(destination), ct);
        await using var sender = await TunnelSender.ConnectAsync("127.0.0.1", listener.LocalEndpoint.Port, token, options, null, ct);
        await TunnelTestKit.WriteRaggedAsync(sender, data, ct);
        await sender.CompleteAsync(ct);
        return (destination.ToArray(), sender.Stats, await receive);
    }

    /// <summary>
    /// Sends 1 MiB (four raw 256 KiB frames) through a tampering proxy; returns the receiver's error (the sender must fail
    /// too) after checking that only the <paramref name="delivered"/> bytes before the damage reached the destination.
    /// </summary>
    private async Task<TunnelException> TransferThroughProxyAsync(long? flipAt, long? cutAt, CancellationToken ct, (long, int)? drop = null, (long, int)? replay = null, long delivered = 0)
    {
        var token = MigrationToken.Create();
        await using var listener = TunnelListener.Start(TunnelTestKit.Loopback, token);
        await using var proxy = new TamperProxy(listener.LocalEndpoint, flipAt, cutAt, drop, replay);
        var destination = new MemoryStream();
        Task<TunnelStats> receive = listener.ReceiveAsync(_ => Task.FromResult<System.IO.Stream>(destination), ct);
        await using var sender = await TunnelSender.ConnectAsync("127.0.0.1", proxy.Port, token, new TunnelOptions(), null, ct);

        var senderError = await Assert.ThrowsAsync<TunnelException>(async () =>
        {
            await sender.WriteAsync(TunnelTestKit.RandomBytes(1 << 20, 9), ct);
            await sender.CompleteAsync(ct);
        });
        output.WriteLine($"sender: {senderError.ErrorId}: {senderError.Message}");
        var receiverError = await Assert.ThrowsAsync<TunnelException>(() => receive);
        output.WriteLine($"receiver: {receiverError.ErrorId}: {receiverError.Message}");
        Assert.Equal(delivered, destination.Length);
        return receiverError;
    }
}
