namespace DeltaMigrate.Engine.Migration;

/// <summary>
/// -Bandwidth for concurrent migrations that QEMU paces itself (None, Native): each gets an equal
/// part, the total divided by the number running, re-applied as migrations start and end.
/// </summary>
public sealed class BandwidthShare(long bytesPerSecond)
{
    private int _running;

    public long BytesPerSecond { get; } = bytesPerSecond;

    /// <summary>This migration's part right now.</summary>
    public long PerMigration => BytesPerSecond / Math.Max(1, Volatile.Read(ref _running));

    /// <summary>Counts a migration in until the returned object is disposed.</summary>
    public IDisposable Join()
    {
        Interlocked.Increment(ref _running);
        return new Seat(this);
    }

    private sealed class Seat(BandwidthShare share) : IDisposable
    {
        private int _left;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _left, 1) == 0)
            {
                Interlocked.Decrement(ref share._running);
            }
        }
    }
}
