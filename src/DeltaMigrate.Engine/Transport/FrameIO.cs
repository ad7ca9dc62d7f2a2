using System.Buffers.Binary;
using System.Security.Cryptography;
using DeltaMigrate.Engine.Tunnel;

namespace DeltaMigrate.Engine.Transport;

/// <summary>A received frame; <see cref="Payload"/> is valid until the next read.</summary>
internal readonly record struct Frame(FrameType Type, byte Flags, int RawLength, ReadOnlyMemory<byte> Payload, int WireLength)
{
    public WireCodec Codec => (WireCodec)(Flags & Protocol.CodecMask);
}

/// <summary>Writes sealed frames to a stream, numbering them. Not thread-safe: one writer at a time (so is its AesGcm).</summary>
internal sealed class FrameWriter(System.IO.Stream stream, byte[] key) : IDisposable
{
    private readonly AesGcm _aes = Protocol.CreateCipher(key);
    private ulong _sequence;

    /// <summary>Seals and writes the frame whose payload is at <c>buffer[HeaderLength..]</c>; returns its wire length.</summary>
    public async ValueTask<int> SendAsync(byte[] buffer, FrameType type, byte flags, int payloadLength, int rawLength, CancellationToken ct)
    {
        int length = Protocol.Seal(buffer, _aes, type, flags, payloadLength, rawLength, _sequence++);
        try
        {
            await stream.WriteAsync(buffer.AsMemory(0, length), ct);
            if (type != FrameType.Data)
            {
                await stream.FlushAsync(ct);
            }
        }
        catch (Exception ex) when (Protocol.IsConnectionFailure(ex))
        {
            throw TunnelException.ClosedEarly("The tunnel connection broke while sending.", ex);
        }

        return length;
    }

    public void Dispose() => _aes.Dispose();
}

/// <summary>Reads, authenticates and decrypts frames from a stream into one pooled buffer. Not thread-safe (nor is its AesGcm).</summary>
internal sealed class FrameReader(System.IO.Stream stream, byte[] key) : IDisposable
{
    private readonly AesGcm _aes = Protocol.CreateCipher(key);
    private byte[] _buffer = Protocol.Rent(64 * 1024);
    private ulong _expected;

    /// <summary>Reads the next frame; throws <see cref="TunnelException"/> (Corrupt or Closed) when it cannot be trusted.</summary>
    public async ValueTask<Frame> ReadAsync(CancellationToken ct)
    {
        await ReadExactAsync(_buffer.AsMemory(0, Protocol.HeaderLength), atBoundary: true, ct);
        var type = (FrameType)_buffer[0];
        byte flags = _buffer[1];
        uint payloadLength = BinaryPrimitives.ReadUInt32BigEndian(_buffer.AsSpan(2));
        uint rawLength = BinaryPrimitives.ReadUInt32BigEndian(_buffer.AsSpan(6));
        ulong sequence = BinaryPrimitives.ReadUInt64BigEndian(_buffer.AsSpan(10));
        if (payloadLength > Protocol.MaxFrameLength || rawLength > Protocol.MaxFrameLength)
        {
            throw TunnelException.Corruption($"Frame {_expected} is corrupt: its length ({payloadLength} bytes, {rawLength} raw) exceeds the {Protocol.MaxFrameLength}-byte limit.");
        }

        int length = (int)payloadLength;
        int needed = Protocol.HeaderLength + length + Protocol.TagLength;
        if (_buffer.Length < needed)
        {
            byte[] bigger = Protocol.Rent(length);
            _buffer.AsSpan(0, Protocol.HeaderLength).CopyTo(bigger);
            Protocol.Return(_buffer);
            _buffer = bigger;
        }

        await ReadExactAsync(_buffer.AsMemory(Protocol.HeaderLength, length + Protocol.TagLength), atBoundary: false, ct);
        // Authenticate first (nonce from the frame's own number), then demand the next number: an authentic
        // but replayed or reordered frame is then reported as such.
        if (!Protocol.Open(_buffer, _aes, length, sequence))
        {
            throw TunnelException.Corruption($"Frame {_expected} failed its integrity check: the data was damaged or tampered with in transit.");
        }

        if (sequence != _expected)
        {
            throw TunnelException.Corruption($"Frame {sequence} arrived where frame {_expected} was expected: frames were replayed, dropped or reordered.");
        }

        _expected++;
        var codec = (WireCodec)(flags & Protocol.CodecMask);
        if (type is < FrameType.Data or > FrameType.Return || (flags & ~Protocol.CodecMask) != 0 || codec > WireCodec.Zstd
            || (codec != WireCodec.Raw ? type != FrameType.Data || length >= rawLength : length != rawLength))
        {
            throw TunnelException.Corruption($"Frame {sequence} is malformed (type {(byte)type}, flags {flags}, {length} bytes, {rawLength} raw).");
        }

        return new Frame(type, flags, (int)rawLength, _buffer.AsMemory(Protocol.HeaderLength, length), needed);
    }

    public void Dispose()
    {
        _aes.Dispose();
        Protocol.Return(_buffer);
        _buffer = [];
    }

    private async ValueTask ReadExactAsync(Memory<byte> destination, bool atBoundary, CancellationToken ct)
    {
        int read;
        try
        {
            read = await stream.ReadAtLeastAsync(destination, destination.Length, throwOnEndOfStream: false, ct);
        }
        catch (Exception ex) when (Protocol.IsConnectionFailure(ex))
        {
            throw TunnelException.ClosedEarly($"The tunnel connection broke while receiving frame {_expected}.", ex);
        }

        if (read < destination.Length)
        {
            throw TunnelException.ClosedEarly(atBoundary && read == 0
                ? $"The tunnel connection closed before the transfer finished (after {_expected} frames)."
                : $"The tunnel connection closed in the middle of frame {_expected}.");
        }
    }
}
