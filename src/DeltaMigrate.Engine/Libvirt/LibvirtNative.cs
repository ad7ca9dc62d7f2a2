using System.Reflection;
using System.Runtime.InteropServices;

namespace DeltaMigrate.Engine.Libvirt;

/// <summary>
/// The few functions of libvirt's stable C API (libvirt.so.0) the module uses. Strings are UTF-8;
/// pointers libvirt returns are freed with the matching virXxxFree, or libc's free where libvirt says so.
/// </summary>
internal static unsafe partial class LibvirtNative
{
    public const string Library = "libvirt.so.0";

    /// <summary>Names another libvirt library file: for a test of "libvirt is not installed" only.</summary>
    public const string LibraryVariable = "DELTAMIGRATE_LIBVIRT_LIBRARY";

    public const uint MigrateLive = 1 << 0;
    public const uint MigratePeerToPeer = 1 << 1;
    public const uint MigratePersistDest = 1 << 3;
    public const uint MigrateUndefineSource = 1 << 4;
    public const uint MigratePaused = 1 << 5;
    public const uint MigrateAbortOnError = 1 << 12;
    public const uint MigrateAutoConverge = 1 << 13;

    public const uint JobStatsCompleted = 1 << 0;

    static LibvirtNative()
    {
        NativeLibrary.SetDllImportResolver(typeof(LibvirtNative).Assembly, Resolve);
    }

    private static bool _quiet;

    /// <summary>libvirt prints every error to stderr unless told otherwise; ours carry its message already.</summary>
    public static void Quiet()
    {
        if (!_quiet)
        {
            virSetErrorFunc(IntPtr.Zero, &IgnoreError);
            _quiet = true;
        }
    }

    [UnmanagedCallersOnly]
    private static void IgnoreError(IntPtr userData, IntPtr error)
    {
    }

    private static IntPtr Resolve(string name, Assembly assembly, DllImportSearchPath? searchPath)
    {
        if (name != Library)
        {
            return IntPtr.Zero;
        }

        string? overridden = Environment.GetEnvironmentVariable(LibraryVariable);
        return string.IsNullOrEmpty(overridden) ? NativeLibrary.Load(name, assembly, searchPath) : NativeLibrary.Load(overridden);
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct DomainInfo
    {
        public byte State;
        public nuint MaxMemKiB;
        public nuint MemoryKiB;
        public ushort VirtualCpus;
        public ulong CpuTimeNs;
    }

    [LibraryImport(Library, StringMarshalling = StringMarshalling.Utf8)]
    public static partial IntPtr virConnectOpen(string? name);

    [LibraryImport(Library)]
    public static partial int virConnectClose(IntPtr conn);

    [LibraryImport(Library)]
    public static partial int virConnectGetVersion(IntPtr conn, out ulong version);

    [LibraryImport(Library)]
    public static partial int virConnectGetLibVersion(IntPtr conn, out ulong version);

    [LibraryImport(Library)]
    public static partial IntPtr virConnectGetURI(IntPtr conn);

    [LibraryImport(Library)]
    public static partial int virConnectListAllDomains(IntPtr conn, out IntPtr domains, uint flags);

    [LibraryImport(Library, StringMarshalling = StringMarshalling.Utf8)]
    public static partial IntPtr virDomainLookupByName(IntPtr conn, string name);

    [LibraryImport(Library)]
    public static partial int virDomainFree(IntPtr domain);

    [LibraryImport(Library)]
    public static partial IntPtr virDomainGetName(IntPtr domain);

    [LibraryImport(Library)]
    public static partial int virDomainGetUUIDString(IntPtr domain, [Out] byte[] buffer);

    [LibraryImport(Library)]
    public static partial int virDomainGetInfo(IntPtr domain, out DomainInfo info);

    [LibraryImport(Library)]
    public static partial int virDomainIsPersistent(IntPtr domain);

    [LibraryImport(Library)]
    public static partial IntPtr virDomainMigrate3(IntPtr domain, IntPtr destination, IntPtr parameters, int count, uint flags);

    [LibraryImport(Library)]
    public static partial int virDomainGetJobStats(IntPtr domain, out int type, out IntPtr parameters, out int count, uint flags);

    [LibraryImport(Library)]
    public static partial int virDomainAbortJob(IntPtr domain);

    [LibraryImport(Library)]
    public static partial int virDomainMigrateSetMaxDowntime(IntPtr domain, ulong milliseconds, uint flags);

    [LibraryImport(Library, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int virTypedParamsAddString(ref IntPtr parameters, ref int count, ref int capacity, string name, string value);

    [LibraryImport(Library, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int virTypedParamsAddULLong(ref IntPtr parameters, ref int count, ref int capacity, string name, ulong value);

    [LibraryImport(Library, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int virTypedParamsGetULLong(IntPtr parameters, int count, string name, out ulong value);

    [LibraryImport(Library)]
    public static partial void virTypedParamsFree(IntPtr parameters, int count);

    [LibraryImport(Library)]
    public static partial IntPtr virGetLastErrorMessage();

    [LibraryImport(Library)]
    public static partial void virSetErrorFunc(IntPtr userData, delegate* unmanaged<IntPtr, IntPtr, void> handler);

    [LibraryImport(Library)]
    public static partial int virGetLastErrorCode();

    [LibraryImport("libc", EntryPoint = "free")]
    public static partial void Free(IntPtr pointer);

    /// <summary>libvirt's message for the last failure on this thread.</summary>
    public static string LastError() => Marshal.PtrToStringUTF8(virGetLastErrorMessage()) ?? "unknown libvirt error";
}
