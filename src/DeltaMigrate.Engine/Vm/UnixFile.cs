using System.Runtime.InteropServices;

namespace DeltaMigrate.Engine.Vm;

/// <summary>What lstat says about a path: its type, owner and permission bits (the link itself, never its target).</summary>
internal readonly record struct UnixFileInfo(UnixFileType Type, uint OwnerId, UnixFileMode Mode);

internal enum UnixFileType
{
    Other,
    Regular,
    Directory,
    SymbolicLink,
    Socket,
}

/// <summary>
/// The two libc calls .NET has no API for: the effective user id, and the owner of a path without
/// following a symlink. statx rather than lstat because its struct layout is the same on every architecture.
/// </summary>
internal static partial class UnixFile
{
    public static uint EffectiveUserId => GetEffectiveUserId();

    /// <summary>The entry at <paramref name="path"/> itself (a symlink is reported as one), or null when nothing is there.</summary>
    public static UnixFileInfo? Lstat(string path)
    {
        Span<byte> buffer = stackalloc byte[StatxSize];
        if (Statx(AtFdCwd, path, AtSymlinkNoFollow, StatxType | StatxMode | StatxUid, buffer) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            return errno is ENoEnt or ENotDir
                ? null
                : throw new IOException($"Cannot inspect '{path}': {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno}).");
        }

        // struct statx: stx_uid is the u32 at offset 20, stx_mode the u16 at offset 28.
        var uid = MemoryMarshal.Read<uint>(buffer[20..]);
        var mode = MemoryMarshal.Read<ushort>(buffer[28..]);
        var type = (mode & FileTypeMask) switch
        {
            0x8000 => UnixFileType.Regular,
            0x4000 => UnixFileType.Directory,
            0xA000 => UnixFileType.SymbolicLink,
            0xC000 => UnixFileType.Socket,
            _ => UnixFileType.Other,
        };
        return new UnixFileInfo(type, uid, (UnixFileMode)(mode & 0xFFF));
    }

    /// <summary>The pid of the process at the other end of a connected unix socket (SO_PEERCRED), or null if the kernel will not say.</summary>
    public static int? PeerProcessId(System.Net.Sockets.Socket socket)
    {
        // struct ucred { pid_t pid; uid_t uid; gid_t gid; }: SOL_SOCKET = 1, SO_PEERCRED = 17 on Linux.
        Span<byte> credentials = stackalloc byte[12];
        try
        {
            return socket.GetRawSocketOption(1, 17, credentials) == 12 && MemoryMarshal.Read<int>(credentials) is > 0 and var pid ? pid : null;
        }
        catch (System.Net.Sockets.SocketException)
        {
            return null;
        }
    }

    /// <summary>mkdir with mode 0700 (the umask can only take bits away); an existing folder is left as it is.</summary>
    public static void CreatePrivateDirectory(string path)
    {
        if (OperatingSystem.IsWindows())
        {
            throw NotOnWindows();
        }

        Directory.CreateDirectory(path, OwnerOnly);
    }

    /// <summary>A new file, mode 0600, for writing; O_EXCL, so an existing entry (a symlink included) is never opened.</summary>
    public static FileStream CreatePrivateFile(string path)
    {
        if (OperatingSystem.IsWindows())
        {
            throw NotOnWindows();
        }

        return new FileStream(path, new FileStreamOptions
        {
            Mode = FileMode.CreateNew,
            Access = FileAccess.Write,
            UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite,
        });
    }

    /// <summary>chmod 0600.</summary>
    public static void MakePrivate(string path)
    {
        if (OperatingSystem.IsWindows())
        {
            throw NotOnWindows();
        }

        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
    }

    private static PlatformNotSupportedException NotOnWindows() => new("DeltaMigrate runs QEMU on Linux.");

    private const UnixFileMode OwnerOnly = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;
    private const int StatxSize = 256;
    private const int AtFdCwd = -100;
    private const int AtSymlinkNoFollow = 0x100;
    private const uint StatxType = 0x1;
    private const uint StatxMode = 0x2;
    private const uint StatxUid = 0x8;
    private const int FileTypeMask = 0xF000;
    private const int ENoEnt = 2;
    private const int ENotDir = 20;

    [LibraryImport("libc", EntryPoint = "geteuid")]
    private static partial uint GetEffectiveUserId();

    [LibraryImport("libc", EntryPoint = "statx", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Statx(int directoryFd, string path, int flags, uint mask, Span<byte> buffer);
}
