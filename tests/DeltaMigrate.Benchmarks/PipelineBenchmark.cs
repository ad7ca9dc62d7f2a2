using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text;
using DeltaMigrate.Engine.Codec;
using DeltaMigrate.Engine.Delta;
using DeltaMigrate.Engine.Streams;
using DeltaMigrate.Engine.Transport;
using DeltaMigrate.Engine.Tunnel;

namespace DeltaMigrate.Benchmarks;

/// <summary>
/// The source engine's pipeline (parse, cache, XBZRLE encode, LZ4, frame) replaying a synthetic QEMU 7.2 stream held
/// in memory, so only the engine's own cost is measured (no QEMU, no unix socket).
/// Run: dotnet run -c Release --project tests/DeltaMigrate.Benchmarks -- --pipeline [--runs N] [--cache-mib M]
/// </summary>
/// <remarks>
/// Stream: a 512 MiB VM; pass 1 sends 256 MiB of random pages (in 256 KiB runs) and ZERO records for the rest; then
/// 5 passes re-send the same 16,384-page (64 MiB) hot set in increasing page order, each page with 16 scattered bytes
/// changed since its last send. Every pass is its own PART section with EOS and footer; then END, EOS, footer, 64 KiB
/// of opaque device state and EOF. Stages: the reader alone; reader + <see cref="StreamTranscoder"/> into
/// <see cref="Stream.Null"/>; the whole source pipeline into a <see cref="TunnelSender"/> over loopback TCP to a
/// <see cref="TunnelListener"/> (in a second process, whose CPU time is reported separately) writing to
/// <see cref="Stream.Null"/>; and, for comparison, the raw stream copied into the tunnel (the engine's Lz4 mode).
/// </remarks>
public static class PipelineBenchmark
{
    private const int PageSize = 4096;
    private const long VmBytes = 512L << 20;
    private const int DataPages = 65_536;   // 256 MiB sent as PAGE in pass 1
    private const int HotPages = 16_384;    // 64 MiB re-sent in each later pass
    private const int Passes = 5;
    private const int ChangedBytes = 16;
    private const int RunPages = 64;        // pass 1 alternates 64 data pages and 64 zero pages
    private const uint RamSection = 2;

    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    private enum Stage
    {
        Reader,
        Transcoder,
        Pipeline,
        Lz4Only,
    }

    /// <summary>Entry point of --pipeline.</summary>
    public static void Run(string[] args) => RunAsync(args).GetAwaiter().GetResult();

    private static async Task RunAsync(string[] args)
    {
        if (args.Length == 2 && args[0] == "--receiver")
        {
            await ReceiverAsync(MigrationToken.Parse(args[1]));
            return;
        }

        int runs = IntArg(args, "--runs", 5);
        long cacheBytes = (long)IntArg(args, "--cache-mib", 256) << 20;

        var build = Stopwatch.StartNew();
        byte[] stream = await BuildStreamAsync();
        Print($"stream: {stream.Length:N0} bytes ({stream.Length / 1048576.0:0.0} MiB) built in {build.Elapsed.TotalSeconds:0.0} s");
        Print($"cache: {cacheBytes >> 20} MiB; runs per stage: {runs}; cores: {Environment.ProcessorCount}; {Xbzrle.BestKind} XBZRLE");
        await VerifyAsync(stream);
        var token = MigrationToken.Create();
        using var receiver = StartReceiver(token);

        // Warm-up: one pass of every stage, so tiered JIT has settled before anything is timed. Its working-set growth is
        // the only clean one: later runs reuse memory the GC kept from earlier ones.
        foreach (Stage stage in Enum.GetValues<Stage>())
        {
            var w = await MeasureAsync(stage, stream, cacheBytes, receiver, token);
            Print($"warm-up {Name(stage),-34} {w.GBps,6:0.00} GB/s, working set +{w.WorkingSetDelta / 1048576.0:0} MiB, GC heap +{w.HeapDelta / 1048576.0:0} MiB");
        }

        var results = new Dictionary<Stage, List<Result>>();
        for (int run = 0; run < runs; run++)
        {
            foreach (Stage stage in Enum.GetValues<Stage>())
            {
                var r = await MeasureAsync(stage, stream, cacheBytes, receiver, token);
                (results.TryGetValue(stage, out var list) ? list : results[stage] = []).Add(r);
                Print($"run {run + 1} {Name(stage),-34} {r.Seconds,6:0.000} s {r.GBps,6:0.00} GB/s cpu {r.CpuSeconds,6:0.000} s {r.GBpsPerCpu,6:0.00} GB/cpu-s (receiver cpu {r.ReceiverCpuSeconds:0.000} s) ws+{r.WorkingSetDelta >> 20,4} MiB heap+{r.HeapDelta >> 20,4} MiB alloc {r.Allocated >> 20,4} MiB {r.Detail}");
            }
        }

        receiver.StandardInput.Close();
        await receiver.WaitForExitAsync();

        Console.WriteLine();
        Print($"{runs} runs per stage; best / median. Stream {stream.Length / 1e9:0.000} GB; GB/s = stream bytes / wall time; per cpu-s = stream bytes / process CPU time.");
        Console.WriteLine();
        Console.WriteLine("| stage | wall GB/s best / median | CPU s best / median | GB per CPU-second best / median | receiver CPU s, median | peak working set over baseline, max | peak GC heap over baseline, max | allocated |");
        Console.WriteLine("|---|---|---|---|---|---|---|---|");
        foreach (var (stage, list) in results)
        {
            Print(
                $"| {Name(stage)} | {list.Max(r => r.GBps):0.00} / {Median(list.Select(r => r.GBps)):0.00} | {list.Min(r => r.CpuSeconds):0.00} / {Median(list.Select(r => r.CpuSeconds)):0.00} | {list.Max(r => r.GBpsPerCpu):0.00} / {Median(list.Select(r => r.GBpsPerCpu)):0.00} | {Median(list.Select(r => r.ReceiverCpuSeconds)):0.00} | {list.Max(r => r.WorkingSetDelta) / 1048576.0:0} MiB | {list.Max(r => r.HeapDelta) / 1048576.0:0} MiB | {list.Max(r => r.Allocated) / 1048576.0:0.0} MiB |");
        }

        Console.WriteLine();
        foreach (var (stage, list) in results)
        {
            Print($"{Name(stage)}: {list[0].Detail}");
        }

        // Splits for the tunnel: the frame seal of protocol version 1 (HMAC-SHA256 of every frame, on both ends) alone, on 256 KiB frames.
        var frame = new byte[256 * 1024];
        var key = new byte[32];
        var mac = new byte[32];
        var hmacTimes = new List<double>();
        for (int run = 0; run < Math.Max(runs, 3); run++)
        {
            var watch = Stopwatch.StartNew();
            for (int i = 0; i < 1024; i++)
            {
                System.Security.Cryptography.HMACSHA256.HashData(key, frame, mac);
            }

            hmacTimes.Add(1024.0 * frame.Length / watch.Elapsed.TotalSeconds / 1e9);
        }

        Print($"HMAC-SHA256 alone (256 KiB frames, 1 thread): best {hmacTimes.Max():0.00} GB/s, median {Median(hmacTimes):0.00} GB/s");

        // The frame seal since protocol version 2: AES-256-GCM encrypting in place, the 18-byte header as associated data
        // (one nonce over and over is fine here: a throwaway key, nothing leaves the process).
        using var aes = new System.Security.Cryptography.AesGcm(new byte[32], 16);
        var nonce = new byte[12];
        var header = new byte[18];
        var tag = new byte[16];
        var gcmTimes = new List<double>();
        for (int run = 0; run < Math.Max(runs, 3); run++)
        {
            var watch = Stopwatch.StartNew();
            for (int i = 0; i < 1024; i++)
            {
                aes.Encrypt(nonce, frame, frame, tag, header);
            }

            gcmTimes.Add(1024.0 * frame.Length / watch.Elapsed.TotalSeconds / 1e9);
        }

        Print($"AES-256-GCM alone (256 KiB frames, 1 thread): best {gcmTimes.Max():0.00} GB/s, median {Median(gcmTimes):0.00} GB/s");
    }

    private static string Name(Stage stage) => stage switch
    {
        Stage.Reader => "reader only",
        Stage.Transcoder => "reader + transcoder -> Stream.Null",
        Stage.Pipeline => "reader + transcoder + tunnel (LZ4)",
        _ => "raw stream -> tunnel (LZ4 mode)",
    };

    private sealed record Result(long StreamBytes, double Seconds, double CpuSeconds, double ReceiverCpuSeconds, long WorkingSetDelta, long HeapDelta, long Allocated, string Detail)
    {
        public double GBps => StreamBytes / Seconds / 1e9;

        public double GBpsPerCpu => StreamBytes / CpuSeconds / 1e9;
    }

    private static async Task<Result> MeasureAsync(Stage stage, byte[] stream, long cacheBytes, Process receiver, MigrationToken token)
    {
        GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: true);
        GC.WaitForPendingFinalizers();
        GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: true);

        // The tunnel is connected and authenticated before the clock starts (TunnelSource does that before QEMU connects).
        // The receiver is another process (its CPU is not the source's), writing to Stream.Null.
        TunnelSender? sender = null;
        if (stage is Stage.Pipeline or Stage.Lz4Only)
        {
            await receiver.StandardInput.WriteLineAsync("go");
            await receiver.StandardInput.FlushAsync();
            int port = int.Parse(await receiver.StandardOutput.ReadLineAsync() ?? throw new InvalidOperationException("the receiver exited"), Inv);
            sender = await TunnelSender.ConnectAsync("127.0.0.1", port, token, new TunnelOptions(), null, CancellationToken.None);
        }

        using var process = Process.GetCurrentProcess();
        process.Refresh();
        long baseWorkingSet = process.WorkingSet64;
        long baseHeap = GC.GetTotalMemory(false);
        long peakWorkingSet = baseWorkingSet;
        long peakHeap = baseHeap;
        using var stop = new ManualResetEventSlim();
        var sampler = new Thread(() =>
        {
            using var p = Process.GetCurrentProcess();
            do
            {
                p.Refresh();
                peakWorkingSet = Math.Max(peakWorkingSet, p.WorkingSet64);
                peakHeap = Math.Max(peakHeap, GC.GetTotalMemory(false));
            }
            while (!stop.Wait(10));
        })
        { IsBackground = true, Name = "memory sampler" };

        long allocatedBefore = GC.GetTotalAllocatedBytes(precise: true);
        TimeSpan cpuBefore = process.TotalProcessorTime;
        sampler.Start();
        var watch = Stopwatch.StartNew();
        string detail;
        var input = new MemoryStream(stream, writable: false);
        switch (stage)
        {
            case Stage.Reader:
                {
                    var reader = new MigrationStreamReader(input);
                    long records = 0;
                    while (await reader.ReadAsync())
                    {
                        records++;
                    }

                    detail = $"{records:N0} records";
                    break;
                }

            case Stage.Transcoder:
                {
                    var transcoder = new StreamTranscoder(cacheBytes);
                    await using var writer = new MigrationStreamWriter(Stream.Null, leaveOpen: true);
                    await transcoder.RunAsync(new MigrationStreamReader(input), writer, CancellationToken.None);
                    detail = Describe(transcoder.Counters, writer.BytesWritten, null);
                    break;
                }

            case Stage.Pipeline:
                {
                    var transcoder = new StreamTranscoder(cacheBytes);
                    await using (var toTunnel = new TunnelWriteStream(sender!))
                    {
                        await using var writer = new MigrationStreamWriter(toTunnel, leaveOpen: true);
                        await transcoder.RunAsync(new MigrationStreamReader(input), writer, CancellationToken.None);
                        await sender!.CompleteAsync(CancellationToken.None);
                        detail = Describe(transcoder.Counters, writer.BytesWritten, sender.Stats);
                    }

                    break;
                }

            default:
                {
                    // TunnelSource's Lz4 mode: the raw stream in 128 KiB reads, straight into the tunnel.
                    var buffer = new byte[128 * 1024];
                    int read;
                    while ((read = await input.ReadAsync(buffer)) > 0)
                    {
                        await sender!.WriteAsync(buffer.AsMemory(0, read), CancellationToken.None);
                    }

                    await sender!.CompleteAsync(CancellationToken.None);
                    detail = Describe(null, stream.Length, sender.Stats);
                    break;
                }
        }

        double seconds = watch.Elapsed.TotalSeconds;
        process.Refresh();
        TimeSpan cpu = process.TotalProcessorTime - cpuBefore;
        long allocated = GC.GetTotalAllocatedBytes(precise: true) - allocatedBefore;
        stop.Set();
        sampler.Join();
        peakWorkingSet = Math.Max(peakWorkingSet, process.WorkingSet64);
        if (sender is not null)
        {
            await sender.DisposeAsync();
        }

        double receiverCpu = 0;
        if (sender is not null)
        {
            // CompleteAsync returned: the receiver confirmed every byte; it reports its CPU time for the transfer.
            receiverCpu = double.Parse(await receiver.StandardOutput.ReadLineAsync() ?? throw new InvalidOperationException("the receiver exited"), Inv);
        }

        return new Result(stream.Length, seconds, cpu.TotalSeconds, receiverCpu, peakWorkingSet - baseWorkingSet, peakHeap - baseHeap, allocated, detail);
    }

    /// <summary>Starts this program as the tunnel's receiving end (<see cref="ReceiverAsync"/>).</summary>
    private static Process StartReceiver(MigrationToken token)
    {
        var start = new ProcessStartInfo(Environment.ProcessPath!) { RedirectStandardInput = true, RedirectStandardOutput = true, UseShellExecute = false };
        if (Path.GetFileNameWithoutExtension(Environment.ProcessPath) == "dotnet")
        {
            start.ArgumentList.Add(typeof(PipelineBenchmark).Assembly.Location);
        }

        foreach (string arg in new[] { "--pipeline", "--receiver", token.ToString() })
        {
            start.ArgumentList.Add(arg);
        }

        return Process.Start(start) ?? throw new InvalidOperationException("cannot start the receiver process");
    }

    /// <summary>The receiving process: per "go" line, one listener on a free loopback port (printed), one transfer to Stream.Null, then its CPU seconds.</summary>
    private static async Task ReceiverAsync(MigrationToken token)
    {
        using var process = Process.GetCurrentProcess();
        while (await Console.In.ReadLineAsync() == "go")
        {
            await using var listener = TunnelListener.Start(new IPEndPoint(IPAddress.Loopback, 0), token);
            Console.WriteLine(listener.LocalEndpoint.Port.ToString(Inv));
            process.Refresh();
            TimeSpan before = process.TotalProcessorTime;
            await listener.ReceiveAsync(_ => Task.FromResult(Stream.Null), CancellationToken.None);
            process.Refresh();
            Console.WriteLine((process.TotalProcessorTime - before).TotalSeconds.ToString("0.000", Inv));
        }
    }

    private static string Describe(DeltaCounters? c, long written, TunnelStats? tunnel)
    {
        var sb = new StringBuilder();
        if (c is not null)
        {
            sb.Append(Inv, $"raw {c.RawPages:N0} xbzrle {c.XbzrlePages:N0} ({c.XbzrleBytes:N0} B, {(c.XbzrlePages == 0 ? 0 : (double)c.XbzrleBytes / c.XbzrlePages):0.0} B/page) unchanged {c.UnchangedPages:N0} zero {c.ZeroPages:N0} overflow {c.Overflows:N0} hits {c.CacheHits:N0} misses {c.CacheMisses:N0} evictions {c.CacheEvictions:N0}; encode {c.EncodeTime.TotalMilliseconds:0} ms; ");
        }

        sb.Append(Inv, $"out {written:N0} B");
        if (tunnel is not null)
        {
            sb.Append(Inv, $"; wire {tunnel.WireBytes:N0} B ({tunnel.Frames:N0} frames, {tunnel.CompressedFrames:N0} LZ4), LZ4 {tunnel.CompressTime.TotalMilliseconds:0} ms");
        }

        return sb.ToString();
    }

    /// <summary>Builds the stream described in the remarks; deterministic (fixed seed).</summary>
    private static async Task<byte[]> BuildStreamAsync()
    {
        var rng = new Random(20_240_601);
        var block = new RamBlock("pc.ram", VmBytes);
        long vmPages = VmBytes / PageSize;

        // Which pages carry data in pass 1 (runs of RunPages), and the hot set among them.
        var dataPageList = new long[DataPages];
        for (int i = 0, p = 0; i < DataPages; p += 2 * RunPages)
        {
            for (int k = 0; k < RunPages && i < DataPages; k++)
            {
                dataPageList[i++] = p + k;
            }
        }

        var hotIndex = Enumerable.Range(0, DataPages).OrderBy(_ => rng.Next()).Take(HotPages).Order().ToArray();
        var hot = new byte[HotPages * PageSize]; // current content of the hot pages
        var hotSlot = new Dictionary<long, int>();
        for (int h = 0; h < HotPages; h++)
        {
            hotSlot[dataPageList[hotIndex[h]]] = h;
        }

        var output = new MemoryStream(capacity: 640 << 20);
        await using (var w = new MigrationStreamWriter(output, leaveOpen: true, bufferSize: 1 << 20))
        {
            await w.WriteHeaderAsync();
            byte[] machine = Encoding.ASCII.GetBytes("pc-q35-7.2");
            var config = new byte[5 + machine.Length];
            config[0] = 0x07;
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(config.AsSpan(1), (uint)machine.Length);
            machine.CopyTo(config, 5);
            await w.WriteRawAsync(config);

            // ram_save_setup: START, MEM_SIZE, EOS, footer.
            await w.WriteSectionStartAsync(RamSection, "ram", 0, 4);
            await w.WriteMemSizeAsync(VmBytes, [block]);
            await w.WriteEosAsync();
            await w.WriteFooterAsync(RamSection);

            // Pass 1: every page, data or zero.
            await w.WriteSectionPartAsync(RamSection);
            var page = new byte[PageSize];
            bool first = true;
            for (long p = 0; p < vmPages; p++)
            {
                if ((p / RunPages) % 2 == 0 && p / (2 * RunPages) * RunPages < DataPages)
                {
                    rng.NextBytes(page);
                    if (hotSlot.TryGetValue(p, out int h))
                    {
                        page.CopyTo(hot, h * PageSize);
                    }

                    await w.WritePageAsync(block, p * PageSize, page, continueFlag: !first);
                }
                else
                {
                    await w.WriteZeroAsync(block, p * PageSize, 0, continueFlag: !first);
                }

                first = false;
            }

            await w.WriteEosAsync();
            await w.WriteFooterAsync(RamSection);

            // Passes 2..6: the hot set, 16 scattered bytes changed per page since its last send.
            var hotPages = hotIndex.Select(i => dataPageList[i]).ToArray();
            for (int pass = 0; pass < Passes; pass++)
            {
                await w.WriteSectionPartAsync(RamSection);
                for (int h = 0; h < HotPages; h++)
                {
                    var content = hot.AsSpan(h * PageSize, PageSize);
                    for (int b = 0; b < ChangedBytes; b++)
                    {
                        content[rng.Next(PageSize)] ^= (byte)rng.Next(1, 256);
                    }

                    await w.WritePageAsync(block, hotPages[h] * PageSize, hot.AsMemory(h * PageSize, PageSize).Span, continueFlag: h > 0);
                }

                await w.WriteEosAsync();
                await w.WriteFooterAsync(RamSection);
            }

            await SyntheticStream.WriteCompletionAsync(w, RamSection, rng);
        }

        return output.ToArray();
    }

    /// <summary>Runs the stream through <see cref="MigrationStreamReader"/> once and checks what it found.</summary>
    private static async Task VerifyAsync(byte[] stream)
    {
        var reader = new MigrationStreamReader(new MemoryStream(stream, writable: false));
        var counts = new Dictionary<MigrationRecordKind, long>();
        long tailBytes = 0;
        while (await reader.ReadAsync())
        {
            var kind = reader.Current.Kind;
            counts[kind] = counts.GetValueOrDefault(kind) + 1;
            if (kind == MigrationRecordKind.Tail)
            {
                tailBytes += reader.Current.Data.Length;
            }
        }

        long expectedPages = DataPages + ((long)Passes * HotPages);
        long expectedZero = (VmBytes / PageSize) - DataPages;
        if (counts.GetValueOrDefault(MigrationRecordKind.Page) != expectedPages || counts.GetValueOrDefault(MigrationRecordKind.Zero) != expectedZero
            || counts.GetValueOrDefault(MigrationRecordKind.Eos) != Passes + 3 || reader.Position != stream.Length || tailBytes != 64 * 1024)
        {
            throw new InvalidOperationException("the synthetic stream did not parse as intended: " + string.Join(", ", counts.Select(kv => $"{kv.Key}={kv.Value}")));
        }

        Console.WriteLine("reader check: " + string.Join(", ", counts.Select(kv => string.Create(Inv, $"{kv.Key}={kv.Value:N0}"))) + string.Create(Inv, $", tail {tailBytes:N0} B"));
    }

    private static void Print(FormattableString line) => Console.WriteLine(line.ToString(Inv));

    private static int IntArg(string[] args, string name, int fallback)
    {
        int i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? int.Parse(args[i + 1], Inv) : fallback;
    }

    private static double Median(IEnumerable<double> values)
    {
        var sorted = values.Order().ToArray();
        return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[(sorted.Length / 2) - 1] + sorted[sorted.Length / 2]) / 2;
    }
}
