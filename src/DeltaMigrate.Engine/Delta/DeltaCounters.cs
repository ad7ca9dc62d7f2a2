using System.Diagnostics;

namespace DeltaMigrate.Engine.Delta;

/// <summary>What the transcoder did so far; fields are updated with Interlocked and read with Volatile.</summary>
public sealed class DeltaCounters
{
    public long StreamBytes;
    public long ZeroPages;
    public long RawPages;
    public long XbzrlePages;
    public long XbzrleBytes;
    public long UnchangedPages;
    public long CacheHits;
    public long CacheMisses;
    public long CacheEvictions;
    public long Overflows;
    public long EncodeTicks;
    public long CacheSize;

    internal void Add(ref long counter, long amount = 1) => Interlocked.Add(ref counter, amount);

    internal void Set(ref long counter, long value) => Volatile.Write(ref counter, value);

    public static long Read(ref long counter) => Volatile.Read(ref counter);

    public TimeSpan EncodeTime => Stopwatch.GetElapsedTime(0, Read(ref EncodeTicks));
}
