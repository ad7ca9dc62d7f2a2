using System.Diagnostics;

namespace DeltaMigrate.Engine.Transport;

/// <summary>
/// Counters for one tunnel, safe to read from any thread while the transfer runs.
/// PayloadBytes are the raw migration-stream bytes; WireBytes are frame bytes on the wire
/// (headers, payloads, tags; the handshake is not counted). Frames and CompressedFrames count Data frames.
/// CompressTime is LZ4 compression time on the sender, decompression time on the receiver.
/// </summary>
public sealed class TunnelStats
{
    private long _payloadBytes;
    private long _wireBytes;
    private long _frames;
    private long _compressedFrames;
    private long _compressTicks;

    public long PayloadBytes => Interlocked.Read(ref _payloadBytes);

    public long WireBytes => Interlocked.Read(ref _wireBytes);

    public long Frames => Interlocked.Read(ref _frames);

    public long CompressedFrames => Interlocked.Read(ref _compressedFrames);

    public TimeSpan CompressTime => Stopwatch.GetElapsedTime(0, Interlocked.Read(ref _compressTicks));

    internal void AddDataFrame(long payloadBytes, bool compressed)
    {
        Interlocked.Add(ref _payloadBytes, payloadBytes);
        Interlocked.Increment(ref _frames);
        if (compressed)
        {
            Interlocked.Increment(ref _compressedFrames);
        }
    }

    internal void AddWire(long bytes) => Interlocked.Add(ref _wireBytes, bytes);

    internal void AddCompressTicks(long stopwatchTicks) => Interlocked.Add(ref _compressTicks, stopwatchTicks);

    public override string ToString() =>
        $"{PayloadBytes} payload bytes in {Frames} frames ({CompressedFrames} compressed), {WireBytes} wire bytes, compression {CompressTime.TotalMilliseconds:F0} ms";
}
