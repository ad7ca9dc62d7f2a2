using System.Buffers;
using System.Buffers.Binary;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;

namespace DeltaMigrate.Engine.Transport;

// Tunnel protocol, version 4 (Handshake.Version; 4 added zstd frames). All integers are big-endian. The tunnel runs over any
// System.IO.Stream (a NetworkStream today).
//
// Handshake: see Handshake.cs (ephemeral ECDH authenticated by the MigrationToken; it yields one AES-256 key
// per direction).
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
//   flags: bits 0-1 = the payload's codec (WireCodec): 0 raw, 1 an LZ4 block (K4os LZ4Codec), 2 a zstd
//     frame (any level; the level is the sender's business); 3 and the other bits are invalid. A compressed
//     payload decodes to exactly rawLength bytes and is only allowed on Data, and only when smaller.
//     Compression happens before encryption (ciphertext does not compress).
//   Raw: payloadLength == rawLength. Both are at most MaxFrameLength (4 MiB), checked before
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

    /// <summary>Receiver to sender: bytes the destination QEMU wrote back (its return path), for the source QEMU.</summary>
    Return = 10,
}

/// <summary>Frame constants and helpers of the tunnel protocol.</summary>
internal static class Protocol
{
    public const int HeaderLength = 18;
    public const int TagLength = 16;
    public const int KeyLength = 32;
    public const int GcmNonceLength = 12;
    public const int MaxFrameLength = 4 * 1024 * 1024;
    public const int MaxErrorMessageBytes = 16 * 1024;
    public const byte FlagLz4 = (byte)WireCodec.Lz4;

    /// <summary>The flag bits that carry the payload's <see cref="WireCodec"/>.</summary>
    public const byte CodecMask = 0x03;

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

    private static void WriteNonce(Span<byte> nonce, ulong sequence)
    {
        nonce[..4].Clear();
        BinaryPrimitives.WriteUInt64BigEndian(nonce[4..], sequence);
    }
}
