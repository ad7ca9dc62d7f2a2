namespace DeltaMigrate.Engine.Migration.Commit;

/// <summary>How the stream travels: through our tunnel (Delta, Lz4), or by QEMU's own transport beside it (None, Native).</summary>
public enum DataPath
{
    Tunnel,
    Qemu,
}
