using System.Diagnostics;
using DeltaMigrate.Engine.Transport;

namespace DeltaMigrate.Engine.Tunnel;

/// <summary>
/// Counters for one tunnel, safe to read from any thread while the transfer runs.
/// PayloadBytes are the raw migration-stream bytes; WireBytes are frame bytes on the wire
/// (headers, payloads, tags; the handshake is not counted). Frames and CompressedFrames count Data frames.
/// CompressTime is compression time (every codec, probes included) on the sender, decompression time on
/// the receiver. <see cref="Codecs"/> splits the Data frames by codec (zstd by level on the sender).
/// </summary>
public sealed class TunnelStats
{
    private long _payloadBytes;
    private long _wireBytes;
    private long _frames;
    private long _compressedFrames;
    private long _compressTicks;
    private readonly Dictionary<CodecOption, (long Frames, long Stream, long Wire)> _codecs = [];

    public long PayloadBytes => Interlocked.Read(ref _payloadBytes);

    public long WireBytes => Interlocked.Read(ref _wireBytes);

    public long Frames => Interlocked.Read(ref _frames);

    public long CompressedFrames => Interlocked.Read(ref _compressedFrames);

    public TimeSpan CompressTime => Stopwatch.GetElapsedTime(0, Interlocked.Read(ref _compressTicks));

    /// <summary>Data frames by codec, in codec order (raw, lz4, zstd by level).</summary>
    public IReadOnlyList<CodecBytes> Codecs
    {
        get
        {
            lock (_codecs)
            {
                return [.. _codecs.OrderBy(c => c.Key.Codec).ThenBy(c => c.Key.Level).Select(c => new CodecBytes(c.Key.Name, c.Value.Frames, c.Value.Stream, c.Value.Wire))];
            }
        }
    }

    /// <summary>A Data frame of <paramref name="payloadBytes"/> stream bytes that went as <paramref name="wireBytes"/> with <paramref name="codec"/>.</summary>
    internal void AddDataFrame(long payloadBytes, CodecOption codec, long wireBytes)
    {
        Interlocked.Add(ref _payloadBytes, payloadBytes);
        Interlocked.Increment(ref _frames);
        if (codec.Codec != WireCodec.Raw)
        {
            Interlocked.Increment(ref _compressedFrames);
        }

        lock (_codecs)
        {
            var (frames, stream, wire) = _codecs.GetValueOrDefault(codec);
            _codecs[codec] = (frames + 1, stream + payloadBytes, wire + wireBytes);
        }
    }

    internal void AddWire(long bytes) => Interlocked.Add(ref _wireBytes, bytes);

    internal void AddCompressTicks(long stopwatchTicks) => Interlocked.Add(ref _compressTicks, stopwatchTicks);

    public override string ToString() =>
        $"{PayloadBytes} payload bytes in {Frames} frames ({CompressedFrames} compressed), {WireBytes} wire bytes, compression {CompressTime.TotalMilliseconds:F0} ms ({string.Join(", ", Codecs.Select(c => $"{c.Codec}: {c.Frames} frames, {c.StreamBytes} -> {c.WireBytes} bytes"))})";
}
