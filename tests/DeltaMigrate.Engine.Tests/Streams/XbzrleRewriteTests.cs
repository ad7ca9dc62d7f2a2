using DeltaMigrate.Engine.Codec;
using DeltaMigrate.Engine.Delta;
using DeltaMigrate.Engine.Streams;
using Xunit.Abstractions;

namespace DeltaMigrate.Engine.Tests.Streams;

/// <summary>
/// End to end: a captured 7.2 stream rewritten by <see cref="StreamTranscoder"/> (re-sent pages as XBZRLE deltas) loads into a fresh QEMU
/// (xbzrle off) and gives the same RAM as the original stream.
/// </summary>
public sealed class XbzrleRewriteTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task RewrittenWithXbzrle_LoadsToSameRam(bool qemu10Destination)
    {
        byte[] original = await StreamCapture.Plain72Async();
        var (rewritten, pcRam, stats) = await RewriteAsync(original);
        output.WriteLine($"original {original.Length} bytes, rewritten {rewritten.Length} bytes: xbzrle {stats.XbzrlePages}, dropped {stats.UnchangedPages}, overflow {stats.Overflows}");
        Assert.True(stats.XbzrlePages > 0, "no re-sent page was encoded");
        Assert.True(rewritten.Length < original.Length);
        Assert.Equal(rewritten, await RoundTripAsync(rewritten));

        string qemu = qemu10Destination ? StreamCapture.Qemu10Binary : StreamCapture.Qemu72;
        string dir = Directory.CreateTempSubdirectory("dm-rewrite-").FullName;
        try
        {
            string a = Path.Combine(dir, "original.bin");
            string b = Path.Combine(dir, "rewritten.bin");
            await File.WriteAllBytesAsync(a, original);
            await File.WriteAllBytesAsync(b, rewritten);
            var ramA = LoadAndDumpAsync(qemu, dir, "a", a);
            var ramB = LoadAndDumpAsync(qemu, dir, "b", b);
            byte[] memA = await ramA;
            byte[] memB = await ramB;
            Assert.Equal(64 << 20, memA.Length);
            Assert.True(memA.AsSpan().SequenceEqual(memB), "RAM differs between the original and the rewritten stream");

            // The destination holds what the stream says pc.ram holds (outside the legacy VGA/BIOS window).
            Assert.True(memA.AsSpan(0, 0xa0000).SequenceEqual(pcRam.AsSpan(0, 0xa0000)), "low RAM differs from the stream's content");
            Assert.True(memA.AsSpan(0x100000).SequenceEqual(pcRam.AsSpan(0x100000)), "RAM above 1 MiB differs from the stream's content");
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static async Task<byte[]> RoundTripAsync(byte[] data)
    {
        var reader = new MigrationStreamReader(new MemoryStream(data));
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

    /// <summary>The stream as <see cref="StreamTranscoder"/> rewrites it, and pc.ram as the original stream leaves it.</summary>
    private static async Task<(byte[] Stream, byte[] PcRam, DeltaCounters Stats)> RewriteAsync(byte[] data)
    {
        var transcoder = new StreamTranscoder(64 << 20);
        using var ms = new MemoryStream();
        await using (var w = new MigrationStreamWriter(ms))
        {
            await transcoder.RunAsync(new MigrationStreamReader(new MemoryStream(data)), w, CancellationToken.None);
        }

        return (ms.ToArray(), await PcRamAsync(data), transcoder.Counters);
    }

    private static async Task<byte[]> PcRamAsync(byte[] data)
    {
        var reader = new MigrationStreamReader(new MemoryStream(data));
        byte[]? ram = null;
        while (await reader.ReadAsync())
        {
            var r = reader.Current;
            if (r.Kind == MigrationRecordKind.MemSize)
            {
                ram = new byte[r.Blocks!.Single(b => b.IdStr == "pc.ram").UsedLength];
            }

            if (r.Block?.IdStr != "pc.ram")
            {
                continue;
            }

            var page = ram.AsSpan((int)r.Offset, reader.PageSize);
            switch (r.Kind)
            {
                case MigrationRecordKind.Zero:
                    page.Fill(r.Fill);
                    break;
                case MigrationRecordKind.Page:
                    r.Data.Span.CopyTo(page);
                    break;
                case MigrationRecordKind.Xbzrle:
                    Assert.True(Xbzrle.Decode(r.Data.Span, page) >= 0);
                    break;
            }
        }

        return ram ?? throw new InvalidOperationException("the stream has no MEM_SIZE");
    }

    private static async Task<byte[]> LoadAndDumpAsync(string qemu, string dir, string name, string streamFile)
    {
        string socket = Path.Combine(dir, name + ".sock");
        string dump = Path.Combine(dir, name + ".ram");
        var args = StreamCapture.BaseArgs(qemu);
        args.AddRange(["-kernel", StreamCapture.GuestElf, "-append", "ws=16 hot=4 rate=2000", "-serial", "null", "-S", "-incoming", "defer", "-qmp", $"unix:{socket},server=on,wait=off"]);
        var stderr = new System.Text.StringBuilder();
        var p = StreamCapture.Launch(qemu, args, stderr);
        try
        {
            await using var qmp = await StreamCapture.ConnectAsync(socket, p);
            await qmp.MigrateIncomingAsync($"exec:cat {streamFile}");
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(20);
            while (true)
            {
                var info = await qmp.QueryMigrateAsync();
                if (info.Status == "completed")
                {
                    break;
                }

                Assert.False(info.IsFinished, $"incoming migration {info.Status}: {info.ErrorDescription}");
                Assert.True(DateTime.UtcNow < deadline, "incoming migration did not complete");
                await Task.Delay(50);
            }

            await qmp.PmemSaveAsync(0, 64 << 20, dump);
            return await File.ReadAllBytesAsync(dump);
        }
        catch (Exception ex) when (ex is not Xunit.Sdk.XunitException)
        {
            await Task.Delay(200);
            throw new InvalidOperationException($"destination for {name} failed: {stderr}", ex);
        }
        finally
        {
            StreamCapture.Kill(p);
        }
    }
}
