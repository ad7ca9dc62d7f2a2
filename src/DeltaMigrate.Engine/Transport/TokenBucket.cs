namespace DeltaMigrate.Engine.Transport;

/// <summary>
/// Token bucket pacing wire bytes. Taking more than is available puts the bucket in debt and returns
/// how long to wait before sending, so frames larger than the burst still average out to the rate.
/// Time is passed in (timestamps in ticks of <c>frequency</c> per second) so the logic is testable.
/// </summary>
internal sealed class TokenBucket
{
    private readonly double _bytesPerTick;
    private readonly double _capacity;
    private readonly long _frequency;
    private double _tokens;
    private long _last;

    public TokenBucket(long bytesPerSecond, long burstBytes, long startTimestamp, long frequency)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(bytesPerSecond);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(burstBytes);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(frequency);
        BytesPerSecond = bytesPerSecond;
        _frequency = frequency;
        _bytesPerTick = (double)bytesPerSecond / frequency;
        _capacity = burstBytes;
        _tokens = burstBytes;
        _last = startTimestamp;
    }

    public long BytesPerSecond { get; }

    /// <summary>The default burst: a tenth of a second of traffic, at least 64 KiB.</summary>
    public static long DefaultBurst(long bytesPerSecond) => Math.Max(64 * 1024, bytesPerSecond / 10);

    /// <summary>Takes <paramref name="bytes"/> at time <paramref name="now"/>; returns how long to wait before sending them.</summary>
    public TimeSpan Take(long bytes, long now)
    {
        if (now > _last)
        {
            _tokens = Math.Min(_capacity, _tokens + ((now - _last) * _bytesPerTick));
            _last = now;
        }

        _tokens -= bytes;
        if (_tokens >= 0)
        {
            return TimeSpan.Zero;
        }

        double seconds = -_tokens / BytesPerSecond;
        return TimeSpan.FromTicks((long)Math.Ceiling(seconds * TimeSpan.TicksPerSecond));
    }

    internal double Tokens => _tokens;

    internal long Frequency => _frequency;
}
