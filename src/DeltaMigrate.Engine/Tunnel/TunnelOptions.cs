using DeltaMigrate.Engine.Transport;

namespace DeltaMigrate.Engine.Tunnel;

/// <summary>How the sender frames, compresses and paces the migration stream.</summary>
public sealed record TunnelOptions
{
    /// <summary>Raw payload bytes per frame (at most <see cref="Protocol.MaxFrameLength"/>).</summary>
    public int FrameSize { get; init; } = 256 * 1024;

    /// <summary>LZ4-compress frames when that makes them smaller.</summary>
    public bool Compress { get; init; } = true;

    /// <summary>
    /// With <see cref="Compress"/>: choose raw, LZ4 or zstd (and its level) per frame from what the link,
    /// the encoder and the data show while migrating (<see cref="CodecChooser"/>) instead of LZ4 only.
    /// </summary>
    public bool Adaptive { get; init; }

    /// <summary>The adaptive candidates, cheapest first (default <see cref="CodecChooser.AdaptiveSet"/>).</summary>
    public IReadOnlyList<CodecOption>? Codecs { get; init; }

    /// <summary>Limit on wire bytes (frame headers, payload and tags) per second; null = unlimited.</summary>
    public long? BandwidthBytesPerSecond { get; init; }

    /// <summary>A bucket shared by concurrent tunnels (one -Bandwidth for all); overrides <see cref="BandwidthBytesPerSecond"/>.</summary>
    public SharedTokenBucket? SharedBandwidth { get; init; }

    /// <summary>Frames queued between the framer and the socket; bounds memory and gives backpressure.</summary>
    public int MaxFramesInFlight { get; init; } = 8;

    public TimeSpan HandshakeTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>How long the sender waits for the receiver's TCP connection to be accepted.</summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// A read that sees nothing for this long fails the tunnel; also the sockets' TCP_USER_TIMEOUT,
    /// so unacknowledged data to a host that lost power fails as fast.
    /// </summary>
    public TimeSpan IdleTimeout { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>A side that has sent nothing for this long sends a KeepAlive frame.</summary>
    public TimeSpan KeepAliveInterval { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>Idle deadline <paramref name="timeout"/>, keepalives ten times as often (at most every second).</summary>
    public TunnelOptions WithLinkTimeout(TimeSpan timeout) => this with
    {
        IdleTimeout = timeout,
        KeepAliveInterval = TimeSpan.FromTicks(Math.Min(timeout.Ticks / 10, TimeSpan.TicksPerSecond)),
    };

    internal void Validate()
    {
        if (FrameSize < 1 || FrameSize > Protocol.MaxFrameLength)
        {
            throw new ArgumentOutOfRangeException(nameof(FrameSize), FrameSize, $"FrameSize must be between 1 and {Protocol.MaxFrameLength}.");
        }

        if (MaxFramesInFlight < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxFramesInFlight), MaxFramesInFlight, "MaxFramesInFlight must be at least 1.");
        }

        if (BandwidthBytesPerSecond is <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(BandwidthBytesPerSecond), BandwidthBytesPerSecond, "BandwidthBytesPerSecond must be positive (or null for unlimited).");
        }

        if (IdleTimeout <= KeepAliveInterval * 2 || KeepAliveInterval <= TimeSpan.Zero || ConnectTimeout <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(IdleTimeout), IdleTimeout, "IdleTimeout must be more than twice KeepAliveInterval, and both and ConnectTimeout positive.");
        }

        if (Codecs is { Count: 0 })
        {
            throw new ArgumentOutOfRangeException(nameof(Codecs), "Codecs must name at least one codec (or be null for the default set).");
        }

        if (HandshakeTimeout <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(HandshakeTimeout), HandshakeTimeout, "HandshakeTimeout must be positive.");
        }
    }
}
