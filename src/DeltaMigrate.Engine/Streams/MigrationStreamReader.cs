using System.Buffers.Binary;
using System.Text;

namespace DeltaMigrate.Engine.Streams;

/// <summary>
/// Pull reader of a QEMU 7.2 to 10.x precopy migration stream. Call <see cref="ReadAsync"/> until it returns false;
/// <see cref="Current"/> is the record just read, and its <see cref="MigrationRecord.Data"/> is valid only until the
/// next call. Only the <c>ram</c> live section is understood; once RAM's END section and its footer are read,
/// everything else comes as opaque <see cref="MigrationRecordKind.Tail"/> chunks.
/// </summary>
public sealed class MigrationStreamReader
{
    private const int MaxBufferSize = 1024 * 1024;
    private const int MaxBlocks = 4096;

    private readonly System.IO.Stream _stream;
    private readonly MigrationStreamReaderOptions _options;
    private readonly List<RamBlock> _blocks = [];
    private byte[] _buf;
    private int _start;
    private int _pos;
    private int _end;
    private long _bufBase;
    private bool _eof;
    private State _state = State.Header;
    private uint _sectionId;
    private uint? _ramSectionId;
    private bool _ramEnded;
    private RamBlock? _lastBlock;

    public MigrationStreamReader(System.IO.Stream stream, MigrationStreamReaderOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(stream);
        _stream = stream;
        _options = options ?? new MigrationStreamReaderOptions();
        _buf = new byte[Math.Max(_options.BufferSize, 16 * 1024)];
    }

    private enum State
    {
        Header,
        AfterHeader,
        TopLevel,
        Ram,
        Footer,
        Tail,
        Done,
    }

    /// <summary>The record just read.</summary>
    public MigrationRecord Current { get; private set; }

    /// <summary>Target page size (4096, or from configuration/target-page-bits).</summary>
    public int PageSize { get; private set; } = 4096;

    /// <summary>RAMBlocks learned from MEM_SIZE.</summary>
    public IReadOnlyList<RamBlock> Blocks => _blocks;

    /// <summary>Offset in the stream of the first byte not yet consumed.</summary>
    public long Position => _bufBase + _pos;

    /// <summary>RAM's section id, once its START was read.</summary>
    public uint? RamSectionId => _ramSectionId;

    /// <summary>Reads the next record. False at the end of the stream (only after RAM's END section).</summary>
    public async ValueTask<bool> ReadAsync(CancellationToken ct = default)
    {
        _start = _pos;
        switch (_state)
        {
            case State.Header:
                await EnsureAsync(8, ct).ConfigureAwait(false);
                if (ReadU32() != QemuWire.Magic)
                {
                    throw Error("not a QEMU migration stream (no QEVM magic)", _bufBase + _start);
                }

                uint version = ReadU32();
                if (version != 3)
                {
                    throw Error($"unsupported stream version {version} (expected 3)", _bufBase + _start + 4);
                }

                _state = State.AfterHeader;
                Current = new MigrationRecord { Kind = MigrationRecordKind.Header, Version = version };
                return true;

            case State.AfterHeader:
                _state = State.TopLevel;
                if (await TryPeekAsync(ct).ConfigureAwait(false) == QemuWire.Configuration)
                {
                    await ReadConfigurationAsync(ct).ConfigureAwait(false);
                    return true;
                }

                return await ReadTopLevelAsync(ct).ConfigureAwait(false);

            case State.TopLevel:
                return await ReadTopLevelAsync(ct).ConfigureAwait(false);

            case State.Ram:
                await ReadRamRecordAsync(ct).ConfigureAwait(false);
                return true;

            case State.Footer:
                {
                    await EnsureAsync(5, ct).ConfigureAwait(false);
                    byte type = _buf[_pos++];
                    if (type != QemuWire.SectionFooter)
                    {
                        throw Error($"expected a section footer (0x7e) after RAM's EOS, found 0x{type:x2}", _bufBase + _start);
                    }

                    uint id = ReadU32();
                    if (id != _sectionId)
                    {
                        throw Error($"section footer for id {id} does not match the open section {_sectionId}", _bufBase + _start);
                    }

                    _state = _ramEnded ? State.Tail : State.TopLevel;
                    Current = new MigrationRecord { Kind = MigrationRecordKind.Footer, SectionId = id };
                    return true;
                }

            case State.Tail:
                {
                    if (_end == _pos)
                    {
                        _bufBase += _end;
                        _pos = _start = _end = 0;
                        await FillAsync(ct).ConfigureAwait(false);
                        if (_end == 0)
                        {
                            _state = State.Done;
                            Current = default;
                            return false;
                        }
                    }

                    int n = Math.Min(_end - _pos, _options.TailChunkSize);
                    Current = new MigrationRecord { Kind = MigrationRecordKind.Tail, Data = new ReadOnlyMemory<byte>(_buf, _pos, n) };
                    _pos += n;
                    return true;
                }

            default:
                Current = default;
                return false;
        }
    }

    private async ValueTask<bool> ReadTopLevelAsync(CancellationToken ct)
    {
        await EnsureAsync(1, ct).ConfigureAwait(false);
        byte type = _buf[_pos];
        long at = _bufBase + _pos;
        switch (type)
        {
            case QemuWire.SectionStart:
                {
                    await EnsureAsync(6, ct).ConfigureAwait(false);
                    _pos++;
                    uint id = ReadU32();
                    int len = _buf[_pos++];
                    await EnsureAsync(len + 8, ct).ConfigureAwait(false);
                    string idstr = Encoding.ASCII.GetString(_buf, _pos, len);
                    _pos += len;
                    uint instance = ReadU32();
                    uint version = ReadU32();
                    if (idstr != "ram")
                    {
                        throw Error($"live section '{idstr}' is not supported: only the 'ram' live section can be read (its format is the only one this reader understands); migrate this VM without it", at);
                    }

                    if (_ramSectionId is not null)
                    {
                        throw Error("a second START section for 'ram'", at);
                    }

                    _ramSectionId = id;
                    _sectionId = id;
                    _state = State.Ram;
                    Current = new MigrationRecord { Kind = MigrationRecordKind.SectionStart, SectionId = id, IdStr = idstr, InstanceId = instance, Version = version };
                    return true;
                }

            case QemuWire.SectionPart:
            case QemuWire.SectionEnd:
                {
                    await EnsureAsync(5, ct).ConfigureAwait(false);
                    _pos++;
                    uint id = ReadU32();
                    if (_ramSectionId is null || id != _ramSectionId)
                    {
                        throw Error($"{(type == QemuWire.SectionPart ? "PART" : "END")} section for unknown section id {id}", at);
                    }

                    _sectionId = id;
                    _state = State.Ram;
                    _ramEnded = type == QemuWire.SectionEnd;
                    Current = new MigrationRecord { Kind = _ramEnded ? MigrationRecordKind.SectionEnd : MigrationRecordKind.SectionPart, SectionId = id };
                    return true;
                }

            case QemuWire.Command:
                {
                    await EnsureAsync(5, ct).ConfigureAwait(false);
                    _pos++;
                    ushort cmd = ReadU16();
                    ushort len = ReadU16();
                    await EnsureAsync(len, ct).ConfigureAwait(false);
                    Current = new MigrationRecord { Kind = MigrationRecordKind.Command, Command = cmd, Data = new ReadOnlyMemory<byte>(_buf, _pos, len) };
                    _pos += len;
                    return true;
                }

            case QemuWire.SectionFull:
            case QemuWire.Eof:
            case QemuWire.VmDescription:
                throw Error($"device state (section type 0x{type:x2}) before RAM's END section is not supported", at);

            default:
                throw Error($"unexpected section type 0x{type:x2}", at);
        }
    }

    private async ValueTask ReadConfigurationAsync(CancellationToken ct)
    {
        await EnsureAsync(5, ct).ConfigureAwait(false);
        _pos++;
        uint len = ReadU32();
        if (len == 0 || len > 256)
        {
            throw Error($"implausible machine-type name length {len} in the configuration", _bufBase + _pos - 4);
        }

        await EnsureAsync((int)len, ct).ConfigureAwait(false);
        _pos += (int)len;
        while (await TryPeekAsync(ct).ConfigureAwait(false) == QemuWire.Subsection)
        {
            long at = _bufBase + _pos;
            await EnsureAsync(2, ct).ConfigureAwait(false);
            _pos++;
            int nameLen = _buf[_pos++];
            await EnsureAsync(nameLen + 4, ct).ConfigureAwait(false);
            string name = Encoding.ASCII.GetString(_buf, _pos, nameLen);
            _pos += nameLen + 4; // name + be32 version
            switch (name)
            {
                case "configuration/target-page-bits":
                    {
                        await EnsureAsync(4, ct).ConfigureAwait(false);
                        uint bits = ReadU32();
                        if (bits is < 9 or > 16)
                        {
                            throw Error($"implausible target-page-bits {bits}", at);
                        }

                        PageSize = 1 << (int)bits;
                        break;
                    }

                case "configuration/capabilities":
                    {
                        await EnsureAsync(4, ct).ConfigureAwait(false);
                        uint count = ReadU32();
                        if (count > 256)
                        {
                            throw Error($"implausible capability count {count}", at);
                        }

                        for (uint i = 0; i < count; i++)
                        {
                            await EnsureAsync(1, ct).ConfigureAwait(false);
                            int capLen = _buf[_pos++];
                            await EnsureAsync(capLen, ct).ConfigureAwait(false);
                            _pos += capLen;
                        }

                        break;
                    }

                case "configuration/uuid":
                    await EnsureAsync(16, ct).ConfigureAwait(false);
                    _pos += 16;
                    break;

                default:
                    throw Error($"unknown configuration subsection '{name}'", at);
            }
        }

        Current = new MigrationRecord { Kind = MigrationRecordKind.Configuration, Data = new ReadOnlyMemory<byte>(_buf, _start, _pos - _start) };
    }

    private async ValueTask ReadRamRecordAsync(CancellationToken ct)
    {
        await EnsureAsync(8, ct).ConfigureAwait(false);
        long at = _bufBase + _pos;
        ulong raw = ReadU64();
        int flags = (int)(raw & (ulong)(PageSize - 1));
        long addr = (long)(raw & ~(ulong)(PageSize - 1));
        bool cont = (flags & QemuWire.FlagContinue) != 0;
        int kind = flags & ~QemuWire.FlagContinue;
        switch (kind)
        {
            case QemuWire.FlagMemSize:
                if (cont)
                {
                    throw Error("MEM_SIZE with CONTINUE", at);
                }

                await ReadMemSizeAsync(addr, at, ct).ConfigureAwait(false);
                return;

            case QemuWire.FlagEos:
            case QemuWire.FlagMultifdFlush:
                if (cont || addr != 0)
                {
                    throw Error($"malformed RAM record header 0x{raw:x16}", at);
                }

                if (kind == QemuWire.FlagEos)
                {
                    _state = State.Footer;
                    Current = new MigrationRecord { Kind = MigrationRecordKind.Eos };
                }
                else
                {
                    Current = new MigrationRecord { Kind = MigrationRecordKind.MultifdFlush };
                }

                return;

            case QemuWire.FlagZero:
            case QemuWire.FlagPage:
            case QemuWire.FlagXbzrle:
                break;

            case QemuWire.FlagHook:
                throw Error("RAM HOOK record (RDMA migration) is not supported", at);

            case QemuWire.FlagCompressPage:
                throw Error("RAM COMPRESS_PAGE record (multi-thread compression) is not supported", at);

            default:
                throw Error($"unknown RAM record flags 0x{flags:x} (header 0x{raw:x16})", at);
        }

        RamBlock block;
        if (cont)
        {
            block = _lastBlock ?? throw Error("RAM record with CONTINUE but no previous block", at);
        }
        else
        {
            await EnsureAsync(1, ct).ConfigureAwait(false);
            int len = _buf[_pos++];
            await EnsureAsync(len, ct).ConfigureAwait(false);
            block = FindBlock(_buf.AsSpan(_pos, len)) ?? throw Error($"RAM record for unknown block '{Encoding.ASCII.GetString(_buf, _pos, len)}'", at);
            _pos += len;
            _lastBlock = block;
        }

        if (addr >= block.UsedLength)
        {
            throw Error($"RAM offset 0x{addr:x} beyond block '{block.IdStr}' ({block.UsedLength} bytes)", at);
        }

        switch (kind)
        {
            case QemuWire.FlagZero:
                await EnsureAsync(1, ct).ConfigureAwait(false);
                Current = new MigrationRecord { Kind = MigrationRecordKind.Zero, Block = block, Offset = addr, Continue = cont, Fill = _buf[_pos++] };
                return;

            case QemuWire.FlagPage:
                await EnsureAsync(PageSize, ct).ConfigureAwait(false);
                Current = new MigrationRecord { Kind = MigrationRecordKind.Page, Block = block, Offset = addr, Continue = cont, Data = new ReadOnlyMemory<byte>(_buf, _pos, PageSize) };
                _pos += PageSize;
                return;

            default:
                {
                    await EnsureAsync(3, ct).ConfigureAwait(false);
                    long encAt = _bufBase + _pos;
                    byte encoding = _buf[_pos++];
                    if (encoding != QemuWire.EncodingFlagXbzrle)
                    {
                        throw Error($"unknown XBZRLE encoding flag 0x{encoding:x2}", encAt);
                    }

                    int len = ReadU16();
                    if (len > PageSize)
                    {
                        throw Error($"XBZRLE length {len} exceeds the page size", encAt);
                    }

                    await EnsureAsync(len, ct).ConfigureAwait(false);
                    Current = new MigrationRecord { Kind = MigrationRecordKind.Xbzrle, Block = block, Offset = addr, Continue = cont, Data = new ReadOnlyMemory<byte>(_buf, _pos, len) };
                    _pos += len;
                    return;
                }
        }
    }

    private async ValueTask ReadMemSizeAsync(long total, long at, CancellationToken ct)
    {
        var blocks = new List<RamBlock>();
        long sum = 0;
        while (sum < total)
        {
            if (blocks.Count >= MaxBlocks)
            {
                throw Error("too many RAMBlocks in MEM_SIZE", at);
            }

            await EnsureAsync(1, ct).ConfigureAwait(false);
            int len = _buf[_pos];
            if (len == 0)
            {
                throw Error("empty RAMBlock name in MEM_SIZE", _bufBase + _pos);
            }

            int need = 1 + len + 8 + (_options.IgnoreShared ? 8 : 0);
            await EnsureAsync(need, ct).ConfigureAwait(false);
            _pos++;
            string name = Encoding.ASCII.GetString(_buf, _pos, len);
            _pos += len;
            long used = (long)ReadU64();
            long? mrAddr = _options.IgnoreShared ? (long)ReadU64() : null;
            if (used <= 0 || used > total - sum)
            {
                throw Error($"RAMBlock '{name}' used length {used} does not fit the MEM_SIZE total {total}", at);
            }

            sum += used;
            blocks.Add(new RamBlock(name, used, mrAddr));
        }

        _blocks.Clear();
        _blocks.AddRange(blocks);
        Current = new MigrationRecord { Kind = MigrationRecordKind.MemSize, TotalBytes = total, Blocks = blocks };
    }

    private RamBlock? FindBlock(ReadOnlySpan<byte> name)
    {
        if (_lastBlock is not null && name.SequenceEqual(_lastBlock.IdBytes))
        {
            return _lastBlock;
        }

        foreach (var b in _blocks)
        {
            if (name.SequenceEqual(b.IdBytes))
            {
                return b;
            }
        }

        return null;
    }

    private async ValueTask<int> TryPeekAsync(CancellationToken ct)
    {
        if (_end - _pos < 1)
        {
            Compact(1);
            while (_end - _pos < 1 && !_eof)
            {
                await FillAsync(ct).ConfigureAwait(false);
            }
        }

        return _end > _pos ? _buf[_pos] : -1;
    }

    /// <summary>Makes sure <paramref name="count"/> bytes are buffered from <see cref="_pos"/>, keeping the record start.</summary>
    private ValueTask EnsureAsync(int count, CancellationToken ct) =>
        _end - _pos >= count ? ValueTask.CompletedTask : EnsureSlowAsync(count, ct);

    private async ValueTask EnsureSlowAsync(int count, CancellationToken ct)
    {
        Compact(count);
        while (_end - _pos < count)
        {
            if (_eof)
            {
                throw Error($"stream truncated: needed {count} more bytes, {_end - _pos} left", _bufBase + _end);
            }

            await FillAsync(ct).ConfigureAwait(false);
        }
    }

    private void Compact(int count)
    {
        int keep = _end - _start;
        int needTotal = (_pos - _start) + count;
        if (needTotal > _buf.Length)
        {
            if (needTotal > MaxBufferSize)
            {
                throw Error($"record too large ({needTotal} bytes)", _bufBase + _start);
            }

            var bigger = new byte[Math.Max(needTotal, _buf.Length * 2)];
            Buffer.BlockCopy(_buf, _start, bigger, 0, keep);
            _buf = bigger;
        }
        else if (_start > 0 && _buf.Length - _start < needTotal)
        {
            Buffer.BlockCopy(_buf, _start, _buf, 0, keep);
        }
        else
        {
            return;
        }

        _bufBase += _start;
        _pos -= _start;
        _end -= _start;
        _start = 0;
    }

    private async ValueTask FillAsync(CancellationToken ct)
    {
        if (_eof)
        {
            return;
        }

        int n = await _stream.ReadAsync(_buf.AsMemory(_end), ct).ConfigureAwait(false);
        if (n == 0)
        {
            _eof = true;
        }

        _end += n;
    }

    private ushort ReadU16()
    {
        ushort v = BinaryPrimitives.ReadUInt16BigEndian(_buf.AsSpan(_pos));
        _pos += 2;
        return v;
    }

    private uint ReadU32()
    {
        uint v = BinaryPrimitives.ReadUInt32BigEndian(_buf.AsSpan(_pos));
        _pos += 4;
        return v;
    }

    private ulong ReadU64()
    {
        ulong v = BinaryPrimitives.ReadUInt64BigEndian(_buf.AsSpan(_pos));
        _pos += 8;
        return v;
    }

    private StreamFormatException Error(string message, long offset)
    {
        _state = State.Done;
        return new StreamFormatException(message, offset);
    }
}
