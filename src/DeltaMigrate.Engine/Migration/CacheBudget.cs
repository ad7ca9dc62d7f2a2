using System.Globalization;

namespace DeltaMigrate.Engine.Migration;

/// <summary>
/// Host memory shared by the page caches of concurrent Delta migrations. A migration reserves its
/// cache before it allocates it: what fits is granted; a default-sized cache that does not fit
/// while others run is shrunk to what is free (never below <see cref="MinimumCache"/>), or waits
/// for a running migration to release; a cache that cannot fit even alone is refused.
/// </summary>
public sealed class CacheBudget
{
    /// <summary>The smallest Delta cache the engine uses (its default floor).</summary>
    public const long MinimumCache = MigrationOptions.DefaultCacheSize;

    private readonly object _lock = new();
    private long _reserved;
    private int _holders;
    private TaskCompletionSource _released = NewSignal();

    public CacheBudget(long totalBytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(totalBytes);
        TotalBytes = totalBytes;
    }

    public long TotalBytes { get; }

    /// <summary>Bytes not reserved right now.</summary>
    public long FreeBytes
    {
        get
        {
            lock (_lock)
            {
                return TotalBytes - _reserved;
            }
        }
    }

    /// <summary>Half of MemAvailable: the other half stays for the guests, QEMU and everything else on the host.</summary>
    public static CacheBudget FromAvailableMemory(string meminfoPath = "/proc/meminfo") =>
        new(ParseMemAvailable(File.ReadAllText(meminfoPath)) / 2);

    /// <summary>MemAvailable in bytes, from the text of /proc/meminfo ("MemAvailable:  123456 kB").</summary>
    public static long ParseMemAvailable(string meminfo)
    {
        foreach (var line in meminfo.Split('\n'))
        {
            if (line.StartsWith("MemAvailable:", StringComparison.Ordinal))
            {
                var parts = line["MemAvailable:".Length..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
                return long.Parse(parts[0], CultureInfo.InvariantCulture) * 1024;
            }
        }

        throw new FormatException("/proc/meminfo has no MemAvailable line.");
    }

    /// <summary>
    /// Reserves <paramref name="wantedBytes"/> for <paramref name="vmName"/>'s cache. An
    /// <paramref name="exact"/> size (the user's -CacheSize) is never shrunk; a default one may be,
    /// down to <see cref="MinimumCache"/>. Waits while others hold what is missing.
    /// </summary>
    /// <exception cref="EngineException">CacheBudgetExceeded: it cannot fit even with nothing else running.</exception>
    public async Task<CacheReservation> ReserveAsync(string vmName, long wantedBytes, bool exact, CancellationToken ct)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(wantedBytes);
        var floor = exact ? wantedBytes : Math.Min(wantedBytes, MinimumCache);
        if (floor > TotalBytes)
        {
            throw new EngineException("CacheBudgetExceeded", ErrorKind.ResourceUnavailable,
                $"VM '{vmName}' needs a page cache of {floor} bytes but the memory budget for page caches is {TotalBytes} bytes. " +
                (exact ? "Give a smaller -CacheSize, " : "") +
                "raise -MemoryBudget (default: half of this host's available memory), free memory on this host, or use -Compress Lz4 or Native, which need no cache here.")
            { Target = vmName };
        }

        while (true)
        {
            Task released;
            lock (_lock)
            {
                var free = TotalBytes - _reserved;
                var granted = wantedBytes <= free ? wantedBytes : free >= floor ? free : 0;
                if (granted > 0)
                {
                    var others = _holders;
                    _reserved += granted;
                    _holders++;
                    return new CacheReservation(this, vmName, wantedBytes, granted, others);
                }

                released = _released.Task;
            }

            await released.WaitAsync(ct);
        }
    }

    private void Release(long bytes)
    {
        TaskCompletionSource wake;
        lock (_lock)
        {
            _reserved -= bytes;
            _holders--;
            wake = _released;
            _released = NewSignal();
        }

        wake.TrySetResult();
    }

    private static TaskCompletionSource NewSignal() => new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>A granted cache; disposing it gives the bytes back (once).</summary>
    public sealed class CacheReservation : IDisposable
    {
        private CacheBudget? _budget;

        internal CacheReservation(CacheBudget budget, string vmName, long wanted, long granted, int others)
        {
            _budget = budget;
            VMName = vmName;
            WantedBytes = wanted;
            Bytes = granted;
            OtherHolders = others;
        }

        public string VMName { get; }

        public long WantedBytes { get; }

        public long Bytes { get; }

        /// <summary>Less than wanted: the budget was shared with running migrations.</summary>
        public bool Shrunk => Bytes < WantedBytes;

        /// <summary>How many reservations were held when this one was granted.</summary>
        public int OtherHolders { get; }

        public void Dispose() => Interlocked.Exchange(ref _budget, null)?.Release(Bytes);
    }
}
