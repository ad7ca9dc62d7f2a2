using System.Buffers.Binary;
using System.Text;
using DeltaMigrate.Engine.Codec;
using DeltaMigrate.Engine.Delta;
using DeltaMigrate.Engine.Streams;

namespace DeltaMigrate.Engine.Tests.Delta;

/// <summary>
/// <see cref="StreamTranscoder"/> on synthetic streams written with <see cref="MigrationStreamWriter"/>: one behaviour
/// per test, read back record by record. (That the result loads into QEMU is XbzrleRewriteTests' part.)
/// </summary>
public sealed class StreamTranscoderTests
{
    private const int PageSize = 4096;
    private static readonly RamBlock Block = new("pc.ram", 16 * PageSize);

    private sealed record Written(MigrationRecordKind Kind, long Offset, byte[] Data);

    private static byte[] Page(int seed)
    {
        var page = new byte[PageSize];
        new Random(seed).NextBytes(page);
        return page;
    }

    [Fact]
    public async Task AnUnchangedPageIsDropped()
    {
        var page = Page(1);
        var (records, counters) = await TranscodeAsync(async w =>
        {
            await w.WritePageAsync(Block, 3 * PageSize, page);
            await w.WritePageAsync(Block, 3 * PageSize, page);
        });

        Assert.Single(records, r => r.Kind == MigrationRecordKind.Page);
        Assert.DoesNotContain(records, r => r.Kind == MigrationRecordKind.Xbzrle);
        Assert.Equal(1, counters.UnchangedPages);
    }

    [Fact]
    public async Task ASmallChangeBecomesAnXbzrleRecordThatDecodesToTheNewPage()
    {
        var before = Page(2);
        var after = (byte[])before.Clone();
        after[100] ^= 0xff;
        var (records, counters) = await TranscodeAsync(async w =>
        {
            await w.WritePageAsync(Block, 0, before);
            await w.WritePageAsync(Block, 0, after);
        });

        var delta = Assert.Single(records, r => r.Kind == MigrationRecordKind.Xbzrle);
        var decoded = (byte[])before.Clone();
        Assert.True(Xbzrle.Decode(delta.Data, decoded) >= 0);
        Assert.Equal(after, decoded);
        Assert.Equal(1, counters.XbzrlePages);
    }

    [Fact]
    public async Task AnOverflowingDeltaIsSentRaw()
    {
        var after = Page(4); // unrelated random bytes: the delta would be larger than the page
        var (records, counters) = await TranscodeAsync(async w =>
        {
            await w.WritePageAsync(Block, PageSize, Page(3));
            await w.WritePageAsync(Block, PageSize, after);
        });

        var pages = records.Where(r => r.Kind == MigrationRecordKind.Page).ToList();
        Assert.Equal(2, pages.Count);
        Assert.Equal(after, pages[1].Data);
        Assert.Equal(1, counters.Overflows);
        Assert.DoesNotContain(records, r => r.Kind == MigrationRecordKind.Xbzrle);
    }

    [Fact]
    public async Task AZeroWithAZeroFillIsKnownButANonZeroFillIsForgotten()
    {
        var zeros = new byte[PageSize];
        var filled = Enumerable.Repeat((byte)0x11, PageSize).ToArray();
        var (records, counters) = await TranscodeAsync(async w =>
        {
            await w.WriteZeroAsync(Block, 0, fill: 0);
            await w.WritePageAsync(Block, 0, zeros);              // the destination holds zeros: dropped
            await w.WritePageAsync(Block, PageSize, Page(5));
            await w.WriteZeroAsync(Block, PageSize, fill: 0x11);
            await w.WritePageAsync(Block, PageSize, filled);      // a fill we do not track: must go out whole
        });

        Assert.Equal(1, counters.UnchangedPages);
        Assert.Equal(2, records.Count(r => r.Kind == MigrationRecordKind.Zero));
        var pages = records.Where(r => r.Kind == MigrationRecordKind.Page).ToList();
        Assert.Equal(2, pages.Count);
        Assert.Equal(filled, pages[1].Data);
        Assert.DoesNotContain(records, r => r.Kind == MigrationRecordKind.Xbzrle);
    }

    [Fact]
    public async Task PageNumbersGoingBackStartANewPass()
    {
        // A one-page cache: page 2 is cached in pass 0; page 1 (pass 1) cannot replace it while it is fresh; page 0
        // (pass 2) can. Without new passes page 2 would still be cached and its re-send dropped.
        var two = Page(6);
        var (records, counters) = await TranscodeAsync(
            async w =>
            {
                await w.WritePageAsync(Block, 2 * PageSize, two);
                await w.WritePageAsync(Block, 1 * PageSize, Page(7));
                await w.WritePageAsync(Block, 0, Page(8));
                await w.WritePageAsync(Block, 2 * PageSize, two);
            },
            cacheBytes: PageSize);

        Assert.Equal(1, counters.CacheEvictions);
        Assert.Equal(0, counters.UnchangedPages);
        Assert.Equal(4, records.Count(r => r.Kind == MigrationRecordKind.Page));
    }

    [Fact]
    public async Task ThePageSizeComesFromTheStream()
    {
        var page = Page(9);
        var (records, counters) = await TranscodeAsync(
            async w =>
            {
                await w.WritePageAsync(Block, 5 * PageSize, page);
                await w.WritePageAsync(Block, 5 * PageSize, page);
            },
            pageBits: 12);

        Assert.Single(records, r => r.Kind == MigrationRecordKind.Configuration);
        Assert.Single(records, r => r.Kind == MigrationRecordKind.Page);
        Assert.Equal(1, counters.UnchangedPages);
    }

    [Fact]
    public async Task APageSizeOtherThan4096IsRefused()
    {
        var e = await Assert.ThrowsAsync<EngineException>(() => TranscodeAsync(_ => Task.CompletedTask, pageBits: 13));
        Assert.Equal("UnsupportedPageSize", e.ErrorId);
        Assert.Contains("8192", e.Message);
        Assert.Contains("-Compress Lz4", e.Message);
    }

    private static async Task<(List<Written> Records, DeltaCounters Counters)> TranscodeAsync(
        Func<MigrationStreamWriter, Task> writeRam, long cacheBytes = 1 << 20, uint? pageBits = null)
    {
        using var input = new MemoryStream();
        await using (var w = new MigrationStreamWriter(input))
        {
            await w.WriteHeaderAsync();
            if (pageBits is { } bits)
            {
                await w.WriteRawAsync(Configuration(bits));
            }

            await w.WriteSectionStartAsync(2, "ram", 0, 4);
            await w.WriteMemSizeAsync(Block.UsedLength, [Block]);
            await w.WriteEosAsync();
            await w.WriteFooterAsync(2);
            await w.WriteSectionPartAsync(2);
            await writeRam(w);
            await w.WriteEosAsync();
            await w.WriteFooterAsync(2);
            await w.WriteSectionEndAsync(2);
            await w.WriteEosAsync();
            await w.WriteFooterAsync(2);
            await w.WriteRawAsync(new byte[] { 0x00 }); // QEMU_VM_EOF: past RAM's END, passed through
        }

        var transcoder = new StreamTranscoder(cacheBytes);
        using var output = new MemoryStream();
        await using (var w = new MigrationStreamWriter(output))
        {
            await transcoder.RunAsync(new MigrationStreamReader(new MemoryStream(input.ToArray())), w, CancellationToken.None);
        }

        var records = new List<Written>();
        var reader = new MigrationStreamReader(new MemoryStream(output.ToArray()));
        while (await reader.ReadAsync())
        {
            var r = reader.Current;
            records.Add(new Written(r.Kind, r.Offset, r.Data.ToArray()));
        }

        return (records, transcoder.Counters);
    }

    /// <summary>QEMU's configuration section with only its target-page-bits subsection.</summary>
    private static byte[] Configuration(uint pageBits)
    {
        var bytes = new List<byte> { 0x07 };
        var machine = Encoding.ASCII.GetBytes("pc");
        bytes.AddRange(BigEndian(machine.Length));
        bytes.AddRange(machine);
        var name = Encoding.ASCII.GetBytes("configuration/target-page-bits");
        bytes.Add(0x05);
        bytes.Add((byte)name.Length);
        bytes.AddRange(name);
        bytes.AddRange(BigEndian(1));
        bytes.AddRange(BigEndian((int)pageBits));
        return [.. bytes];
    }

    private static byte[] BigEndian(int value)
    {
        var b = new byte[4];
        BinaryPrimitives.WriteInt32BigEndian(b, value);
        return b;
    }
}
