using System.Text;

namespace DeltaMigrate.Engine.Libvirt;

/// <summary>One domain handle (virDomainPtr) of a <see cref="LibvirtConnection"/>.</summary>
public sealed class LibvirtDomain : IDisposable
{
    private readonly LibvirtConnection _connection;
    private IntPtr _handle;

    internal LibvirtDomain(LibvirtConnection connection, IntPtr handle)
    {
        _connection = connection;
        _handle = handle;
    }

    private IntPtr Handle => _handle != IntPtr.Zero ? _handle : throw new ObjectDisposedException(nameof(LibvirtDomain));

    public string Name => System.Runtime.InteropServices.Marshal.PtrToStringUTF8(LibvirtNative.virDomainGetName(Handle))
        ?? throw Failed("did not say the domain's name");

    internal LibvirtDomainInfo Describe(string qemuVersion, string libvirtVersion)
    {
        string name = Name;
        if (LibvirtNative.virDomainGetInfo(Handle, out var info) != 0)
        {
            throw Failed($"did not describe domain '{name}'");
        }

        var uuid = new byte[37];
        if (LibvirtNative.virDomainGetUUIDString(Handle, uuid) != 0)
        {
            throw Failed($"did not say domain '{name}''s UUID");
        }

        return new LibvirtDomainInfo
        {
            Name = name,
            State = LibvirtDomainInfo.StateName(info.State),
            MemoryMiB = (long)(info.MaxMemKiB / 1024),
            VirtualCpus = info.VirtualCpus,
            Uuid = Guid.Parse(Encoding.ASCII.GetString(uuid, 0, 36)),
            Persistent = LibvirtNative.virDomainIsPersistent(Handle) == 1,
            QemuVersion = qemuVersion,
            LibvirtVersion = libvirtVersion,
            ConnectionUri = _connection.Uri,
        };
    }

    /// <summary>The domain's state now ("Running", "Paused", "ShutOff", ...).</summary>
    public string State => LibvirtNative.virDomainGetInfo(Handle, out var info) == 0 ? LibvirtDomainInfo.StateName(info.State)
        : throw Failed("did not say the domain's state");

    /// <summary>
    /// virDomainMigrate3: libvirt runs begin, prepare (on <paramref name="destination"/>), perform,
    /// finish and confirm; blocks until the migration ended. Returns the domain on the destination.
    /// </summary>
    internal LibvirtDomain Migrate(LibvirtConnection destination, LibvirtMigrationParameters parameters, uint flags)
    {
        // Named first: every libvirt call clears the thread's last error, so nothing may come between.
        string what = $"libvirt's migration of '{Name}' from {_connection.Uri} to {destination.Uri} failed";
        IntPtr moved = LibvirtNative.virDomainMigrate3(Handle, destination.Handle, parameters.Pointer, parameters.Count, flags);
        return moved != IntPtr.Zero ? new LibvirtDomain(destination, moved)
            : throw LibvirtException.FromLast(LibvirtException.MigrationFailed, ErrorKind.InvalidState, what);
    }

    /// <summary>The statistics of the running job (or, with <paramref name="completed"/>, of the last completed one); null when there is none.</summary>
    public LibvirtJobStats? GetJobStats(bool completed = false)
    {
        if (LibvirtNative.virDomainGetJobStats(Handle, out int type, out IntPtr parameters, out int count, completed ? LibvirtNative.JobStatsCompleted : 0) != 0)
        {
            return null;
        }

        try
        {
            return type == 0 ? null : LibvirtJobStats.Read(type, parameters, count);
        }
        finally
        {
            LibvirtNative.virTypedParamsFree(parameters, count);
        }
    }

    /// <summary>virDomainAbortJob: libvirt cancels the migration and the source domain runs on.</summary>
    public void AbortJob()
    {
        if (LibvirtNative.virDomainAbortJob(Handle) != 0)
        {
            throw Failed("did not abort the domain's job");
        }
    }

    /// <summary>The longest pause libvirt's QEMU may plan for the final copy.</summary>
    public void SetMaxDowntime(TimeSpan downtime)
    {
        if (LibvirtNative.virDomainMigrateSetMaxDowntime(Handle, (ulong)Math.Max(1, downtime.TotalMilliseconds), 0) != 0)
        {
            throw Failed("did not take the maximum downtime");
        }
    }

    private LibvirtException Failed(string what) => LibvirtException.FromLast(LibvirtException.CallFailed, ErrorKind.InvalidState, $"libvirt at {_connection.Uri} {what}");

    public void Dispose()
    {
        IntPtr handle = Interlocked.Exchange(ref _handle, IntPtr.Zero);
        if (handle != IntPtr.Zero)
        {
            LibvirtNative.virDomainFree(handle);
        }
    }
}
