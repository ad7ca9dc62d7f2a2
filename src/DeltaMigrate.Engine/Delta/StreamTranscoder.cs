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
    /// <summary>The only target page size the transcoder handles so far (x86-64's).</summary>
    public const int SupportedPageSize = 4096;

    private readonly long _cacheBytes;
    private byte[] _encoded = [];
    private byte[] _scratch = [];
    private int _pageSize;
    private readonly Dictionary<RamBlock, long> _firstPage = new(ReferenceEqualityComparer.Instance);
    private PageCache? _cache;
    private PassRecorder? _passes;
    private long _lastPage = -1;

    public StreamTranscoder(long cacheBytes)
    {
        _cacheBytes = cacheBytes;
    }

    /// <summary>Live counters; read them from any thread while a migration runs.</summary>
    public DeltaCounters Counters { get; } = new();

    /// <summary>Every pass over RAM so far, with its own exact counts; read from any thread.</summary>
    public IReadOnlyList<StreamPass> Passes => _passes?.Snapshot() ?? [];

    /// <summary>Stopwatch timestamp the passes' times count from; null before the stream starts.</summary>
    internal long? PassesOrigin => _passes?.Origin;

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
        _passes = new PassRecorder(Counters, () => writer.BytesWritten);
        while (await reader.ReadAsync(cancellationToken))
        {
            var record = reader.Current;
            if (record.Kind is MigrationRecordKind.Page or MigrationRecordKind.Zero or MigrationRecordKind.Xbzrle)
            {
                NoteScanPosition(PageOf(record));
            }

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
        _passes.Complete();
    }

    // QEMU scans RAM in order; going back to a lower page means a new pass (the cache's "round").
    private void NoteScanPosition(long page)
    {
        if (page < _lastPage)
        {
            Cache.NextRound();
            _passes!.NextPass();
        }

        _lastPage = page;
    }

    private PageCache Cache => _cache ?? throw new StreamFormatException("a RAM page arrived before the RAM block list (MEM_SIZE)", 0);

    // The page size is the stream's own (configuration/target-page-bits), never assumed.
    private void StartCache(IReadOnlyList<RamBlock> blocks, int pageSize)
    {
        if (pageSize != SupportedPageSize)
        {
            // Pages, offsets and the XBZRLE encoding would all be cut at the wrong size: refuse before touching the stream.
            throw new EngineException("UnsupportedPageSize", ErrorKind.NotImplemented,
                $"The source VM's target page size is {pageSize} bytes; Delta mode supports only {SupportedPageSize}-byte pages so far. Migrate it with -Compress Lz4 (or None).");
        }

        _pageSize = pageSize;
        _encoded = new byte[pageSize];
        _scratch = new byte[pageSize];
        long total = 0;
        foreach (var block in blocks)
        {
            _firstPage[block] = total;
            total += (block.UsedLength + pageSize - 1) / pageSize;
        }

        _cache = new PageCache(_cacheBytes, total, pageSize);
        Counters.Set(ref Counters.CacheSize, _cacheBytes);
    }

    private long PageOf(in MigrationRecord record) => _firstPage.TryGetValue(record.Block!, out var first)
        ? first + (record.Offset / _pageSize)
        : throw new StreamFormatException("a RAM page arrived before the RAM block list (MEM_SIZE)", 0);

    private async ValueTask WritePageAsync(MigrationStreamWriter writer, MigrationRecord record, CancellationToken cancellationToken)
    {
        var page = PageOf(record);
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
