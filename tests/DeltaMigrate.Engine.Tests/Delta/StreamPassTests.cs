using System.Buffers.Binary;
using System.Text;
using DeltaMigrate.Engine.Delta;
using DeltaMigrate.Engine.Streams;

namespace DeltaMigrate.Engine.Tests.Delta;

/// <summary>
/// Rounds from the stream itself: a synthetic stream with a known number of passes, each with a known
/// mix of pages, comes out of the transcoder as exactly those passes with exactly those counts. A pass
/// shows where QEMU's scan goes back to a lower page (it wrapped around RAM), as it does in every test here.
/// </summary>
public sealed class StreamPassTests
{
    private const int PageSize = 4096;
    private const uint RamSection = 2;
    private const int Pages = 64;

    // Per pass after the first: which pages QEMU sends again, and how each changed.
    private enum Change { Unchanged, Small, Zero, Whole }

    [Fact]
    public async Task EveryPassIsRecordedWithItsOwnExactCounts()
    {
        var passes = new List<(long Page, Change Change)[]>
        {
            Enumerable.Range(0, Pages).Select(p => ((long)p, p % 8 == 0 ? Change.Zero : Change.Whole)).ToArray(),
            new (long, Change)[] { (3, Change.Small), (5, Change.Unchanged), (9, Change.Small), (40, Change.Whole) },
            new (long, Change)[] { (1, Change.Unchanged), (2, Change.Unchanged) },
            new (long, Change)[] { (0, Change.Small), (20, Change.Small) },
            new (long, Change)[] { (7, Change.Small), (12, Change.Zero), (63, Change.Small) },
        };

        var (stream, expected) = Build(passes);
        var transcoder = new StreamTranscoder(cacheBytes: 4 * Pages * PageSize);
        await using var output = new MigrationStreamWriter(new MemoryStream());
        await transcoder.RunAsync(new MigrationStreamReader(new MemoryStream(stream)), output, CancellationToken.None);

        var recorded = transcoder.Passes;
        Assert.Equal(passes.Count, recorded.Count);
        for (var i = 0; i < passes.Count; i++)
        {
            var pass = recorded[i];
            Assert.Equal(i + 1, pass.Pass);
            Assert.Equal(expected[i], (pass.RawPages, pass.XbzrlePages, pass.ZeroPages, pass.UnchangedPages));
            Assert.True(pass.StreamBytes > 0, $"pass {i + 1} counted no stream bytes");
            Assert.True(pass.Duration >= TimeSpan.Zero);
            if (i > 0)
            {
                Assert.True(pass.Start >= recorded[i - 1].Start, "passes out of order");
            }
        }

        // Together the passes are the whole stream and everything the transcoder counted, once.
        Assert.Equal(DeltaCounters.Read(ref transcoder.Counters.StreamBytes), recorded.Sum(p => p.StreamBytes));
        Assert.Equal(output.BytesWritten, recorded.Sum(p => p.OutputBytes));
        Assert.Equal(DeltaCounters.Read(ref transcoder.Counters.XbzrlePages), recorded.Sum(p => p.XbzrlePages));
        Assert.Equal(DeltaCounters.Read(ref transcoder.Counters.XbzrleBytes), recorded.Sum(p => p.XbzrleBytes));

        // Dropped pages cost nothing: the pass of two unchanged pages sent less than one page.
        Assert.True(recorded[2].OutputBytes < PageSize, $"pass 3 wrote {recorded[2].OutputBytes} bytes");
    }

    [Fact]
    public async Task AStreamWithOnePassHasOneRound()
    {
        var (stream, expected) = Build([Enumerable.Range(0, Pages).Select(p => ((long)p, Change.Whole)).ToArray()]);
        var transcoder = new StreamTranscoder(cacheBytes: 4 * Pages * PageSize);
        await using var output = new MigrationStreamWriter(new MemoryStream());
        await transcoder.RunAsync(new MigrationStreamReader(new MemoryStream(stream)), output, CancellationToken.None);

        var pass = Assert.Single(transcoder.Passes);
        Assert.Equal(expected[0], (pass.RawPages, pass.XbzrlePages, pass.ZeroPages, pass.UnchangedPages));
    }

    // A stream as QEMU writes it: setup, one section part per pass, completion; and the counts each pass must give.
    private static (byte[] Stream, List<(long Raw, long Xbzrle, long Zero, long Unchanged)> Expected) Build(List<(long Page, Change Change)[]> passes)
    {
        var block = new RamBlock("pc.ram", Pages * PageSize);
        var rng = new Random(7);
        var memory = new byte[Pages][];
        var isZero = new bool[Pages];
        var expected = new List<(long, long, long, long)>();
        var output = new MemoryStream();
        var w = new MigrationStreamWriter(output, leaveOpen: true);
        Write(w, block, passes, rng, memory, isZero, expected).GetAwaiter().GetResult();
        return (output.ToArray(), expected);
    }

    private static async Task Write(MigrationStreamWriter w, RamBlock block, List<(long Page, Change Change)[]> passes, Random rng,
        byte[][] memory, bool[] isZero, List<(long, long, long, long)> expected)
    {
        await w.WriteHeaderAsync();
        byte[] machine = Encoding.ASCII.GetBytes("pc-i440fx-7.2");
        var config = new byte[5 + machine.Length];
        config[0] = 0x07;
        BinaryPrimitives.WriteUInt32BigEndian(config.AsSpan(1), (uint)machine.Length);
        machine.CopyTo(config, 5);
        await w.WriteRawAsync(config);
        await w.WriteSectionStartAsync(RamSection, "ram", 0, 4);
        await w.WriteMemSizeAsync(Pages * PageSize, [block]);
        await w.WriteEosAsync();
        await w.WriteFooterAsync(RamSection);

        var first = true;
        foreach (var pass in passes)
        {
            long raw = 0, xbzrle = 0, zero = 0, unchanged = 0;
            await w.WriteSectionPartAsync(RamSection);
            foreach (var (page, change) in pass)
            {
                var known = memory[page] is not null || isZero[page];
                var offset = page * PageSize;
                switch (change)
                {
                    case Change.Zero:
                        await w.WriteZeroAsync(block, offset, continueFlag: !first);
                        memory[page] = null!;
                        isZero[page] = true;
                        zero++;
                        break;
                    case Change.Unchanged:
                        await w.WritePageAsync(block, offset, Current(memory, isZero, page), continueFlag: !first);
                        unchanged++;
                        break;
                    case Change.Small:
                        var next = Current(memory, isZero, page);
                        next[rng.Next(PageSize)] ^= 0x5a;
                        memory[page] = next;
                        isZero[page] = false;
                        await w.WritePageAsync(block, offset, next, continueFlag: !first);
                        if (known)
                        {
                            xbzrle++;
                        }
                        else
                        {
                            raw++;
                        }

                        break;
                    default:
                        var whole = new byte[PageSize];
                        rng.NextBytes(whole);
                        memory[page] = whole;
                        isZero[page] = false;
                        await w.WritePageAsync(block, offset, whole, continueFlag: !first);
                        raw++; // a whole new random page: a first sight, or a delta that overflows
                        break;
                }

                first = false;
            }

            await w.WriteEosAsync();
            await w.WriteFooterAsync(RamSection);
            expected.Add((raw, xbzrle, zero, unchanged));
        }

        await w.WriteSectionEndAsync(RamSection);
        await w.WriteEosAsync();
        await w.WriteFooterAsync(RamSection);
        await w.WriteRawAsync(new byte[] { 0x00 }); // QEMU_VM_EOF
        await w.DisposeAsync();
    }

    private static byte[] Current(byte[][] memory, bool[] isZero, long page) =>
        isZero[page] || memory[page] is null ? new byte[PageSize] : (byte[])memory[page].Clone();
}
