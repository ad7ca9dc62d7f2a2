namespace DeltaMigrate.Engine.Streams;

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
