using DeltaMigrate.Engine.Codec;
using DeltaMigrate.Engine.Streams;
using Xunit.Abstractions;

namespace DeltaMigrate.Engine.Tests.Streams;

/// <summary>
/// End to end: a captured 7.2 stream whose re-sent pages are replaced by XBZRLE deltas loads into a fresh QEMU
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
        output.WriteLine($"original {original.Length} bytes, rewritten {rewritten.Length} bytes: {stats}");
        Assert.True(stats.Encoded > 0, "no re-sent page was encoded");
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

    private static async Task<(byte[] Stream, byte[] PcRam, RewriteStats Stats)> RewriteAsync(byte[] data)
    {
        var stats = new RewriteStats();
        var reader = new MigrationStreamReader(new MemoryStream(data));
        var memory = new Dictionary<RamBlock, (byte[] Bytes, bool[] Seen)>();
        byte[] delta = new byte[4096];
        using var ms = new MemoryStream();
        await using (var w = new MigrationStreamWriter(ms) { AutoContinue = true })
        {
            while (await reader.ReadAsync())
            {
                var r = reader.Current;
                if (r.Kind == MigrationRecordKind.MemSize)
                {
                    foreach (var blk in r.Blocks!)
                    {
                        memory[blk] = (new byte[blk.UsedLength], new bool[blk.UsedLength / 4096]);
                    }
                }

                if (r.Block is not null)
                {
                    var (bytes, seen) = memory[r.Block];
                    var page = bytes.AsSpan((int)r.Offset, 4096);
                    int index = (int)(r.Offset / 4096);
                    switch (r.Kind)
                    {
                        case MigrationRecordKind.Zero:
                            page.Fill(r.Fill);
                            break;
                        case MigrationRecordKind.Xbzrle:
                            Assert.True(Xbzrle.Decode(r.Data.Span, page) >= 0);
                            break;
                        case MigrationRecordKind.Page when seen[index]:
                            int len = Xbzrle.Encode(page, r.Data.Span, delta);
                            r.Data.Span.CopyTo(page);
                            if (len == 0)
                            {
                                stats.Dropped++;
                                continue;
                            }

                            if (len > 0)
                            {
                                stats.Encoded++;
                                await w.WriteXbzrleAsync(r.Block, r.Offset, delta.AsSpan(0, len));
                                continue;
                            }

                            stats.Overflow++;
                            break;
                        case MigrationRecordKind.Page:
                            r.Data.Span.CopyTo(page);
                            break;
                    }

                    seen[index] = true;
                }

                await w.WriteAsync(r);
            }
        }

        var pcRam = memory.Single(kv => kv.Key.IdStr == "pc.ram").Value.Bytes;
        return (ms.ToArray(), pcRam, stats);
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

    private sealed class RewriteStats
    {
        public int Encoded { get; set; }

        public int Dropped { get; set; }

        public int Overflow { get; set; }

        public override string ToString() => $"encoded {Encoded}, dropped {Dropped}, overflow {Overflow}";
    }
}
