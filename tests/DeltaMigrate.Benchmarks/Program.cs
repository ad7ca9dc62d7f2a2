using System.Diagnostics;
using System.Globalization;
using BenchmarkDotNet.Running;
using DeltaMigrate.Benchmarks;
using DeltaMigrate.Engine.Codec;

if (args.Length > 0 && args[0] == "--cache-study")
{
    // Page-cache replacement policies in a closed-loop pre-copy simulation (see PageCacheStudy).
    PageCacheStudy.Run(args.Skip(1).ToArray());
    return;
}

if (args.Length > 0 && args[0] == "--pipeline")
{
    // The source engine's pipeline (parse, cache, encode, LZ4, frame) replaying an in-memory stream (see PipelineBenchmark).
    PipelineBenchmark.Run(args.Skip(1).ToArray());
    return;
}

if (args.Length > 0 && args[0] == "--codecs")
{
    // The wire codecs (LZ4, zstd managed and native) on memory dumps (see CodecComparison).
    CodecComparison.Run(args.Skip(1).ToArray());
    return;
}

if (args.Length > 0 && args[0] == "--quick")
{
    // A quick stopwatch sweep (seconds, not minutes) for iterating; BenchmarkDotNet below is the real measurement.
    QuickSweep(args.Skip(1).ToArray());
    return;
}

BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);

static void QuickSweep(string[] filter)
{
    string[] patterns = ["Unchanged", "OneWord", "EightWords", "Run64", "Bytes5", "Bytes25", "Random"];
    XbzrleEncoderKind[] kinds = [XbzrleEncoderKind.Reference, XbzrleEncoderKind.Scalar, XbzrleEncoderKind.Vector128, XbzrleEncoderKind.Vector256, XbzrleEncoderKind.Vector512];
    var destination = new byte[PagePairs.PageSize];
    Console.WriteLine($"best: {Xbzrle.BestKind}");

    // Warm up every encoder past tiered compilation before timing anything.
    var warm = new PagePairs("Bytes5", "Hot");
    var warmWatch = Stopwatch.StartNew();
    while (warmWatch.ElapsedMilliseconds < 1500)
    {
        foreach (XbzrleEncoderKind kind in kinds.Where(Xbzrle.IsSupported))
        {
            for (int p = 0; p < warm.Count; p++)
            {
                int offset = p * PagePairs.PageSize;
                Xbzrle.Encode(warm.Old.AsSpan(offset, PagePairs.PageSize), warm.New.AsSpan(offset, PagePairs.PageSize), destination, kind);
                Xbzrle.Encode(warm.Old.AsSpan(offset, PagePairs.PageSize), warm.Old.AsSpan(offset, PagePairs.PageSize), destination, kind);
                Xbzrle.Decode(destination.AsSpan(0, 10), new byte[PagePairs.PageSize]);
            }
        }

        Thread.Sleep(50);
    }

    foreach (string size in new[] { "Cold", "Hot" })
    {
        foreach (string pattern in patterns.Where(p => filter.Length == 0 || filter.Contains(p)))
        {
            var pairs = new PagePairs(pattern, size);
            var line = $"{size,-5} {pattern,-11}";
            foreach (XbzrleEncoderKind kind in kinds.Where(Xbzrle.IsSupported))
            {
                long result = 0;
                double best = double.MaxValue;
                for (int round = 0; round < (size == "Hot" ? 60 : 25); round++)
                {
                    var sw = Stopwatch.StartNew();
                    int reps = size == "Hot" ? 8 : 1;
                    for (int r = 0; r < reps; r++)
                    {
                        for (int p = 0; p < pairs.Count; p++)
                        {
                            int offset = p * PagePairs.PageSize;
                            result += Xbzrle.Encode(pairs.Old.AsSpan(offset, PagePairs.PageSize), pairs.New.AsSpan(offset, PagePairs.PageSize), destination, kind);
                        }
                    }

                    best = Math.Min(best, sw.Elapsed.TotalSeconds / reps);
                }

                double gbps = pairs.Count * (double)PagePairs.PageSize / best / 1e9;
                line += $" {kind}={gbps.ToString("0.00", CultureInfo.InvariantCulture)}";
                if (result == 42)
                {
                    Console.Write(string.Empty);
                }
            }

            if (pattern is "EightWords" or "Bytes5")
            {
                var decode = new XbzrleDecodeBenchmarks { Pattern = pattern, Size = size };
                decode.Setup();
                double bestDecode = double.MaxValue;
                for (int round = 0; round < (size == "Hot" ? 60 : 25); round++)
                {
                    var sw = Stopwatch.StartNew();
                    int reps = size == "Hot" ? 8 : 1;
                    for (int r = 0; r < reps; r++)
                    {
                        decode.Decode();
                    }

                    bestDecode = Math.Min(bestDecode, sw.Elapsed.TotalSeconds / reps);
                }

                line += $" Decode={(pairs.Count * (double)PagePairs.PageSize / bestDecode / 1e9).ToString("0.00", CultureInfo.InvariantCulture)}";
            }

            Console.WriteLine(line);
        }
    }
}
