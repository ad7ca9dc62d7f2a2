using System.Diagnostics;
using System.Globalization;
using K4os.Compression.LZ4;

namespace DeltaMigrate.Benchmarks;

/// <summary>
/// <c>--codecs FILE...</c>: the wire codecs on real memory (a pmemsave of a guest, or any dump). All-zero pages
/// are dropped (QEMU sends those as ZERO records, never through the codec); the remaining pages, in their
/// order, are cut into tunnel frames (<c>--frame KiB</c>, default 64, the migration's frame size) and each
/// frame is compressed on its own, one thread, as the tunnel does. Best of <c>--runs</c> (default 5) passes.
/// Ratio = input / output over all frames; GB/s = input bytes per second.
/// </summary>
internal static class CodecComparison
{
    private sealed record Codec(string Name, Func<byte[], int, int, byte[], int> Encode, Func<byte[], int, byte[], int, int> Decode);

    public static void Run(string[] args)
    {
        int frameKiB = 64;
        int runs = 5;
        var files = new List<string>();
        for (int i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--frame": frameKiB = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--runs": runs = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                default: files.Add(args[i]); break;
            }
        }

        Console.WriteLine($"CPU: {CpuModel()}, {Environment.ProcessorCount} logical, .NET {Environment.Version}; frames of {frameKiB} KiB, best of {runs}");
        Console.WriteLine("| memory | codec | ratio | compress GB/s | decompress GB/s |");
        Console.WriteLine("|---|---|--:|--:|--:|");
        foreach (string file in files)
        {
            byte[] data = NonZeroPages(File.ReadAllBytes(file), out int pages);
            foreach (Codec codec in Codecs())
            {
                Measure(Path.GetFileName(file) + $" ({pages} pages)", data, frameKiB * 1024, runs, codec);
            }
        }
    }

    private static IEnumerable<Codec> Codecs()
    {
        yield return new Codec("LZ4 fast", (s, o, n, d) => LZ4Codec.Encode(s, o, n, d, 0, d.Length, LZ4Level.L00_FAST), (s, n, d, raw) => LZ4Codec.Decode(s, 0, n, d, 0, raw));
        foreach (int level in new[] { -5, -1, 1, 3, 6 })
        {
            var c = new ZstdSharp.Compressor(level);
            var dz = new ZstdSharp.Decompressor();
            yield return new Codec($"ZstdSharp {level}", (s, o, n, d) => c.Wrap(s.AsSpan(o, n), d), (s, n, d, raw) => dz.Unwrap(s.AsSpan(0, n), d.AsSpan(0, raw)));
        }

        foreach (int level in new[] { -5, -1, 1, 3, 6 })
        {
            var c = new ZstdNet.Compressor(new ZstdNet.CompressionOptions(level));
            var dz = new ZstdNet.Decompressor();
            yield return new Codec($"ZstdNet {level}", (s, o, n, d) => c.Wrap(s.AsSpan(o, n), d), (s, n, d, raw) => dz.Unwrap(s.AsSpan(0, n), d.AsSpan(0, raw)));
        }
    }

    private static void Measure(string label, byte[] data, int frame, int runs, Codec codec)
    {
        int frames = (data.Length + frame - 1) / frame;
        var packed = new byte[frames][];
        var packedLength = new int[frames];
        var scratch = new byte[frame];
        for (int f = 0; f < frames; f++)
        {
            packed[f] = new byte[frame * 2 + 1024];
        }

        double bestEncode = double.MaxValue, bestDecode = double.MaxValue;
        long outBytes = 0;
        for (int run = 0; run <= runs; run++) // run 0 warms up (JIT, tables)
        {
            var sw = Stopwatch.StartNew();
            outBytes = 0;
            for (int f = 0; f < frames; f++)
            {
                int n = Math.Min(frame, data.Length - (f * frame));
                packedLength[f] = codec.Encode(data, f * frame, n, packed[f]);
                outBytes += packedLength[f];
            }

            double encode = sw.Elapsed.TotalSeconds;
            sw.Restart();
            for (int f = 0; f < frames; f++)
            {
                int n = Math.Min(frame, data.Length - (f * frame));
                if (codec.Decode(packed[f], packedLength[f], scratch, n) != n || (run == 0 && !scratch.AsSpan(0, n).SequenceEqual(data.AsSpan(f * frame, n))))
                {
                    throw new InvalidOperationException($"{codec.Name} did not round-trip frame {f}");
                }
            }

            if (run > 0)
            {
                bestEncode = Math.Min(bestEncode, encode);
                bestDecode = Math.Min(bestDecode, sw.Elapsed.TotalSeconds);
            }
        }

        string F(double v) => v.ToString("0.00", CultureInfo.InvariantCulture);
        Console.WriteLine($"| {label} | {codec.Name} | {F((double)data.Length / outBytes)} | {F(data.Length / bestEncode / 1e9)} | {F(data.Length / bestDecode / 1e9)} |");
    }

    private static byte[] NonZeroPages(byte[] ram, out int pages)
    {
        const int Page = 4096;
        using var kept = new MemoryStream();
        pages = 0;
        for (int offset = 0; offset + Page <= ram.Length; offset += Page)
        {
            var page = ram.AsSpan(offset, Page);
            if (page.IndexOfAnyExcept((byte)0) >= 0)
            {
                kept.Write(page);
                pages++;
            }
        }

        return kept.ToArray();
    }

    private static string CpuModel() =>
        File.Exists("/proc/cpuinfo") ? File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':', 2)[1].Trim() ?? "?" : "?";
}
