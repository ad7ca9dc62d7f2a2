using DeltaMigrate.Engine.Transport;

namespace DeltaMigrate.Engine.Migration;

/// <summary>A live sample while a migration runs (for Write-Progress).</summary>
public sealed record MigrationProgress
{
    public required string VMName { get; init; }
    public required string Status { get; init; }
    public required TimeSpan Elapsed { get; init; }
    public required int Round { get; init; }
    public required long BytesTransferred { get; init; }
    public required long BytesRemaining { get; init; }
    public required long MemorySize { get; init; }
    public required double ThroughputMbps { get; init; }
    public TimeSpan? ExpectedDowntime { get; init; }

    /// <summary>Bytes on the network so far (QEMU's count with its own transport).</summary>
    public long WireBytes { get; init; }

    /// <summary>Tunnel modes: the Data frames so far by wire codec (raw, lz4, zstd by level), stream and wire bytes each.</summary>
    public IReadOnlyList<CodecBytes> Codecs { get; init; } = [];

    /// <summary>QEMU's vCPU throttle now (0-99; 0 when not throttled), from -Converge Throttle or -AutoConverge.</summary>
    public int ThrottlePercent { get; init; }

    /// <summary>0-100: how much of RAM has been sent at least once, then how close the remainder is to zero.</summary>
    public int PercentComplete =>
        MemorySize <= 0 ? 0 : (int)Math.Clamp(100.0 * (MemorySize - BytesRemaining) / MemorySize, 0, 99);
}
