using System.Buffers;
using System.Buffers.Binary;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;

namespace DeltaMigrate.Engine.Transport;

// Tunnel protocol, version 2. All integers are big-endian. The tunnel runs over any System.IO.Stream
// (a NetworkStream today).
//
// Handshake (mutual proof of the MigrationToken secret; the secret never crosses the wire):
//   receiver -> sender  "DMTUNNEL" | u16 version | nonceR[32]                                   (42 bytes)
//   sender -> receiver  u16 version | nonceS[32] | HMAC-SHA256(secret, "client" | nonceR | nonceS) (66 bytes)
//   receiver -> sender  u8 status | HMAC-SHA256(secret, "server" | nonceR | nonceS)             (33 bytes)
//     status 0 = accepted, 1 = authentication failed, 2 = version mismatch (MAC is zeros unless 0).
//     The receiver verifies with a constant-time compare; the sender verifies the receiver's MAC too.
//   Two AES-256 keys, one per direction (both directions number frames from 0, so one shared key would
//   reuse nonces):
//     sender -> receiver: HMAC-SHA256(secret, "sender->receiver" | nonceR | nonceS)
//     receiver -> sender: HMAC-SHA256(secret, "receiver->sender" | nonceR | nonceS)
//   Fresh nonces on both sides make every session's keys unique, so frames from another session
//   cannot be replayed.
//
// Frames (both directions; each direction numbers its frames 0, 1, 2, ... and the reader demands
// exactly the next number, so dropped, replayed or reordered frames are detected):
//   u8 type | u8 flags | u32 payloadLength | u32 rawLength | u64 sequence     (18-byte header, in clear)
//   ciphertext[payloadLength]
//   tag[16]
//   ciphertext | tag = AES-256-GCM(key of this direction, nonce = 4 zero bytes | u64 sequence,
//                                  plaintext = payload, associated data = header)
//   so the payload is encrypted and header, payload and tag are all authenticated.
//   type: Data = 1 (sender: migration-stream bytes), End = 2 (sender: no more data),
//         Error = 3 (either side: UTF-8 message, then the connection closes; from the sender before
//         Commit it also means "abort: the source will be resumed"),
//         Loaded = 4 (receiver: every byte reached the destination and, in a migration, its QEMU
//         loaded the complete state and is held paused), Prepare = 5 (sender: JSON, what it will
//         send), Prepared = 6 (receiver: JSON, the destination it checked and where QEMU listens),
//         Commit = 7 (sender: the source completed; run the destination), Running = 8 (receiver:
//         JSON, the destination's state after Commit), KeepAlive = 9 (either side, empty: sent
//         whenever a side has been quiet for a second, so every read can have an idle deadline).
//   A migration: Prepare, Prepared, Data..., End, Loaded, Commit, Running (KeepAlive anywhere).
//   flags: bit 0 = payload is an LZ4 block (K4os LZ4Codec) that decodes to rawLength bytes; only on Data.
//     Compression happens before encryption (ciphertext does not compress).
//   Without LZ4, payloadLength == rawLength. Both are at most MaxFrameLength (4 MiB), checked before
//   anything is allocated.

/// <summary>Frame types (see the protocol comment at the top of Protocol.cs).</summary>
internal enum FrameType : byte
{
    Data = 1,
    End = 2,
    Error = 3,
    Loaded = 4,
    Prepare = 5,
    Prepared = 6,
    Commit = 7,
    Running = 8,
    KeepAlive = 9,
}

/// <summary>Constants and handshake of the tunnel protocol.</summary>
internal static class Protocol
{
    public const ushort Version = 2;
    public const int NonceLength = 32;
    public const int ProofLength = 32;
    public const int HeaderLength = 18;
    public const int TagLength = 16;
    public const int KeyLength = 32;
    public const int GcmNonceLength = 12;
    public const int MaxFrameLength = 4 * 1024 * 1024;
    public const int MaxErrorMessageBytes = 16 * 1024;
    public const byte FlagLz4 = 1;

    public const int ServerHelloLength = 8 + 2 + NonceLength;
    public const int ClientHelloLength = 2 + NonceLength + ProofLength;
    public const int ServerReplyLength = 1 + ProofLength;

    private const byte StatusAccepted = 0;
    private const byte StatusAuthenticationFailed = 1;
    private const byte StatusVersionMismatch = 2;

    public static ReadOnlySpan<byte> Magic => "DMTUNNEL"u8;

    /// <summary>Receiver side of the handshake. Returns the session keys, or throws a <see cref="TunnelException"/>.</summary>
    public static async Task<SessionKeys> ServerHandshakeAsync(System.IO.Stream stream, MigrationToken token, CancellationToken ct)
    {
        byte[] hello = new byte[ServerHelloLength];
        Magic.CopyTo(hello);
        BinaryPrimitives.WriteUInt16BigEndian(hello.AsSpan(8), Version);
        RandomNumberGenerator.Fill(hello.AsSpan(10, NonceLength));
        byte[] nonceR = hello.AsSpan(10, NonceLength).ToArray();
        await WriteHandshakeAsync(stream, hello, ct);

        byte[] clientHello = new byte[ClientHelloLength];
        await ReadHandshakeAsync(stream, clientHello, ct);
        ushort clientVersion = BinaryPrimitives.ReadUInt16BigEndian(clientHello);
        byte[] reply = new byte[ServerReplyLength];
        if (clientVersion != Version)
        {
            reply[0] = StatusVersionMismatch;
            await WriteHandshakeAsync(stream, reply, ct);
            throw TunnelException.Version($"The sender speaks tunnel protocol version {clientVersion}; this receiver speaks version {Version}. Use the same DeltaMigrate version on both hosts.");
        }

        byte[] nonceS = clientHello.AsSpan(2, NonceLength).ToArray();
        if (!VerifyProof(token, "client"u8, nonceR, nonceS, clientHello.AsSpan(2 + NonceLength, ProofLength)))
        {
            reply[0] = StatusAuthenticationFailed;
            await WriteHandshakeAsync(stream, reply, ct);
            throw TunnelException.Auth("The sender did not present the right migration token.");
        }

        reply[0] = StatusAccepted;
        ComputeProof(token, "server"u8, nonceR, nonceS, reply.AsSpan(1));
        await WriteHandshakeAsync(stream, reply, ct);
        return DeriveKeys(token, nonceR, nonceS);
    }

    /// <summary>Sender side of the handshake. Returns the session keys, or throws a <see cref="TunnelException"/>.</summary>
    public static async Task<SessionKeys> ClientHandshakeAsync(System.IO.Stream stream, MigrationToken token, CancellationToken ct)
    {
        byte[] hello = new byte[ServerHelloLength];
        await ReadHandshakeAsync(stream, hello, ct);
        if (!hello.AsSpan(0, 8).SequenceEqual(Magic))
        {
            throw TunnelException.Version("The remote endpoint is not a DeltaMigrate tunnel receiver (bad greeting).");
        }

        ushort serverVersion = BinaryPrimitives.ReadUInt16BigEndian(hello.AsSpan(8));
        byte[] nonceR = hello.AsSpan(10, NonceLength).ToArray();
        byte[] clientHello = new byte[ClientHelloLength];
        BinaryPrimitives.WriteUInt16BigEndian(clientHello, Version);
        RandomNumberGenerator.Fill(clientHello.AsSpan(2, NonceLength));
        byte[] nonceS = clientHello.AsSpan(2, NonceLength).ToArray();
        if (serverVersion == Version)
        {
            ComputeProof(token, "client"u8, nonceR, nonceS, clientHello.AsSpan(2 + NonceLength));
        }

        // On a version mismatch the hello still goes out (with no proof) so the receiver can log why.
        await WriteHandshakeAsync(stream, clientHello, ct);
        if (serverVersion != Version)
        {
            throw TunnelException.Version($"The receiver speaks tunnel protocol version {serverVersion}; this sender speaks version {Version}. Use the same DeltaMigrate version on both hosts.");
        }

        byte[] reply = new byte[ServerReplyLength];
        await ReadHandshakeAsync(stream, reply, ct);
        switch (reply[0])
        {
            case StatusAccepted:
                break;
            case StatusAuthenticationFailed:
                throw TunnelException.Auth("The receiver rejected the migration token. Pass the token the destination printed for this migration.");
            case StatusVersionMismatch:
                throw TunnelException.Version($"The receiver does not speak tunnel protocol version {Version}. Use the same DeltaMigrate version on both hosts.");
            default:
                throw TunnelException.Corruption($"The receiver sent an unknown handshake status {reply[0]}.");
        }

        if (!VerifyProof(token, "server"u8, nonceR, nonceS, reply.AsSpan(1)))
        {
            throw TunnelException.Auth("The receiver could not prove it holds the migration token; it may not be the intended destination.");
        }

        return DeriveKeys(token, nonceR, nonceS);
    }

    /// <summary>
    /// Writes the header, encrypts the payload at <c>buffer[HeaderLength..]</c> in place and appends the tag; returns the frame length.
    /// </summary>
    public static int Seal(byte[] buffer, AesGcm aes, FrameType type, byte flags, int payloadLength, int rawLength, ulong sequence)
    {
        Span<byte> header = buffer.AsSpan(0, HeaderLength);
        header[0] = (byte)type;
        header[1] = flags;
        BinaryPrimitives.WriteUInt32BigEndian(header[2..], (uint)payloadLength);
        BinaryPrimitives.WriteUInt32BigEndian(header[6..], (uint)rawLength);
        BinaryPrimitives.WriteUInt64BigEndian(header[10..], sequence);
        Span<byte> nonce = stackalloc byte[GcmNonceLength];
        WriteNonce(nonce, sequence);
        Span<byte> payload = buffer.AsSpan(HeaderLength, payloadLength);
        aes.Encrypt(nonce, payload, payload, buffer.AsSpan(HeaderLength + payloadLength, TagLength), header);
        return HeaderLength + payloadLength + TagLength;
    }

    /// <summary>
    /// Authenticates a whole frame in <c>buffer[..HeaderLength + payloadLength + TagLength]</c> (nonce from its header's
    /// sequence number) and decrypts the payload in place; false if anything was altered.
    /// </summary>
    public static bool Open(byte[] buffer, AesGcm aes, int payloadLength, ulong sequence)
    {
        Span<byte> nonce = stackalloc byte[GcmNonceLength];
        WriteNonce(nonce, sequence);
        Span<byte> payload = buffer.AsSpan(HeaderLength, payloadLength);
        try
        {
            aes.Decrypt(nonce, payload, buffer.AsSpan(HeaderLength + payloadLength, TagLength), payload, buffer.AsSpan(0, HeaderLength));
            return true;
        }
        catch (CryptographicException)
        {
            return false;
        }
    }

    /// <summary>An AES-256-GCM instance for one direction of one session. Not thread-safe: one user at a time.</summary>
    public static AesGcm CreateCipher(byte[] key) => new(key, TagLength);

    /// <summary>Rents a frame buffer with room for the header, <paramref name="payloadCapacity"/> bytes and the tag.</summary>
    public static byte[] Rent(int payloadCapacity) => ArrayPool<byte>.Shared.Rent(HeaderLength + payloadCapacity + TagLength);

    public static void Return(byte[] buffer) => ArrayPool<byte>.Shared.Return(buffer);

    /// <summary>An Error frame's payload: the message as UTF-8, cut to <see cref="MaxErrorMessageBytes"/>.</summary>
    public static byte[] RentErrorFrame(string message, out int payloadLength)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(message);
        payloadLength = Math.Min(bytes.Length, MaxErrorMessageBytes);
        byte[] buffer = Rent(payloadLength);
        bytes.AsSpan(0, payloadLength).CopyTo(buffer.AsSpan(HeaderLength));
        return buffer;
    }

    public static string DecodeErrorMessage(ReadOnlySpan<byte> payload) => Encoding.UTF8.GetString(payload);

    /// <summary>True for exceptions that mean the connection itself failed.</summary>
    public static bool IsConnectionFailure(Exception ex) => ex is IOException or SocketException or ObjectDisposedException;

    private static async Task WriteHandshakeAsync(System.IO.Stream stream, byte[] data, CancellationToken ct)
    {
        try
        {
            await stream.WriteAsync(data, ct);
            // Not cancellable: once a reply is written it must go out, so a rejection is reported as such.
            await stream.FlushAsync(CancellationToken.None);
        }
        catch (Exception ex) when (IsConnectionFailure(ex))
        {
            throw TunnelException.ClosedEarly("The connection closed during the tunnel handshake.", ex);
        }
    }

    private static async Task ReadHandshakeAsync(System.IO.Stream stream, byte[] buffer, CancellationToken ct)
    {
        int read;
        try
        {
            read = await stream.ReadAtLeastAsync(buffer, buffer.Length, throwOnEndOfStream: false, ct);
        }
        catch (Exception ex) when (IsConnectionFailure(ex))
        {
            throw TunnelException.ClosedEarly("The connection closed during the tunnel handshake.", ex);
        }

        if (read < buffer.Length)
        {
            throw TunnelException.ClosedEarly("The connection closed during the tunnel handshake (the other side may have rejected it).");
        }
    }

    private static void ComputeProof(MigrationToken token, ReadOnlySpan<byte> label, byte[] nonceR, byte[] nonceS, Span<byte> destination)
    {
        Span<byte> data = stackalloc byte[16 + (2 * NonceLength)];
        label.CopyTo(data);
        nonceR.CopyTo(data[label.Length..]);
        nonceS.CopyTo(data[(label.Length + NonceLength)..]);
        HMACSHA256.HashData(token.Secret, data[..(label.Length + (2 * NonceLength))], destination);
    }

    private static bool VerifyProof(MigrationToken token, ReadOnlySpan<byte> label, byte[] nonceR, byte[] nonceS, ReadOnlySpan<byte> proof)
    {
        Span<byte> expected = stackalloc byte[ProofLength];
        ComputeProof(token, label, nonceR, nonceS, expected);
        return CryptographicOperations.FixedTimeEquals(expected, proof);
    }

    private static SessionKeys DeriveKeys(MigrationToken token, byte[] nonceR, byte[] nonceS)
    {
        var keys = new SessionKeys(new byte[KeyLength], new byte[KeyLength]);
        ComputeProof(token, "sender->receiver"u8, nonceR, nonceS, keys.SenderToReceiver);
        ComputeProof(token, "receiver->sender"u8, nonceR, nonceS, keys.ReceiverToSender);
        return keys;
    }

    private static void WriteNonce(Span<byte> nonce, ulong sequence)
    {
        nonce[..4].Clear();
        BinaryPrimitives.WriteUInt64BigEndian(nonce[4..], sequence);
    }
}

/// <summary>The AES-256-GCM keys of one session, one per direction.</summary>
internal sealed record SessionKeys(byte[] SenderToReceiver, byte[] ReceiverToSender);
