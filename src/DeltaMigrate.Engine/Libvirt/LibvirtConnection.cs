using System.Runtime.InteropServices;

namespace DeltaMigrate.Engine.Libvirt;

/// <summary>
/// One connection to a libvirt daemon (virConnectPtr) through libvirt's C library. libvirt's
/// connections may be used from several threads at once, which the migration does: one thread
/// blocks in migrate while another reads the job's statistics or aborts it.
/// </summary>
public sealed class LibvirtConnection : IDisposable
{
    /// <summary>The system daemon on this host.</summary>
    public const string DefaultUri = "qemu:///system";

    private IntPtr _handle;

    private LibvirtConnection(IntPtr handle, string uri)
    {
        _handle = handle;
        Uri = uri;
    }

    /// <summary>The URI as given (what the user can pass again).</summary>
    public string Uri { get; }

    internal IntPtr Handle => _handle != IntPtr.Zero ? _handle : throw new ObjectDisposedException(nameof(LibvirtConnection));

    /// <summary>
    /// Opens <paramref name="uri"/>. Throws LibvirtNotInstalled when libvirt's library is missing,
    /// LibvirtNotRunning when nothing answers at the URI's socket, LibvirtConnectFailed otherwise;
    /// every message carries libvirt's own.
    /// </summary>
    public static LibvirtConnection Open(string? uri)
    {
        uri = string.IsNullOrWhiteSpace(uri) ? DefaultUri : uri;
        IntPtr handle;
        try
        {
            LibvirtNative.Quiet();
            handle = LibvirtNative.virConnectOpen(uri);
        }
        catch (Exception ex) when (ex is DllNotFoundException or EntryPointNotFoundException or TypeInitializationException)
        {
            throw LibvirtException.Missing(ex is TypeInitializationException { InnerException: { } inner } ? inner : ex);
        }

        if (handle == IntPtr.Zero)
        {
            string message = LibvirtNative.LastError();
            int code = LibvirtNative.virGetLastErrorCode();
            if (message.Contains("Failed to connect socket", StringComparison.OrdinalIgnoreCase)
                || message.Contains("No such file or directory", StringComparison.Ordinal)
                || message.Contains("Connection refused", StringComparison.Ordinal))
            {
                throw new LibvirtException(LibvirtException.NotRunning, ErrorKind.ConnectionError,
                    $"libvirt is not running at {uri} ({message}): start it with 'service libvirtd start' (or 'systemctl start libvirtd', or 'libvirtd -d'), or name the right -ConnectionUri.")
                { LibvirtCode = code, Target = uri };
            }

            throw new LibvirtException(LibvirtException.ConnectFailed, ErrorKind.ConnectionError, $"Cannot connect to libvirt at {uri}: {message}")
            { LibvirtCode = code, Target = uri };
        }

        return new LibvirtConnection(handle, uri);
    }

    /// <summary>The hypervisor's version (QEMU's, for the qemu driver), e.g. "7.2.0".</summary>
    public string HypervisorVersion =>
        LibvirtNative.virConnectGetVersion(Handle, out ulong version) == 0 ? LibvirtDomainInfo.FormatVersion(version)
            : throw LibvirtException.FromLast(LibvirtException.CallFailed, ErrorKind.ConnectionError, $"libvirt at {Uri} did not say its hypervisor's version");

    /// <summary>libvirt's own version, e.g. "9.0.0".</summary>
    public string LibvirtVersion =>
        LibvirtNative.virConnectGetLibVersion(Handle, out ulong version) == 0 ? LibvirtDomainInfo.FormatVersion(version)
            : throw LibvirtException.FromLast(LibvirtException.CallFailed, ErrorKind.ConnectionError, $"libvirt at {Uri} did not say its version");

    /// <summary>Every domain libvirt knows (running and defined), sorted by name.</summary>
    public IReadOnlyList<LibvirtDomainInfo> ListDomains()
    {
        int count = LibvirtNative.virConnectListAllDomains(Handle, out IntPtr array, 0);
        if (count < 0)
        {
            throw LibvirtException.FromLast(LibvirtException.CallFailed, ErrorKind.ConnectionError, $"libvirt at {Uri} did not list its domains");
        }

        string qemu = HypervisorVersion;
        string libvirt = LibvirtVersion;
        var domains = new List<LibvirtDomainInfo>(count);
        try
        {
            for (int i = 0; i < count; i++)
            {
                using var domain = new LibvirtDomain(this, Marshal.ReadIntPtr(array, i * IntPtr.Size));
                domains.Add(domain.Describe(qemu, libvirt));
            }
        }
        finally
        {
            // Domains not yet wrapped (after a failure) are freed too.
            for (int i = domains.Count + 1; i < count; i++)
            {
                LibvirtNative.virDomainFree(Marshal.ReadIntPtr(array, i * IntPtr.Size));
            }

            LibvirtNative.Free(array);
        }

        domains.Sort((a, b) => string.CompareOrdinal(a.Name, b.Name));
        return domains;
    }

    /// <summary>The domain named <paramref name="name"/>; LibvirtDomainNotFound when libvirt has none.</summary>
    public LibvirtDomain GetDomain(string name)
    {
        IntPtr handle = LibvirtNative.virDomainLookupByName(Handle, name);
        return handle != IntPtr.Zero ? new LibvirtDomain(this, handle)
            : throw new LibvirtException(LibvirtException.DomainNotFound, ErrorKind.NotFound,
                $"libvirt at {Uri} has no domain '{name}' ({LibvirtNative.LastError()}): list them with Get-KvmVM -Libvirt -ConnectionUri {Uri}.")
            { Target = name, LibvirtCode = LibvirtNative.virGetLastErrorCode() };
    }

    /// <summary>Describes the domain named <paramref name="name"/>.</summary>
    public LibvirtDomainInfo Describe(string name)
    {
        using var domain = GetDomain(name);
        return domain.Describe(HypervisorVersion, LibvirtVersion);
    }

    public void Dispose()
    {
        IntPtr handle = Interlocked.Exchange(ref _handle, IntPtr.Zero);
        if (handle != IntPtr.Zero)
        {
            LibvirtNative.virConnectClose(handle);
        }
    }
}
