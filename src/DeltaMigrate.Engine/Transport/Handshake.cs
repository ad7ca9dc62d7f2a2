using System.Buffers.Binary;
using System.Security.Cryptography;
using DeltaMigrate.Engine.Tunnel;

namespace DeltaMigrate.Engine.Transport;

// Tunnel handshake, protocol version 3. All integers are big-endian.
//
// An ephemeral ECDH (P-256) exchange, authenticated by the MigrationToken secret. The token never crosses the
// wire, and the session keys cannot be computed from the token plus a recording of the session (forward secrecy):
// they also need one side's ephemeral private key, which is discarded once the keys are derived.
//
//   receiver -> sender  "DMTUNNEL" | u16 version | nonceR[32] | pubR[65]                      (107 bytes)
//   sender -> receiver  u16 version | nonceS[32] | pubS[65] | proofS[32]                      (131 bytes)
//   receiver -> sender  u8 status | proofR[32]                                               (33 bytes)
//     pub = uncompressed P-256 point 0x04 | X[32] | Y[32]; a point that does not import (wrong prefix, not on
//       the curve) fails the handshake as TunnelCorrupt.
//     transcript = the receiver's hello (107 bytes) | the sender's hello without its proof (99 bytes);
//     H = SHA-256(transcript), so both proofs and both keys bind the nonces and both public keys.
//     proofS = HMAC-SHA256(secret, "client" | H), proofR = HMAC-SHA256(secret, "server" | H).
//     status 0 = accepted, 1 = authentication failed, 2 = version mismatch, 3 = malformed hello (proofR is
//       zeros unless 0). Proofs are compared in constant time; the sender verifies proofR too.
//   Version compatibility: the first 42 bytes of the receiver's hello and the first 66 bytes of the sender's
//   are what versions 1 and 2 sent and read, so every side reads that much, checks the version, and only then
//   reads the rest. A sender that meets another version still sends its hello (no key, no proof) so the
//   receiver can report the mismatch; the receiver answers it with status 2.
//   Keys: shared = ECDH(own private key, peer public key) (the raw X coordinate, 32 bytes), then per direction
//   (both directions number frames from 0, so one shared key would reuse nonces):
//     sender -> receiver: HKDF-SHA256(ikm = shared, salt = secret, info = "sender->receiver" | H, 32 bytes)
//     receiver -> sender: HKDF-SHA256(ikm = shared, salt = secret, info = "receiver->sender" | H, 32 bytes)
//   Fresh nonces and keys on both sides make every session's keys unique, so frames from another session
//   cannot be replayed.

/// <summary>The tunnel handshake (see the comment at the top of Handshake.cs).</summary>
internal static class Handshake
{
    public const ushort Version = 4;
    public const int NonceLength = 32;
    public const int ProofLength = 32;
    public const int PublicKeyLength = 1 + (2 * CoordinateLength);

    public const int ServerHelloLength = 8 + 2 + NonceLength + PublicKeyLength;
    public const int ClientHelloLength = 2 + NonceLength + PublicKeyLength + ProofLength;
    public const int ServerReplyLength = 1 + ProofLength;

    /// <summary>The receiver's hello as versions 1 and 2 sent it: magic, version, nonce.</summary>
    public const int LegacyServerHelloLength = 8 + 2 + NonceLength;

    /// <summary>The sender's hello as versions 1 and 2 sent it: version, nonce, proof.</summary>
    public const int LegacyClientHelloLength = 2 + NonceLength + ProofLength;

    private const int CoordinateLength = 32;
    private const int ClientBodyLength = ClientHelloLength - ProofLength;
    private const int ServerKeyOffset = 8 + 2 + NonceLength;
    private const int ClientKeyOffset = 2 + NonceLength;

    private const byte StatusAccepted = 0;
    private const byte StatusAuthenticationFailed = 1;
    private const byte StatusVersionMismatch = 2;
    private const byte StatusMalformed = 3;

    public static ReadOnlySpan<byte> Magic => "DMTUNNEL"u8;

    /// <summary>Receiver side of the handshake. Returns the session keys, or throws a <see cref="TunnelException"/>.</summary>
    public static async Task<SessionKeys> ServerAsync(System.IO.Stream stream, MigrationToken token, CancellationToken ct)
    {
        using ECDiffieHellman ephemeral = ECDiffieHellman.Create(ECCurve.NamedCurves.nistP256);
        byte[] hello = new byte[ServerHelloLength];
        Magic.CopyTo(hello);
        BinaryPrimitives.WriteUInt16BigEndian(hello.AsSpan(8), Version);
        RandomNumberGenerator.Fill(hello.AsSpan(10, NonceLength));
        ExportPublicKey(ephemeral, hello.AsSpan(ServerKeyOffset, PublicKeyLength));
        await WriteAsync(stream, hello, ct);

        byte[] clientHello = new byte[ClientHelloLength];
        await ReadAsync(stream, clientHello.AsMemory(0, LegacyClientHelloLength), ct);
        ushort clientVersion = BinaryPrimitives.ReadUInt16BigEndian(clientHello);
        byte[] reply = new byte[ServerReplyLength];
        if (clientVersion != Version)
        {
            reply[0] = StatusVersionMismatch;
            await WriteAsync(stream, reply, ct);
            throw TunnelException.Version($"The sender speaks tunnel protocol version {clientVersion}; this receiver speaks version {Version}. Use the same DeltaMigrate version on both hosts.");
        }

        await ReadAsync(stream, clientHello.AsMemory(LegacyClientHelloLength), ct);
        using ECDiffieHellman? peer = ImportPublicKey(clientHello.AsSpan(ClientKeyOffset, PublicKeyLength));
        if (peer is null)
        {
            reply[0] = StatusMalformed;
            await WriteAsync(stream, reply, ct);
            throw TunnelException.Corruption("The sender's handshake carried an invalid public key.");
        }

        byte[] transcriptHash = HashTranscript(hello, clientHello.AsSpan(0, ClientBodyLength));
        if (!VerifyProof(token, "client"u8, transcriptHash, clientHello.AsSpan(ClientBodyLength, ProofLength)))
        {
            reply[0] = StatusAuthenticationFailed;
            await WriteAsync(stream, reply, ct);
            throw TunnelException.Auth("The sender did not present the right migration token.");
        }

        reply[0] = StatusAccepted;
        ComputeProof(token, "server"u8, transcriptHash, reply.AsSpan(1));
        await WriteAsync(stream, reply, ct);
        return DeriveKeys(ephemeral, peer, token, transcriptHash);
    }

    /// <summary>Sender side of the handshake. Returns the session keys, or throws a <see cref="TunnelException"/>.</summary>
    public static async Task<SessionKeys> ClientAsync(System.IO.Stream stream, MigrationToken token, CancellationToken ct)
    {
        byte[] hello = new byte[ServerHelloLength];
        await ReadAsync(stream, hello.AsMemory(0, LegacyServerHelloLength), ct);
        if (!hello.AsSpan(0, 8).SequenceEqual(Magic))
        {
            throw TunnelException.Version("The remote endpoint is not a DeltaMigrate tunnel receiver (bad greeting).");
        }

        ushort serverVersion = BinaryPrimitives.ReadUInt16BigEndian(hello.AsSpan(8));
        byte[] clientHello = new byte[ClientHelloLength];
        BinaryPrimitives.WriteUInt16BigEndian(clientHello, Version);
        RandomNumberGenerator.Fill(clientHello.AsSpan(2, NonceLength));
        if (serverVersion != Version)
        {
            // The hello still goes out (no key, no proof) so the receiver can log why.
            await WriteAsync(stream, clientHello, ct);
            throw TunnelException.Version($"The receiver speaks tunnel protocol version {serverVersion}; this sender speaks version {Version}. Use the same DeltaMigrate version on both hosts.");
        }

        await ReadAsync(stream, hello.AsMemory(LegacyServerHelloLength), ct);
        using ECDiffieHellman peer = ImportPublicKey(hello.AsSpan(ServerKeyOffset, PublicKeyLength))
            ?? throw TunnelException.Corruption("The receiver's handshake carried an invalid public key.");
        using ECDiffieHellman ephemeral = ECDiffieHellman.Create(ECCurve.NamedCurves.nistP256);
        ExportPublicKey(ephemeral, clientHello.AsSpan(ClientKeyOffset, PublicKeyLength));
        byte[] transcriptHash = HashTranscript(hello, clientHello.AsSpan(0, ClientBodyLength));
        ComputeProof(token, "client"u8, transcriptHash, clientHello.AsSpan(ClientBodyLength));
        await WriteAsync(stream, clientHello, ct);

        byte[] reply = new byte[ServerReplyLength];
        await ReadAsync(stream, reply, ct);
        switch (reply[0])
        {
            case StatusAccepted:
                break;
            case StatusAuthenticationFailed:
                throw TunnelException.Auth("The receiver rejected the migration token. Pass the token the destination printed for this migration.");
            case StatusVersionMismatch:
                throw TunnelException.Version($"The receiver does not speak tunnel protocol version {Version}. Use the same DeltaMigrate version on both hosts.");
            case StatusMalformed:
                throw TunnelException.Corruption("The receiver rejected this sender's handshake as malformed.");
            default:
                throw TunnelException.Corruption($"The receiver sent an unknown handshake status {reply[0]}.");
        }

        if (!VerifyProof(token, "server"u8, transcriptHash, reply.AsSpan(1)))
        {
            throw TunnelException.Auth("The receiver could not prove it holds the migration token; it may not be the intended destination.");
        }

        return DeriveKeys(ephemeral, peer, token, transcriptHash);
    }

    private static void ExportPublicKey(ECDiffieHellman key, Span<byte> destination)
    {
        ECParameters parameters = key.ExportParameters(includePrivateParameters: false);
        destination.Clear();
        destination[0] = 0x04;
        // Right-aligned: a coordinate with leading zero bytes may come out shorter than 32 bytes.
        byte[] x = parameters.Q.X!;
        byte[] y = parameters.Q.Y!;
        x.CopyTo(destination[(1 + CoordinateLength - x.Length)..]);
        y.CopyTo(destination[(1 + (2 * CoordinateLength) - y.Length)..]);
    }

    /// <summary>The peer's public key, or null if it is not an uncompressed point on P-256.</summary>
    private static ECDiffieHellman? ImportPublicKey(ReadOnlySpan<byte> encoded)
    {
        if (encoded[0] != 0x04)
        {
            return null;
        }

        var parameters = new ECParameters
        {
            Curve = ECCurve.NamedCurves.nistP256,
            Q = new ECPoint { X = encoded.Slice(1, CoordinateLength).ToArray(), Y = encoded.Slice(1 + CoordinateLength, CoordinateLength).ToArray() },
        };
        try
        {
            // Import checks that the point is on the curve (an off-curve point would leak the private key).
            return ECDiffieHellman.Create(parameters);
        }
        catch (CryptographicException)
        {
            return null;
        }
    }

    private static byte[] HashTranscript(ReadOnlySpan<byte> serverHello, ReadOnlySpan<byte> clientBody)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        sha.AppendData(serverHello);
        sha.AppendData(clientBody);
        return sha.GetHashAndReset();
    }

    private static void ComputeProof(MigrationToken token, ReadOnlySpan<byte> label, byte[] transcriptHash, Span<byte> destination)
    {
        Span<byte> data = stackalloc byte[16 + SHA256.HashSizeInBytes];
        label.CopyTo(data);
        transcriptHash.CopyTo(data[label.Length..]);
        HMACSHA256.HashData(token.Secret, data[..(label.Length + transcriptHash.Length)], destination);
    }

    private static bool VerifyProof(MigrationToken token, ReadOnlySpan<byte> label, byte[] transcriptHash, ReadOnlySpan<byte> proof)
    {
        Span<byte> expected = stackalloc byte[ProofLength];
        ComputeProof(token, label, transcriptHash, expected);
        return CryptographicOperations.FixedTimeEquals(expected, proof);
    }

    private static SessionKeys DeriveKeys(ECDiffieHellman own, ECDiffieHellman peer, MigrationToken token, byte[] transcriptHash)
    {
        byte[] shared;
        try
        {
            using ECDiffieHellmanPublicKey peerKey = peer.PublicKey;
            shared = own.DeriveRawSecretAgreement(peerKey);
        }
        catch (CryptographicException)
        {
            // Import already validated the point; this is a last line of defence, not an expected path.
            throw TunnelException.Corruption("The tunnel handshake's key agreement failed.");
        }

        try
        {
            var keys = new SessionKeys(new byte[Protocol.KeyLength], new byte[Protocol.KeyLength]);
            DeriveKey(shared, token, "sender->receiver"u8, transcriptHash, keys.SenderToReceiver);
            DeriveKey(shared, token, "receiver->sender"u8, transcriptHash, keys.ReceiverToSender);
            return keys;
        }
        finally
        {
            CryptographicOperations.ZeroMemory(shared);
        }
    }

    private static void DeriveKey(byte[] shared, MigrationToken token, ReadOnlySpan<byte> label, byte[] transcriptHash, Span<byte> destination)
    {
        Span<byte> info = stackalloc byte[16 + SHA256.HashSizeInBytes];
        label.CopyTo(info);
        transcriptHash.CopyTo(info[label.Length..]);
        HKDF.DeriveKey(HashAlgorithmName.SHA256, shared, destination, token.Secret, info[..(label.Length + transcriptHash.Length)]);
    }

    private static async Task WriteAsync(System.IO.Stream stream, byte[] data, CancellationToken ct)
    {
        try
        {
            await stream.WriteAsync(data, ct);
            // Not cancellable: once a reply is written it must go out, so a rejection is reported as such.
            await stream.FlushAsync(CancellationToken.None);
        }
        catch (Exception ex) when (Protocol.IsConnectionFailure(ex))
        {
            throw TunnelException.ClosedEarly("The connection closed during the tunnel handshake.", ex);
        }
    }

    private static async Task ReadAsync(System.IO.Stream stream, Memory<byte> buffer, CancellationToken ct)
    {
        int read;
        try
        {
            read = await stream.ReadAtLeastAsync(buffer, buffer.Length, throwOnEndOfStream: false, ct);
        }
        catch (Exception ex) when (Protocol.IsConnectionFailure(ex))
        {
            throw TunnelException.ClosedEarly("The connection closed during the tunnel handshake.", ex);
        }

        if (read < buffer.Length)
        {
            throw TunnelException.ClosedEarly("The connection closed during the tunnel handshake (the other side may have rejected it).");
        }
    }
}

/// <summary>The AES-256-GCM keys of one session, one per direction.</summary>
internal sealed record SessionKeys(byte[] SenderToReceiver, byte[] ReceiverToSender);
