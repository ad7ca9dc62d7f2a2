using DeltaMigrate.Engine.Streams;
using Xunit.Abstractions;

namespace DeltaMigrate.Engine.Tests.Streams;

public sealed class MigrationStreamTests(ITestOutputHelper output)
{
    private static readonly TimeSpan ParseTimeout = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task Qemu72_Capture_ParsesAndRoundTrips() => await ParseAndRoundTripAsync(await StreamCapture.Plain72Async(), expectXbzrle: false);

    [Fact]
    public async Task Qemu10_Capture_ParsesAndRoundTrips() => await ParseAndRoundTripAsync(await StreamCapture.Plain10Async(), expectXbzrle: false);

    [Fact]
    public async Task Qemu72Xbzrle_Capture_ParsesAndRoundTrips() => await ParseAndRoundTripAsync(await StreamCapture.Xbzrle72Async(), expectXbzrle: true);

    [Fact]
    public async Task Qemu10NativeMachine_Capture_HasSwitchoverCommand()
    {
        byte[] data = await StreamCapture.Native10Async();
        await ParseAndRoundTripAsync(data, expectXbzrle: false);
        var reader = new MigrationStreamReader(new MemoryStream(data));
        var kinds = new List<MigrationRecordKind>();
        ushort command = 0;
        while (await reader.ReadAsync())
        {
            if (reader.Current.Kind is not (MigrationRecordKind.Page or MigrationRecordKind.Zero or MigrationRecordKind.Tail))
            {
                kinds.Add(reader.Current.Kind);
            }

            if (reader.Current.Kind == MigrationRecordKind.Command)
            {
                command = reader.Current.Command;
            }
        }

        Assert.Equal(11, command);
        int at = kinds.IndexOf(MigrationRecordKind.Command);
        Assert.Equal(MigrationRecordKind.Footer, kinds[at - 1]);
        Assert.Equal(MigrationRecordKind.SectionEnd, kinds[at + 1]);
    }

    [Fact]
    public async Task RandomCorruption_ThrowsFormatErrorOrParses_NeverHangs()
    {
        byte[] data = await StreamCapture.Plain72Async();
        var starts = new List<long>();
        var reader = new MigrationStreamReader(new MemoryStream(data));
        long before = 0;
        while (await reader.ReadAsync())
        {
            if (reader.Current.Kind != MigrationRecordKind.Tail)
            {
                starts.Add(before);
            }

            before = reader.Position;
        }

        var rng = new Random(1234);
        byte[] copy = new byte[data.Length];
        int failures = 0;
        for (int i = 0; i < 40; i++)
        {
            data.CopyTo(copy, 0);
            long at = starts[rng.Next(starts.Count)] + rng.Next(12);
            copy[at] ^= (byte)(1 << rng.Next(8));
            try
            {
                await ParseAsync(copy).WaitAsync(ParseTimeout);
            }
            catch (StreamFormatException)
            {
                failures++;
            }
        }

        Assert.True(failures > 0);
    }

    [Fact]
    public async Task TruncatedCapture_Throws()
    {
        byte[] data = await StreamCapture.Plain72Async();
        var counts = await ParseAsync(data);
        foreach (int cut in new[] { 3, 9, 20, 5000, data.Length / 2, data.Length - counts.TailBytes - 1 })
        {
            var ex = await Assert.ThrowsAsync<StreamFormatException>(() => ParseAsync(data.AsMemory(0, cut).ToArray()).WaitAsync(ParseTimeout));
            Assert.Contains("truncated", ex.Message, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task FlippedSectionType_Throws()
    {
        byte[] data = (byte[])(await StreamCapture.Plain72Async()).Clone();
        long partAt = await FindFirstAsync(data, MigrationRecordKind.SectionPart);
        data[partAt] ^= 0x40;
        var ex = await Assert.ThrowsAsync<StreamFormatException>(() => ParseAsync(data).WaitAsync(ParseTimeout));
        Assert.Equal(partAt, ex.Offset);
        Assert.Contains("section type", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task LiveSectionOtherThanRam_IsRefused()
    {
        using var ms = new MemoryStream();
        await using (var w = new MigrationStreamWriter(ms))
        {
            await w.WriteHeaderAsync();
            await w.WriteSectionStartAsync(1, "block", 0, 1);
        }

        var ex = await Assert.ThrowsAsync<StreamFormatException>(() => ParseAsync(ms.ToArray()).WaitAsync(ParseTimeout));
        Assert.Contains("live section 'block' is not supported", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Synthetic_ContinueAcrossSections_RoundTrips()
    {
        var block = new RamBlock("pc.ram", 0x10000);
        var other = new RamBlock("vga.vram", 0x10000);
        byte[] page = new byte[4096];
        page[7] = 9;
        using var ms = new MemoryStream();
        await using (var w = new MigrationStreamWriter(ms))
        {
            await w.WriteHeaderAsync();
            await w.WriteSectionStartAsync(2, "ram", 0, 4);
            await w.WriteMemSizeAsync(0x20000, [block, other]);
            await w.WritePageAsync(block, 0x1000, page);
            await w.WriteEosAsync();
            await w.WriteFooterAsync(2);
            await w.WriteSectionPartAsync(2);
            await w.WriteZeroAsync(block, 0x2000, 0, continueFlag: true);
            await w.WriteXbzrleAsync(other, 0x3000, new byte[] { 0x07, 0x01, 0x05 });
            await w.WriteEosAsync();
            await w.WriteFooterAsync(2);
            await w.WriteCommandAsync(11, ReadOnlyMemory<byte>.Empty);
            await w.WriteSectionEndAsync(2);
            await w.WriteEosAsync();
            await w.WriteFooterAsync(2);
            await w.WriteRawAsync(new byte[] { 0x00 });
        }

        byte[] original = ms.ToArray();
        var counts = await ParseAsync(original);
        Assert.Equal(1, counts.Pages);
        Assert.Equal(1, counts.Zeros);
        Assert.Equal(1, counts.Xbzrle);
        Assert.Equal(1, counts.Continues);
        Assert.Equal(1, counts.Commands);
        Assert.Equal(3, counts.Eos);
        Assert.Equal(1, counts.TailBytes);
        Assert.Equal(original, await RoundTripAsync(original));
    }

    private async Task ParseAndRoundTripAsync(byte[] data, bool expectXbzrle)
    {
        var c = await ParseAsync(data).WaitAsync(ParseTimeout);
        output.WriteLine($"{data.Length} bytes: blocks {c.Blocks}, pages {c.Pages}, zeros {c.Zeros}, xbzrle {c.Xbzrle}, parts {c.Parts}, continues {c.Continues}, commands {c.Commands}, tail {c.TailBytes}");
        Assert.Equal(1, c.MemSize);
        Assert.True(c.Blocks >= 3, $"blocks {c.Blocks}");
        Assert.True(c.Pages > 1000, $"pages {c.Pages}");
        Assert.True(c.Zeros > 1000, $"zeros {c.Zeros}");
        Assert.True(c.Parts >= 2, $"parts {c.Parts}");
        Assert.Equal(c.Parts + 2, c.Eos);
        Assert.Equal(c.Parts + 2, c.Footers);
        Assert.True(c.Continues > 0);
        Assert.True(c.TailBytes > 1000, $"tail {c.TailBytes}");
        if (expectXbzrle)
        {
            Assert.True(c.Xbzrle > 0, "no XBZRLE records");
        }
        else
        {
            Assert.Equal(0, c.Xbzrle);
        }

        byte[] written = await RoundTripAsync(data).WaitAsync(ParseTimeout);
        Assert.Equal(data.Length, written.Length);
        Assert.True(data.AsSpan().SequenceEqual(written), "round trip differs");
    }

    private static async Task<byte[]> RoundTripAsync(byte[] data)
    {
        // A tiny read chunk size exercises the buffer refills.
        var reader = new MigrationStreamReader(new TrickleStream(data, 1000));
        using var ms = new MemoryStream();
        await using (var w = new MigrationStreamWriter(ms))
        {
            while (await reader.ReadAsync())
            {
                await w.WriteAsync(reader.Current);
            }
        }

        return ms.ToArray();
    }

    private static async Task<long> FindFirstAsync(byte[] data, MigrationRecordKind kind)
    {
        var reader = new MigrationStreamReader(new MemoryStream(data));
        long before = 0;
        while (await reader.ReadAsync())
        {
            if (reader.Current.Kind == kind)
            {
                return before;
            }

            before = reader.Position;
        }

        throw new InvalidOperationException($"no {kind}");
    }

    private static async Task<Counts> ParseAsync(byte[] data)
    {
        var c = new Counts();
        var reader = new MigrationStreamReader(new MemoryStream(data));
        while (await reader.ReadAsync())
        {
            var r = reader.Current;
            switch (r.Kind)
            {
                case MigrationRecordKind.MemSize: c.MemSize++; c.Blocks = r.Blocks!.Count; break;
                case MigrationRecordKind.Page: c.Pages++; break;
                case MigrationRecordKind.Zero: c.Zeros++; break;
                case MigrationRecordKind.Xbzrle: c.Xbzrle++; break;
                case MigrationRecordKind.Eos: c.Eos++; break;
                case MigrationRecordKind.SectionPart: c.Parts++; break;
                case MigrationRecordKind.Footer: c.Footers++; break;
                case MigrationRecordKind.Command: c.Commands++; break;
                case MigrationRecordKind.Tail: c.TailBytes += r.Data.Length; break;
            }

            if (r.Continue)
            {
                c.Continues++;
            }
        }

        return c;
    }

    private sealed class Counts
    {
        public int MemSize { get; set; }

        public int Blocks { get; set; }

        public int Pages { get; set; }

        public int Zeros { get; set; }

        public int Xbzrle { get; set; }

        public int Eos { get; set; }

        public int Parts { get; set; }

        public int Footers { get; set; }

        public int Commands { get; set; }

        public int Continues { get; set; }

        public int TailBytes { get; set; }
    }

    /// <summary>Returns at most <c>chunk</c> bytes per read.</summary>
    private sealed class TrickleStream(byte[] data, int chunk) : MemoryStream(data, writable: false)
    {
        public override int Read(byte[] buffer, int offset, int count) => base.Read(buffer, offset, Math.Min(count, chunk));

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) =>
            base.ReadAsync(buffer[..Math.Min(buffer.Length, chunk)], cancellationToken);
    }
}
