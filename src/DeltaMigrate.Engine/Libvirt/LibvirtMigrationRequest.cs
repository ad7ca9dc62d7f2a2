using DeltaMigrate.Engine.Migration;

namespace DeltaMigrate.Engine.Libvirt;

/// <summary>One libvirt domain to move through our tunnel, with libvirt in charge of both QEMUs.</summary>
public sealed record LibvirtMigrationRequest
{
    public required string DomainName { get; init; }

    /// <summary>The source host's libvirt (where the domain runs now).</summary>
    public string SourceUri { get; init; } = LibvirtConnection.DefaultUri;

    /// <summary>The destination host's libvirt, as this host reaches it (qemu+ssh://HOST/system by default).</summary>
    public required string DestinationUri { get; init; }

    /// <summary>Our receiving half on the destination host (<see cref="LibvirtRelayReceiver"/>): address, port and one-time token.</summary>
    public required string ReceiverHost { get; init; }

    public required int ReceiverPort { get; init; }

    public required Transport.MigrationToken Token { get; init; }

    /// <summary>
    /// The unix socket, the same path on both hosts: here our sending half listens on it for the
    /// source QEMU; there the destination QEMU listens on it for our receiving half.
    /// </summary>
    public required string SocketPath { get; init; }

    /// <summary>Delta (deltas against our page cache) or Lz4 (the tunnel without deltas).</summary>
    public CompressionMode Compress { get; init; } = CompressionMode.Delta;

    public long? CacheSize { get; init; }

    /// <summary>Our tunnel's pace, bytes per second on the wire.</summary>
    public long? Bandwidth { get; init; }

    public TimeSpan? MaxDowntime { get; init; }

    /// <summary>VIR_MIGRATE_PERSIST_DEST: the destination keeps the domain defined.</summary>
    public bool Persistent { get; init; }

    /// <summary>VIR_MIGRATE_UNDEFINE_SOURCE: the source forgets the domain's definition.</summary>
    public bool UndefineSource { get; init; }

    /// <summary>VIR_MIGRATE_AUTO_CONVERGE: libvirt's QEMU throttles a guest that dirties faster than the link.</summary>
    public bool AutoConverge { get; init; }

    /// <summary>VIR_MIGRATE_PAUSED (virsh --suspend): the domain stays paused on the destination.</summary>
    public bool DestinationPaused { get; init; }

    public TimeSpan LinkTimeout { get; init; } = TimeSpan.FromSeconds(15);

    public TimeSpan PollInterval { get; init; } = TimeSpan.FromMilliseconds(500);
}
