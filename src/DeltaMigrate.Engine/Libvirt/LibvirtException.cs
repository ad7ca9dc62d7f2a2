namespace DeltaMigrate.Engine.Libvirt;

/// <summary>A libvirt failure: libvirt's own message is always in <see cref="Exception.Message"/>.</summary>
public sealed class LibvirtException(string errorId, ErrorKind kind, string message, Exception? inner = null)
    : EngineException(errorId, kind, message, inner)
{
    public const string NotInstalled = "LibvirtNotInstalled";
    public const string NotRunning = "LibvirtNotRunning";
    public const string ConnectFailed = "LibvirtConnectFailed";
    public const string DomainNotFound = "LibvirtDomainNotFound";
    public const string CallFailed = "LibvirtError";
    public const string MigrationFailed = "LibvirtMigrationFailed";

    /// <summary>libvirt's virErrorNumber of the failure (0 when libvirt was not reached).</summary>
    public int LibvirtCode { get; init; }

    internal static LibvirtException FromLast(string errorId, ErrorKind kind, string what) => new(errorId, kind, $"{what}: {LibvirtNative.LastError()}")
    {
        LibvirtCode = LibvirtNative.virGetLastErrorCode(),
    };

    internal static LibvirtException Missing(Exception inner) => new(NotInstalled, ErrorKind.ResourceUnavailable,
        $"libvirt is not installed (cannot load {LibvirtNative.Library}: {inner.Message.Split('\n')[0].Trim()}): apt-get install libvirt-clients libvirt-daemon-system", inner);
}
