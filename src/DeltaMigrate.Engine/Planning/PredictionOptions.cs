using DeltaMigrate.Engine.Migration;

namespace DeltaMigrate.Engine.Planning;

/// <summary>The link and limits a prediction assumes.</summary>
public sealed record PredictionOptions
{
    /// <summary>1 Gbit/s.</summary>
    public const long DefaultBandwidth = 125_000_000;

    /// <summary>Bytes per second on the wire.</summary>
    public long Bandwidth { get; init; } = DefaultBandwidth;

    public TimeSpan MaxDowntime { get; init; } = MigrationOptions.DefaultMaxDowntime;

    /// <summary>Pre-copy that has not converged by then is given up (Converges = false).</summary>
    public TimeSpan TimeLimit { get; init; } = TimeSpan.FromSeconds(120);

    /// <summary>QEMU's XBZRLE cache for Native; null: QEMU's default 64 MiB (what Move-KvmVM sets).</summary>
    public long? NativeCacheSize { get; init; }

    /// <summary>Our page cache for Delta; null: half the RAM, 64 MiB to 2 GiB (Move-KvmVM's default).</summary>
    public long? DeltaCacheSize { get; init; }
}
