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
