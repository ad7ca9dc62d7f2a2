using System.Text;

namespace DeltaMigrate.Engine.Streams;

/// <summary>What a <see cref="MigrationRecord"/> is.</summary>
public enum MigrationRecordKind
{
    None,

    /// <summary>"QEVM" magic and <see cref="MigrationRecord.Version"/>.</summary>
    Header,

    /// <summary>QEMU_VM_CONFIGURATION: <see cref="MigrationRecord.Data"/> is the whole record (type byte included), opaque.</summary>
    Configuration,

    /// <summary>QEMU_VM_COMMAND: <see cref="MigrationRecord.Command"/> and its <see cref="MigrationRecord.Data"/>.</summary>
    Command,

    /// <summary>SECTION_START: id, idstr, instance id, version.</summary>
    SectionStart,

    /// <summary>SECTION_PART: id.</summary>
    SectionPart,

    /// <summary>SECTION_END: id.</summary>
    SectionEnd,

    /// <summary>Section footer (0x7e + id).</summary>
    Footer,

    /// <summary>RAM MEM_SIZE: <see cref="MigrationRecord.TotalBytes"/> and <see cref="MigrationRecord.Blocks"/>.</summary>
    MemSize,

    /// <summary>RAM ZERO page: block, offset, fill byte.</summary>
    Zero,

    /// <summary>RAM raw PAGE: block, offset, page bytes in <see cref="MigrationRecord.Data"/>.</summary>
    Page,

    /// <summary>RAM XBZRLE page: block, offset, encoded delta in <see cref="MigrationRecord.Data"/>.</summary>
    Xbzrle,

    /// <summary>RAM EOS: end of this section's RAM data.</summary>
    Eos,

    /// <summary>RAM MULTIFD_FLUSH (no payload).</summary>
    MultifdFlush,

    /// <summary>Opaque bytes after RAM's last END section (device state, EOF, VMDESCRIPTION).</summary>
    Tail,
}

/// <summary>A RAMBlock announced by MEM_SIZE.</summary>
public sealed class RamBlock
{
    public RamBlock(string idStr, long usedLength, long? mrAddr = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(idStr);
        IdBytes = Encoding.UTF8.GetBytes(idStr);
        if (IdBytes.Length > 255)
        {
            throw new ArgumentException("A RAMBlock idstr is at most 255 bytes.", nameof(idStr));
        }

        IdStr = idStr;
        UsedLength = usedLength;
        MrAddr = mrAddr;
    }

    /// <summary>The RAMBlock name, e.g. <c>pc.ram</c>.</summary>
    public string IdStr { get; }

    /// <summary>The idstr as it travels on the wire (no NUL).</summary>
    public byte[] IdBytes { get; }

    /// <summary>Bytes in use.</summary>
    public long UsedLength { get; }

    /// <summary>Memory-region address (only sent with x-ignore-shared).</summary>
    public long? MrAddr { get; }

    public override string ToString() => $"{IdStr} ({UsedLength} bytes)";
}

/// <summary>
/// One record of a QEMU precopy migration stream. <see cref="Data"/> may point into the reader's buffer and is valid
/// only until the next read.
/// </summary>
public readonly struct MigrationRecord
{
    public MigrationRecordKind Kind { get; init; }

    /// <summary>Stream version (Header) or section version (SectionStart).</summary>
    public uint Version { get; init; }

    /// <summary>Section id (sections and footers).</summary>
    public uint SectionId { get; init; }

    /// <summary>Section idstr (SectionStart).</summary>
    public string? IdStr { get; init; }

    /// <summary>Instance id (SectionStart).</summary>
    public uint InstanceId { get; init; }

    /// <summary>Command number (Command).</summary>
    public ushort Command { get; init; }

    /// <summary>RAMBlock of a Zero, Page or Xbzrle record.</summary>
    public RamBlock? Block { get; init; }

    /// <summary>Byte offset of the page in its block.</summary>
    public long Offset { get; init; }

    /// <summary>Fill byte of a Zero record.</summary>
    public byte Fill { get; init; }

    /// <summary>The RAM record used the CONTINUE flag (no idstr: same block as the previous page record).</summary>
    public bool Continue { get; init; }

    /// <summary>MemSize: total RAM bytes (the header value without flags).</summary>
    public long TotalBytes { get; init; }

    /// <summary>MemSize: the block list in stream order.</summary>
    public IReadOnlyList<RamBlock>? Blocks { get; init; }

    /// <summary>Payload: page bytes, XBZRLE encoding, command data, configuration bytes or tail chunk.</summary>
    public ReadOnlyMemory<byte> Data { get; init; }

    public override string ToString() => Kind switch
    {
        MigrationRecordKind.Page or MigrationRecordKind.Zero or MigrationRecordKind.Xbzrle =>
            $"{Kind} {Block?.IdStr}+0x{Offset:x}{(Continue ? " (cont)" : string.Empty)} {Data.Length}",
        MigrationRecordKind.SectionStart => $"{Kind} {SectionId} {IdStr} {InstanceId} v{Version}",
        _ => $"{Kind} {SectionId} {Data.Length}",
    };
}

/// <summary>Wire constants (savevm.c, ram.c).</summary>
internal static class QemuWire
{
    public const uint Magic = 0x5145564d;
    public const byte Eof = 0x00;
    public const byte SectionStart = 0x01;
    public const byte SectionPart = 0x02;
    public const byte SectionEnd = 0x03;
    public const byte SectionFull = 0x04;
    public const byte Subsection = 0x05;
    public const byte VmDescription = 0x06;
    public const byte Configuration = 0x07;
    public const byte Command = 0x08;
    public const byte SectionFooter = 0x7e;

    public const int FlagZero = 0x002;
    public const int FlagMemSize = 0x004;
    public const int FlagPage = 0x008;
    public const int FlagEos = 0x010;
    public const int FlagContinue = 0x020;
    public const int FlagXbzrle = 0x040;
    public const int FlagHook = 0x080;
    public const int FlagCompressPage = 0x100;
    public const int FlagMultifdFlush = 0x200;

    public const byte EncodingFlagXbzrle = 0x01;
}
