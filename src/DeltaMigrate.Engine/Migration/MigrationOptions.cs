namespace DeltaMigrate.Engine.Migration;

public sealed record MigrationOptions
{
    /// <summary>QEMU's default XBZRLE cache size.</summary>
    public const long DefaultCacheSize = 64L * 1024 * 1024;

    /// <summary>QEMU 7.2 through 10.0 default to 300 ms.</summary>
    public static readonly TimeSpan DefaultMaxDowntime = TimeSpan.FromMilliseconds(300);

    public CompressionMode Compress { get; init; } = CompressionMode.Delta;

    /// <summary>
    /// Page cache in bytes. Null: QEMU's 64 MiB for Native; for Delta half the VM's RAM, between
    /// 64 MiB and 2 GiB (it must hold the hot set to pay, and host memory is cheaper than a stuck migration).
    /// </summary>
    public long? CacheSize { get; init; }

    /// <summary>The receiver's one-time token, for Delta or Lz4 to a remote Receive-KvmVM.</summary>
    public Transport.MigrationToken? Token { get; init; }

    /// <summary>The longest the guest may stay frozen in the final copy.</summary>
    public TimeSpan MaxDowntime { get; init; } = DefaultMaxDowntime;

    /// <summary>Bytes per second on the wire; null lifts QEMU's own 128 MiB/s default cap.</summary>
    public long? Bandwidth { get; init; }

    /// <summary>Tunnel modes (Delta, Lz4): one bucket that concurrent migrations share; overrides <see cref="Bandwidth"/> on the wire.</summary>
    public Transport.SharedTokenBucket? SharedBandwidth { get; init; }

    /// <summary>QEMU-paced modes (None, Native): max-bandwidth is this share's total divided by the migrations running.</summary>
    public BandwidthShare? BandwidthShare { get; init; }

    /// <summary>Host memory the Delta page caches of concurrent migrations share; null: no limit.</summary>
    public CacheBudget? CacheBudget { get; init; }

    /// <summary>Let QEMU throttle the guest's vCPUs on its own rules (its defaults) when pre-copy does not converge; with <see cref="Converge"/> Throttle the engine drives that throttle instead.</summary>
    public bool AutoConverge { get; init; }

    /// <summary>What a stalled pre-copy does: Throttle (default) steps the guest's vCPU throttle until it converges; Never waits for <see cref="Timeout"/>.</summary>
    public Convergence.ConvergeMode Converge { get; init; } = Convergence.ConvergeMode.Throttle;

    /// <summary>Null: no limit.</summary>
    public TimeSpan? Timeout { get; init; }

    public TimeoutAction TimeoutAction { get; init; } = TimeoutAction.Cancel;

    /// <summary>How often to sample query-migrate for progress and per-round stats.</summary>
    public TimeSpan PollInterval { get; init; } = TimeSpan.FromMilliseconds(200);

    /// <summary>Where the two ends of a one-host migration meet (loopback unless $DELTAMIGRATE_LOCAL_LINK says otherwise).</summary>
    public LocalLink LocalLink { get; init; } = LocalLink.FromEnvironment();

    /// <summary>
    /// The tunnel's idle deadline (and TCP_USER_TIMEOUT): a destination that sends nothing, not
    /// even a keepalive, for this long is taken for dead. Keepalives go out ten times as often.
    /// </summary>
    public TimeSpan LinkTimeout { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>Keep the source's QEMU (paused, postmigrate) after the commit instead of quitting it.</summary>
    public bool KeepSource { get; init; }
}
