namespace DeltaMigrate.Engine.Libvirt;

/// <summary>A sample of libvirt's job statistics (virDomainGetJobStats); fields libvirt left out are 0.</summary>
public sealed record LibvirtJobStats
{
    /// <summary>1 bounded, 2 unbounded (a running migration), 3 completed, 4 failed, 5 cancelled.</summary>
    public int JobType { get; init; }
    public TimeSpan TimeElapsed { get; init; }
    public long DataTotal { get; init; }
    public long DataProcessed { get; init; }
    public long DataRemaining { get; init; }
    public long MemoryTotal { get; init; }
    public long MemoryProcessed { get; init; }
    public long MemoryRemaining { get; init; }
    public long MemoryNormalPages { get; init; }
    public long MemoryConstantPages { get; init; }
    public long MemoryBytesPerSecond { get; init; }
    public long MemoryDirtyRate { get; init; }
    public long MemoryIteration { get; init; }
    public TimeSpan Downtime { get; init; }
    public TimeSpan SetupTime { get; init; }

    internal static LibvirtJobStats Read(int type, IntPtr parameters, int count)
    {
        long Get(string name) => LibvirtNative.virTypedParamsGetULLong(parameters, count, name, out ulong value) == 1 ? (long)value : 0;
        return new LibvirtJobStats
        {
            JobType = type,
            TimeElapsed = TimeSpan.FromMilliseconds(Get("time_elapsed")),
            DataTotal = Get("data_total"),
            DataProcessed = Get("data_processed"),
            DataRemaining = Get("data_remaining"),
            MemoryTotal = Get("memory_total"),
            MemoryProcessed = Get("memory_processed"),
            MemoryRemaining = Get("memory_remaining"),
            MemoryNormalPages = Get("memory_normal"),
            MemoryConstantPages = Get("memory_constant"),
            MemoryBytesPerSecond = Get("memory_bps"),
            MemoryDirtyRate = Get("memory_dirty_rate"),
            MemoryIteration = Get("memory_iteration"),
            Downtime = TimeSpan.FromMilliseconds(Get("downtime")),
            SetupTime = TimeSpan.FromMilliseconds(Get("setup_time")),
        };
    }
}
