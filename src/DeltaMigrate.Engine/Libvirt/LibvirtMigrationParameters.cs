namespace DeltaMigrate.Engine.Libvirt;

/// <summary>virTypedParameter array for virDomainMigrate3, built and freed through libvirt.</summary>
internal sealed class LibvirtMigrationParameters : IDisposable
{
    private IntPtr _pointer;
    private int _count;
    private int _capacity;

    public IntPtr Pointer => _pointer;

    public int Count => _count;

    public void Add(string name, string value)
    {
        if (LibvirtNative.virTypedParamsAddString(ref _pointer, ref _count, ref _capacity, name, value) != 0)
        {
            throw LibvirtException.FromLast(LibvirtException.CallFailed, ErrorKind.InvalidArgument, $"libvirt refused migration parameter {name}");
        }
    }

    public void Add(string name, ulong value)
    {
        if (LibvirtNative.virTypedParamsAddULLong(ref _pointer, ref _count, ref _capacity, name, value) != 0)
        {
            throw LibvirtException.FromLast(LibvirtException.CallFailed, ErrorKind.InvalidArgument, $"libvirt refused migration parameter {name}");
        }
    }

    public void Dispose()
    {
        if (_pointer != IntPtr.Zero)
        {
            LibvirtNative.virTypedParamsFree(_pointer, _count);
            _pointer = IntPtr.Zero;
        }
    }
}
