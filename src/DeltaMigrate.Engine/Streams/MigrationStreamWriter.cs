using System.Buffers.Binary;
using System.Text;

namespace DeltaMigrate.Engine.Streams;

/// <summary>
/// Writes QEMU migration stream records (buffered). Writing back every record a <see cref="MigrationStreamReader"/>
/// read reproduces the stream byte for byte. CONTINUE is written as the record says, unless
/// <see cref="AutoContinue"/> is set (then it is used whenever the block is the previous page record's block, which
/// is what a rewriter that drops records needs).
/// </summary>
public sealed class MigrationStreamWriter : IAsyncDisposable
{
    private readonly System.IO.Stream _stream;
    private readonly byte[] _buf;
    private readonly bool _leaveOpen;
    private int _len;
    private RamBlock? _lastBlock;

    public MigrationStreamWriter(System.IO.Stream stream, bool leaveOpen = true, int bufferSize = 64 * 1024)
    {
        ArgumentNullException.ThrowIfNull(stream);
        _stream = stream;
        _leaveOpen = leaveOpen;
        _buf = new byte[Math.Max(bufferSize, 16 * 1024)];
    }

    /// <summary>Decide CONTINUE from the previous page record instead of taking it from the record.</summary>
    public bool AutoContinue { get; set; }

    /// <summary>Bytes written so far (buffered included).</summary>
    public long BytesWritten { get; private set; }

    /// <summary>Writes any record kind.</summary>
    public ValueTask WriteAsync(MigrationRecord r, CancellationToken ct = default) => r.Kind switch
    {
        MigrationRecordKind.Header => WriteHeaderAsync(r.Version, ct),
        MigrationRecordKind.Configuration => WriteRawAsync(r.Data, ct),
        MigrationRecordKind.Command => WriteCommandAsync(r.Command, r.Data, ct),
        MigrationRecordKind.SectionStart => WriteSectionStartAsync(r.SectionId, r.IdStr ?? throw new ArgumentException("SectionStart without IdStr"), r.InstanceId, r.Version, ct),
        MigrationRecordKind.SectionPart => WriteSectionAsync(QemuWire.SectionPart, r.SectionId, ct),
        MigrationRecordKind.SectionEnd => WriteSectionAsync(QemuWire.SectionEnd, r.SectionId, ct),
        MigrationRecordKind.Footer => WriteSectionAsync(QemuWire.SectionFooter, r.SectionId, ct),
        MigrationRecordKind.MemSize => WriteMemSizeAsync(r.TotalBytes, r.Blocks ?? throw new ArgumentException("MemSize without Blocks"), ct),
        MigrationRecordKind.Zero => WriteZeroAsync(Need(r.Block), r.Offset, r.Fill, r.Continue, ct),
        MigrationRecordKind.Page => WritePageAsync(Need(r.Block), r.Offset, r.Data.Span, r.Continue, ct),
        MigrationRecordKind.Xbzrle => WriteXbzrleAsync(Need(r.Block), r.Offset, r.Data.Span, r.Continue, ct),
        MigrationRecordKind.Eos => WriteFlagOnlyAsync(QemuWire.FlagEos, ct),
        MigrationRecordKind.MultifdFlush => WriteFlagOnlyAsync(QemuWire.FlagMultifdFlush, ct),
        MigrationRecordKind.Tail => WriteRawAsync(r.Data, ct),
        _ => throw new ArgumentException($"cannot write a record of kind {r.Kind}"),
    };

    public ValueTask WriteHeaderAsync(uint version = 3, CancellationToken ct = default)
    {
        Span<byte> s = Reserve(8);
        BinaryPrimitives.WriteUInt32BigEndian(s, QemuWire.Magic);
        BinaryPrimitives.WriteUInt32BigEndian(s[4..], version);
        return MaybeFlushAsync(ct);
    }

    public ValueTask WriteCommandAsync(ushort command, ReadOnlyMemory<byte> data, CancellationToken ct = default)
    {
        if (data.Length > ushort.MaxValue)
        {
            throw new ArgumentException("command data too long", nameof(data));
        }

        Span<byte> s = Reserve(5);
        s[0] = QemuWire.Command;
        BinaryPrimitives.WriteUInt16BigEndian(s[1..], command);
        BinaryPrimitives.WriteUInt16BigEndian(s[3..], (ushort)data.Length);
        return WriteRawAsync(data, ct);
    }

    public ValueTask WriteSectionStartAsync(uint sectionId, string idStr, uint instanceId, uint version, CancellationToken ct = default)
    {
        byte[] id = Encoding.ASCII.GetBytes(idStr);
        Span<byte> s = Reserve(1 + 4 + 1 + id.Length + 8);
        s[0] = QemuWire.SectionStart;
        BinaryPrimitives.WriteUInt32BigEndian(s[1..], sectionId);
        s[5] = checked((byte)id.Length);
        id.CopyTo(s[6..]);
        BinaryPrimitives.WriteUInt32BigEndian(s[(6 + id.Length)..], instanceId);
        BinaryPrimitives.WriteUInt32BigEndian(s[(10 + id.Length)..], version);
        return MaybeFlushAsync(ct);
    }

    public ValueTask WriteSectionPartAsync(uint sectionId, CancellationToken ct = default) => WriteSectionAsync(QemuWire.SectionPart, sectionId, ct);

    public ValueTask WriteSectionEndAsync(uint sectionId, CancellationToken ct = default) => WriteSectionAsync(QemuWire.SectionEnd, sectionId, ct);

    public ValueTask WriteFooterAsync(uint sectionId, CancellationToken ct = default) => WriteSectionAsync(QemuWire.SectionFooter, sectionId, ct);

    public ValueTask WriteMemSizeAsync(long totalBytes, IReadOnlyList<RamBlock> blocks, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(blocks);
        BinaryPrimitives.WriteUInt64BigEndian(Reserve(8), (ulong)totalBytes | QemuWire.FlagMemSize);
        foreach (var b in blocks)
        {
            Span<byte> s = Reserve(1 + b.IdBytes.Length + 8 + (b.MrAddr is null ? 0 : 8));
            s[0] = (byte)b.IdBytes.Length;
            b.IdBytes.CopyTo(s[1..]);
            BinaryPrimitives.WriteUInt64BigEndian(s[(1 + b.IdBytes.Length)..], (ulong)b.UsedLength);
            if (b.MrAddr is long mr)
            {
                BinaryPrimitives.WriteUInt64BigEndian(s[(9 + b.IdBytes.Length)..], (ulong)mr);
            }
        }

        return MaybeFlushAsync(ct);
    }

    public ValueTask WriteZeroAsync(RamBlock block, long offset, byte fill = 0, bool continueFlag = false, CancellationToken ct = default)
    {
        WritePageHeader(block, offset, QemuWire.FlagZero, continueFlag);
        Reserve(1)[0] = fill;
        return MaybeFlushAsync(ct);
    }

    public ValueTask WritePageAsync(RamBlock block, long offset, ReadOnlySpan<byte> page, bool continueFlag = false, CancellationToken ct = default)
    {
        WritePageHeader(block, offset, QemuWire.FlagPage, continueFlag);
        page.CopyTo(Reserve(page.Length));
        return MaybeFlushAsync(ct);
    }

    public ValueTask WriteXbzrleAsync(RamBlock block, long offset, ReadOnlySpan<byte> encoded, bool continueFlag = false, CancellationToken ct = default)
    {
        if (encoded.Length > ushort.MaxValue)
        {
            throw new ArgumentException("XBZRLE data too long", nameof(encoded));
        }

        WritePageHeader(block, offset, QemuWire.FlagXbzrle, continueFlag);
        Span<byte> s = Reserve(3 + encoded.Length);
        s[0] = QemuWire.EncodingFlagXbzrle;
        BinaryPrimitives.WriteUInt16BigEndian(s[1..], (ushort)encoded.Length);
        encoded.CopyTo(s[3..]);
        return MaybeFlushAsync(ct);
    }

    public ValueTask WriteEosAsync(CancellationToken ct = default) => WriteFlagOnlyAsync(QemuWire.FlagEos, ct);

    public ValueTask WriteMultifdFlushAsync(CancellationToken ct = default) => WriteFlagOnlyAsync(QemuWire.FlagMultifdFlush, ct);

    /// <summary>Writes bytes as they are (configuration, tail).</summary>
    public async ValueTask WriteRawAsync(ReadOnlyMemory<byte> data, CancellationToken ct = default)
    {
        if (data.Length <= _buf.Length - _len)
        {
            data.Span.CopyTo(Reserve(data.Length));
            await MaybeFlushAsync(ct).ConfigureAwait(false);
            return;
        }

        await FlushAsync(ct).ConfigureAwait(false);
        await _stream.WriteAsync(data, ct).ConfigureAwait(false);
        BytesWritten += data.Length;
    }

    /// <summary>Writes the buffer out and flushes the stream.</summary>
    public async ValueTask FlushAsync(CancellationToken ct = default)
    {
        if (_len > 0)
        {
            await _stream.WriteAsync(_buf.AsMemory(0, _len), ct).ConfigureAwait(false);
            _len = 0;
        }

        await _stream.FlushAsync(ct).ConfigureAwait(false);
    }

    public async ValueTask DisposeAsync()
    {
        await FlushAsync().ConfigureAwait(false);
        if (!_leaveOpen)
        {
            await _stream.DisposeAsync().ConfigureAwait(false);
        }
    }

    private static RamBlock Need(RamBlock? block) => block ?? throw new ArgumentException("RAM record without a block");

    private void WritePageHeader(RamBlock block, long offset, int flag, bool continueFlag)
    {
        ArgumentNullException.ThrowIfNull(block);
        if (AutoContinue)
        {
            continueFlag = ReferenceEquals(block, _lastBlock);
        }
        else if (continueFlag && !ReferenceEquals(block, _lastBlock))
        {
            throw new InvalidOperationException($"CONTINUE for block '{block.IdStr}' but the previous page record was for '{_lastBlock?.IdStr}'");
        }

        _lastBlock = block;
        int idLen = continueFlag ? 0 : 1 + block.IdBytes.Length;
        Span<byte> s = Reserve(8 + idLen);
        BinaryPrimitives.WriteUInt64BigEndian(s, (ulong)offset | (uint)flag | (continueFlag ? (uint)QemuWire.FlagContinue : 0u));
        if (!continueFlag)
        {
            s[8] = (byte)block.IdBytes.Length;
            block.IdBytes.CopyTo(s[9..]);
        }
    }

    private ValueTask WriteFlagOnlyAsync(int flag, CancellationToken ct)
    {
        BinaryPrimitives.WriteUInt64BigEndian(Reserve(8), (ulong)flag);
        return MaybeFlushAsync(ct);
    }

    private ValueTask WriteSectionAsync(byte type, uint sectionId, CancellationToken ct)
    {
        Span<byte> s = Reserve(5);
        s[0] = type;
        BinaryPrimitives.WriteUInt32BigEndian(s[1..], sectionId);
        return MaybeFlushAsync(ct);
    }

    /// <summary>Room for <paramref name="n"/> bytes; the buffer is flushed beforehand when needed.</summary>
    private Span<byte> Reserve(int n)
    {
        if (n > _buf.Length - _len)
        {
            // Synchronous spill: only when a caller wrote without awaiting the previous MaybeFlushAsync.
            _stream.Write(_buf, 0, _len);
            _len = 0;
        }

        Span<byte> s = _buf.AsSpan(_len, n);
        _len += n;
        BytesWritten += n;
        return s;
    }

    private ValueTask MaybeFlushAsync(CancellationToken ct)
    {
        // Keep room for the largest record (page + header) so Reserve never has to spill synchronously.
        if (_buf.Length - _len >= 8 * 1024)
        {
            return ValueTask.CompletedTask;
        }

        return FlushBufferAsync(ct);
    }

    private async ValueTask FlushBufferAsync(CancellationToken ct)
    {
        await _stream.WriteAsync(_buf.AsMemory(0, _len), ct).ConfigureAwait(false);
        _len = 0;
    }
}
