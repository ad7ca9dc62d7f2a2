using System.Diagnostics;

namespace DeltaMigrate.Engine.Transport;

/// <summary>
/// One <see cref="TokenBucket"/> that several tunnels take from at once, so concurrent migrations
/// share one -Bandwidth instead of each getting all of it. The clock is injectable for tests.
/// </summary>
public sealed class SharedTokenBucket
{
    private readonly object _lock = new();
    private readonly TokenBucket _bucket;
    private readonly Func<long> _clock;

    public SharedTokenBucket(long bytesPerSecond)
        : this(bytesPerSecond, TokenBucket.DefaultBurst(bytesPerSecond), Stopwatch.GetTimestamp, Stopwatch.Frequency)
    {
    }

    internal SharedTokenBucket(long bytesPerSecond, long burstBytes, Func<long> clock, long frequency)
    {
        _clock = clock;
        _bucket = new TokenBucket(bytesPerSecond, burstBytes, clock(), frequency);
    }

    public long BytesPerSecond => _bucket.BytesPerSecond;

    /// <summary>Takes <paramref name="bytes"/> now; returns how long the caller waits before sending them.</summary>
    public TimeSpan Take(long bytes)
    {
        lock (_lock)
        {
            return _bucket.Take(bytes, _clock());
        }
    }

    internal double Tokens
    {
        get
        {
            lock (_lock)
            {
                return _bucket.Tokens;
            }
        }
    }
}
