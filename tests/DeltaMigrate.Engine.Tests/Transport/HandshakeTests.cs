using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using DeltaMigrate.Engine.Transport;
using DeltaMigrate.Engine.Tunnel;

namespace DeltaMigrate.Engine.Tests.Transport;

/// <summary>The v3 handshake: keys per the spec in Handshake.cs, forward secrecy, MITM and malformed keys.</summary>
public sealed class HandshakeTests
{
    private static readonly TimeSpan TestTimeout = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task TwoSessions_WithTheSameToken_GetDifferentKeys()
    {
        using var cts = new CancellationTokenSource(TestTimeout);
        var token = MigrationToken.Create();
        SessionKeys first = await HandshakeAsync(token, cts.Token);
        SessionKeys second = await HandshakeAsync(token, cts.Token);

        Assert.NotEqual(first.SenderToReceiver, second.SenderToReceiver);
        Assert.NotEqual(first.ReceiverToSender, second.ReceiverToSender);
    }

    [Fact]
    public async Task Keys_FollowTheSpec_AndNeedTheEphemeralPrivateKey()
    {
        using var cts = new CancellationTokenSource(TestTimeout);
        var token = MigrationToken.Create();
        await using var pair = await StreamPair.CreateAsync(cts.Token);
        Task<SessionKeys> server = Handshake.ServerAsync(pair.Server, token, cts.Token);

        // The test is the sender, built from the protocol comment alone.
        byte[] hello = new byte[Handshake.ServerHelloLength];
        await pair.Client.ReadExactlyAsync(hello, cts.Token);
        using var own = ECDiffieHellman.Create(ECCurve.NamedCurves.nistP256);
        byte[] body = [0, (byte)Handshake.Version, .. RandomNumberGenerator.GetBytes(32), .. PublicKey(own)];
        byte[] hash = SHA256.HashData([.. hello, .. body]);
        await pair.Client.WriteAsync((byte[])[.. body, .. Hmac(token, "client", hash)], cts.Token);
        byte[] reply = new byte[Handshake.ServerReplyLength];
        await pair.Client.ReadExactlyAsync(reply, cts.Token);
        SessionKeys keys = await server;

        Assert.Equal(0, reply[0]);
        Assert.Equal(Hmac(token, "server", hash), reply[1..]);
        using var serverKey = ImportPublicKey(hello[42..]);
        byte[] shared = own.DeriveRawSecretAgreement(serverKey.PublicKey);
        Assert.Equal(Hkdf(shared, token, "sender->receiver", hash), keys.SenderToReceiver);
        Assert.Equal(Hkdf(shared, token, "receiver->sender", hash), keys.ReceiverToSender);

        // Forward secrecy: the token and everything on the wire do not give the keys without an ephemeral private key.
        byte[] nonceR = hello[10..42];
        byte[] nonceS = body[2..34];
        using var other = ECDiffieHellman.Create(ECCurve.NamedCurves.nistP256);
        byte[] wrongShared = other.DeriveRawSecretAgreement(serverKey.PublicKey);
        byte[][] guesses =
        [
            Hmac(token, "sender->receiver", [.. nonceR, .. nonceS]), // the v2 derivation
            Hmac(token, "sender->receiver", hash),
            Hkdf(token.Secret.ToArray(), token, "sender->receiver", hash),
            Hkdf(hash, token, "sender->receiver", hash),
            Hkdf(new byte[32], token, "sender->receiver", hash),
            Hkdf(wrongShared, token, "sender->receiver", hash),
        ];
        foreach (byte[] guess in guesses)
        {
            Assert.NotEqual(guess, keys.SenderToReceiver);
        }
    }

    [Theory]
    [InlineData(false, false, null)]
    [InlineData(true, false, TunnelException.AuthenticationFailed)]
    [InlineData(false, true, TunnelException.AuthenticationFailed)]
    [InlineData(true, true, TunnelException.AuthenticationFailed)]
    public async Task RelayThatSubstitutesItsOwnPublicKey_FailsAuthentication(bool replaceReceiverKey, bool replaceSenderKey, string? expected)
    {
        using var cts = new CancellationTokenSource(TestTimeout);
        var token = MigrationToken.Create();
        await using var toSender = await StreamPair.CreateAsync(cts.Token);
        await using var toReceiver = await StreamPair.CreateAsync(cts.Token);
        using var attacker = ECDiffieHellman.Create(ECCurve.NamedCurves.nistP256);
        byte[] attackerKey = PublicKey(attacker);
        Task<SessionKeys> server = Handshake.ServerAsync(toReceiver.Server, token, cts.Token);
        Task<SessionKeys> client = Handshake.ClientAsync(toSender.Client, token, cts.Token);

        // The relay forwards every byte, except that it may swap in its own key (the classic ECDH MITM).
        byte[] hello = new byte[Handshake.ServerHelloLength];
        await toReceiver.Client.ReadExactlyAsync(hello, cts.Token);
        if (replaceReceiverKey)
        {
            attackerKey.CopyTo(hello, 42);
        }

        await toSender.Server.WriteAsync(hello, cts.Token);
        byte[] clientHello = new byte[Handshake.ClientHelloLength];
        await toSender.Server.ReadExactlyAsync(clientHello, cts.Token);
        if (replaceSenderKey)
        {
            attackerKey.CopyTo(clientHello, 34);
        }

        await toReceiver.Client.WriteAsync(clientHello, cts.Token);
        byte[] reply = new byte[Handshake.ServerReplyLength];
        await toReceiver.Client.ReadExactlyAsync(reply, cts.Token);
        await toSender.Server.WriteAsync(reply, cts.Token);

        if (expected is null)
        {
            Assert.Equal((await server).SenderToReceiver, (await client).SenderToReceiver);
            return;
        }

        Assert.Equal(expected, (await Assert.ThrowsAsync<TunnelException>(() => server)).ErrorId);
        Assert.Equal(expected, (await Assert.ThrowsAsync<TunnelException>(() => client)).ErrorId);
    }

    public static TheoryData<string> MalformedKeys => ["zeros", "origin", "compressed prefix", "not on the curve", "infinity"];

    [Theory]
    [MemberData(nameof(MalformedKeys))]
    public async Task MalformedReceiverKey_IsTunnelCorrupt(string kind)
    {
        using var cts = new CancellationTokenSource(TestTimeout);
        await using var pair = await StreamPair.CreateAsync(cts.Token);
        byte[] hello = [.. "DMTUNNEL"u8, 0, (byte)Handshake.Version, .. RandomNumberGenerator.GetBytes(32), .. Malformed(kind)];
        await pair.Server.WriteAsync(hello, cts.Token);

        var error = await Assert.ThrowsAsync<TunnelException>(() => Handshake.ClientAsync(pair.Client, MigrationToken.Create(), cts.Token));
        Assert.Equal(TunnelException.Corrupt, error.ErrorId);
        Assert.Contains("invalid public key", error.Message);
    }

    [Theory]
    [MemberData(nameof(MalformedKeys))]
    public async Task MalformedSenderKey_IsTunnelCorrupt_AndTheSenderIsTold(string kind)
    {
        using var cts = new CancellationTokenSource(TestTimeout);
        await using var pair = await StreamPair.CreateAsync(cts.Token);
        Task<SessionKeys> server = Handshake.ServerAsync(pair.Server, MigrationToken.Create(), cts.Token);
        await pair.Client.ReadExactlyAsync(new byte[Handshake.ServerHelloLength], cts.Token);
        byte[] clientHello = [0, (byte)Handshake.Version, .. RandomNumberGenerator.GetBytes(32), .. Malformed(kind), .. new byte[32]];
        await pair.Client.WriteAsync(clientHello, cts.Token);
        byte[] reply = new byte[Handshake.ServerReplyLength];
        await pair.Client.ReadExactlyAsync(reply, cts.Token);

        Assert.Equal(3, reply[0]);
        var error = await Assert.ThrowsAsync<TunnelException>(() => server);
        Assert.Equal(TunnelException.Corrupt, error.ErrorId);
    }

    private static async Task<SessionKeys> HandshakeAsync(MigrationToken token, CancellationToken ct)
    {
        await using var pair = await StreamPair.CreateAsync(ct);
        Task<SessionKeys> server = Handshake.ServerAsync(pair.Server, token, ct);
        SessionKeys client = await Handshake.ClientAsync(pair.Client, token, ct);
        SessionKeys keys = await server;
        Assert.Equal(keys.SenderToReceiver, client.SenderToReceiver);
        Assert.Equal(keys.ReceiverToSender, client.ReceiverToSender);
        return keys;
    }

    private static byte[] Malformed(string kind)
    {
        using var valid = ECDiffieHellman.Create(ECCurve.NamedCurves.nistP256);
        byte[] key = PublicKey(valid);
        switch (kind)
        {
            case "zeros":
                return new byte[65];
            case "origin":
                return [4, .. new byte[64]];
            case "compressed prefix":
                key[0] = 2;
                return key;
            case "not on the curve":
                key[64] ^= 1;
                return key;
            case "infinity":
                return [0, .. new byte[64]];
            default:
                throw new ArgumentOutOfRangeException(nameof(kind), kind, null);
        }
    }

    private static byte[] PublicKey(ECDiffieHellman key)
    {
        ECParameters p = key.ExportParameters(false);
        byte[] encoded = new byte[65];
        encoded[0] = 4;
        p.Q.X!.CopyTo(encoded, 33 - p.Q.X!.Length);
        p.Q.Y!.CopyTo(encoded, 65 - p.Q.Y!.Length);
        return encoded;
    }

    private static ECDiffieHellman ImportPublicKey(byte[] encoded) => ECDiffieHellman.Create(new ECParameters
    {
        Curve = ECCurve.NamedCurves.nistP256,
        Q = new ECPoint { X = encoded[1..33], Y = encoded[33..65] },
    });

    private static byte[] Hmac(MigrationToken token, string label, byte[] data) =>
        HMACSHA256.HashData(token.Secret, [.. System.Text.Encoding.ASCII.GetBytes(label), .. data]);

    private static byte[] Hkdf(byte[] ikm, MigrationToken token, string label, byte[] hash) =>
        HKDF.DeriveKey(HashAlgorithmName.SHA256, ikm, 32, token.Secret.ToArray(), [.. System.Text.Encoding.ASCII.GetBytes(label), .. hash]);

    /// <summary>Two ends of one loopback TCP connection.</summary>
    private sealed class StreamPair : IAsyncDisposable
    {
        private StreamPair(NetworkStream client, NetworkStream server)
        {
            Client = client;
            Server = server;
        }

        public NetworkStream Client { get; }

        public NetworkStream Server { get; }

        public static async Task<StreamPair> CreateAsync(CancellationToken ct)
        {
            using var listener = new TcpListener(IPAddress.Loopback, 0);
            listener.Start();
            var client = new Socket(SocketType.Stream, ProtocolType.Tcp);
            await client.ConnectAsync((IPEndPoint)listener.LocalEndpoint, ct);
            Socket server = await listener.AcceptSocketAsync(ct);
            return new StreamPair(new NetworkStream(client, ownsSocket: true), new NetworkStream(server, ownsSocket: true));
        }

        public async ValueTask DisposeAsync()
        {
            await Client.DisposeAsync();
            await Server.DisposeAsync();
        }
    }
}
