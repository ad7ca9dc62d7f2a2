using System.Diagnostics;
using DeltaMigrate.Engine.Codec;
using DeltaMigrate.Engine.Streams;

namespace DeltaMigrate.Engine.Delta;

/// <summary>
/// Rewrites QEMU's outgoing migration stream on the fly: a page QEMU sends again becomes an
/// XBZRLE record encoded against what the destination already holds (our <see cref="PageCache"/>),
/// an unchanged page is dropped, everything else passes through. The destination QEMU decodes
/// the XBZRLE records itself, so the receiving side keeps no page store.
/// </summary>
public sealed class StreamTranscoder
{
    private readonly long _cacheBytes;
    private readonly byte[] _encoded;
    private readonly byte[] _scratch;
    private readonly Dictionary<RamBlock, long> _firstPage = new(ReferenceEqualityComparer.Instance);
    private PageCache? _cache;
    private long _lastPage = -1;

    public StreamTranscoder(long cacheBytes, int pageSize = 4096)
    {
        _cacheBytes = cacheBytes;
        _encoded = new byte[pageSize];
        _scratch = new byte[pageSize];
    }

    /// <summary>Live counters; read them from any thread while a migration runs.</summary>
    public DeltaCounters Counters { get; } = new();

    /// <summary>
    /// Flush after each piece of the device state that follows RAM: with a return path the source
    /// QEMU keeps its socket open until the destination answers, so nothing may wait in a frame.
    /// </summary>
    public bool FlushTail { get; init; }

    /// <summary>Reads QEMU's stream to its end, writing the rewritten stream.</summary>
    public async Task RunAsync(MigrationStreamReader reader, MigrationStreamWriter writer, CancellationToken cancellationToken)
    {
        // Records we drop would leave a CONTINUE pointing at the wrong block: let the writer decide.
        writer.AutoContinue = true;
        while (await reader.ReadAsync(cancellationToken))
        {
            var record = reader.Current;
            switch (record.Kind)
            {
                case MigrationRecordKind.MemSize:
                    StartCache(record.Blocks!, reader.PageSize);
                    await writer.WriteAsync(record, cancellationToken);
                    break;
                case MigrationRecordKind.Page:
                    await WritePageAsync(writer, record, cancellationToken);
                    break;
                case MigrationRecordKind.Zero:
                    Counters.Add(ref Counters.ZeroPages);
                    if (record.Fill == 0)
                    {
                        Cache.StoreZero(PageOf(record));
                    }
                    else
                    {
                        Cache.Forget(PageOf(record)); // QEMU 7.2 fills with a byte we do not track
                    }

                    await writer.WriteAsync(record, cancellationToken);
                    break;
                case MigrationRecordKind.Xbzrle:
                    // Only if someone left QEMU's own xbzrle on: keep the mirror honest.
                    ApplyForeignDelta(record);
                    await writer.WriteAsync(record, cancellationToken);
                    break;
                default:
                    await writer.WriteAsync(record, cancellationToken);
                    if (FlushTail && record.Kind == MigrationRecordKind.Tail)
                    {
                        await writer.FlushAsync(cancellationToken);
                    }

                    break;
            }

            Counters.Set(ref Counters.StreamBytes, reader.Position);
        }

        await writer.FlushAsync(cancellationToken);
    }

    private PageCache Cache => _cache ?? throw new StreamFormatException("a RAM page arrived before the RAM block list (MEM_SIZE)", 0);

    private void StartCache(IReadOnlyList<RamBlock> blocks, int pageSize)
    {
        long total = 0;
        foreach (var block in blocks)
        {
            _firstPage[block] = total;
            total += (block.UsedLength + pageSize - 1) / pageSize;
        }

        _cache = new PageCache(_cacheBytes, total, pageSize);
        Counters.Set(ref Counters.CacheSize, _cacheBytes);
    }

    private long PageOf(in MigrationRecord record) => _firstPage[record.Block!] + (record.Offset / _encoded.Length);

    private async ValueTask WritePageAsync(MigrationStreamWriter writer, MigrationRecord record, CancellationToken cancellationToken)
    {
        var page = PageOf(record);

        // QEMU scans RAM in order; going back to a lower page means a new pass (the cache's "round").
        if (page < _lastPage)
        {
            Cache.NextRound();
        }

        _lastPage = page;
        var data = record.Data.Span;
        if (!Cache.TryGet(page, out var old))
        {
            Counters.Add(ref Counters.CacheMisses);
            Counters.Add(ref Counters.RawPages);
            Cache.Store(page, data);
            Counters.Set(ref Counters.CacheEvictions, Cache.Stats.Evictions);
            await writer.WriteAsync(record, cancellationToken);
            return;
        }

        Counters.Add(ref Counters.CacheHits);
        var started = Stopwatch.GetTimestamp();
        var length = Xbzrle.Encode(old, data, _encoded);
        Counters.Add(ref Counters.EncodeTicks, Stopwatch.GetTimestamp() - started);
        if (length == 0)
        {
            Counters.Add(ref Counters.UnchangedPages); // the destination has it already
            return;
        }

        Cache.Store(page, data);
        if (length < 0)
        {
            Counters.Add(ref Counters.Overflows);
            Counters.Add(ref Counters.RawPages);
            await writer.WriteAsync(record, cancellationToken);
            return;
        }

        Counters.Add(ref Counters.XbzrlePages);
        Counters.Add(ref Counters.XbzrleBytes, length);
        await writer.WriteXbzrleAsync(record.Block!, record.Offset, _encoded.AsSpan(0, length), ct: cancellationToken);
    }

    private void ApplyForeignDelta(in MigrationRecord record)
    {
        var page = PageOf(record);
        if (Cache.TryGet(page, out var old))
        {
            old.CopyTo(_scratch);
            if (Xbzrle.Decode(record.Data.Span, _scratch) >= 0)
            {
                Cache.Store(page, _scratch);
                return;
            }
        }

        Cache.Forget(page);
    }
}

/// <summary>What the transcoder did so far; fields are updated with Interlocked and read with Volatile.</summary>
public sealed class DeltaCounters
{
    public long StreamBytes;
    public long ZeroPages;
    public long RawPages;
    public long XbzrlePages;
    public long XbzrleBytes;
    public long UnchangedPages;
    public long CacheHits;
    public long CacheMisses;
    public long CacheEvictions;
    public long Overflows;
    public long EncodeTicks;
    public long CacheSize;

    internal void Add(ref long counter, long amount = 1) => Interlocked.Add(ref counter, amount);

    internal void Set(ref long counter, long value) => Volatile.Write(ref counter, value);

    public static long Read(ref long counter) => Volatile.Read(ref counter);

    public TimeSpan EncodeTime => Stopwatch.GetElapsedTime(0, Read(ref EncodeTicks));
}
