using System.Net.Sockets;
using DeltaMigrate.Engine.Transport;
using DeltaMigrate.Engine.Tunnel;

namespace DeltaMigrate.Engine.Tests.Tunnel;

/// <summary>Every read after the handshake has a deadline, and nobody waits behind a silent connection.</summary>
public sealed class TunnelLivenessTests
{
    private static readonly TimeSpan TestTimeout = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task ASilentConnection_DoesNotHoldUpTheRealSender()
    {
        using var cts = new CancellationTokenSource(TestTimeout);
        var token = MigrationToken.Create();
        // A handshake deadline far longer than the wait below: queued behind the silent one, the sender would miss it.
        var options = new TunnelOptions { HandshakeTimeout = TimeSpan.FromSeconds(45) };
        await using var listener = TunnelListener.Start(TunnelTestKit.Loopback, token, null, options);
        var accepting = listener.AcceptAsync(cts.Token);
        using var silent = new Socket(SocketType.Stream, ProtocolType.Tcp);
        await silent.ConnectAsync(listener.LocalEndpoint, cts.Token);

        await using var sender = await TunnelSender.ConnectAsync("127.0.0.1", listener.LocalEndpoint.Port, token, options, null, cts.Token)
            .WaitAsync(TimeSpan.FromSeconds(10), cts.Token);
        await using var tunnel = await accepting.WaitAsync(TimeSpan.FromSeconds(10), cts.Token);
        Assert.NotNull(tunnel);
    }

    [Fact]
    public async Task APeerThatGoesSilent_FailsTheReadAfterTheIdleTimeout_WhileKeepalivesKeepAQuietLinkUp()
    {
        using var cts = new CancellationTokenSource(TestTimeout);
        var token = MigrationToken.Create();
        var options = new TunnelOptions().WithLinkTimeout(TimeSpan.FromSeconds(2));
        await using var listener = TunnelListener.Start(TunnelTestKit.Loopback, token, null, options);
        var accepting = listener.AcceptAsync(cts.Token);
        await using var proxy = new Migration.FaultProxy(listener.LocalEndpoint, FrameType.Data, fromSender: true, occurrence: 1, Migration.FaultAction.Blackhole);
        await using var sender = await TunnelSender.ConnectAsync("127.0.0.1", proxy.Port, token, options, null, cts.Token);
        await using var tunnel = await accepting;

        // Quiet for three idle timeouts: only keepalives flow, and nothing fails.
        var quiet = tunnel.ExpectAsync(TunnelFrame.Prepare, cts.Token);
        Assert.NotSame(quiet, await Task.WhenAny(quiet, Task.Delay(TimeSpan.FromSeconds(6), cts.Token)));

        // Now the link goes dark (the proxy swallows everything from the first Data frame on).
        await sender.WriteAsync(new byte[100], cts.Token);
        await sender.FlushAsync(cts.Token);
        var error = await Assert.ThrowsAsync<TunnelException>(() => quiet.WaitAsync(TimeSpan.FromSeconds(20), cts.Token));
        Assert.Equal(TunnelException.IdleTimeout, error.ErrorId);
        Assert.True(proxy.Fired.IsCompleted);
    }
}
