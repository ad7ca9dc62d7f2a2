using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Engines;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using DeltaMigrate.Engine.Streams;

namespace DeltaMigrate.Benchmarks;

/// <summary>
/// <see cref="MigrationStreamReader"/> parsing a whole synthetic QEMU 7.2 RAM stream held in memory (one invocation =
/// one pass over the stream, every record read, page bytes not touched by the caller). The GB/s column is stream bytes
/// per second.
/// </summary>
/// <remarks>
/// The stream is PipelineBenchmark's shape scaled down (its builder is private and makes 640 MiB): a 64 MiB VM; pass 1
/// sends 32 MiB of random pages in runs of 64 alternating with 64 ZERO records; then 2 passes re-send a 2,048-page hot
/// set (random content: the reader does not look at it); each pass a PART section with EOS and footer; then END, EOS, footer, 64 KiB of
/// opaque device state and EOF. About 48 MiB, so it does not fit in the L3 cache.
/// </remarks>
[Config(typeof(ParseConfig))]
[SimpleJob(RunStrategy.Throughput, launchCount: 1, warmupCount: 2, iterationCount: 5)]
public class ParseBenchmarks
{
    private const int PageSize = 4096;
    private const long VmBytes = 64L << 20;
    private const int DataPages = 8_192;
    private const int HotPages = 2_048;
    private const int Passes = 2;
    private const int RunPages = 64;
    private const uint RamSection = 2;

    private static readonly Lazy<byte[]> Built = new(BuildStream);

    private byte[] _stream = [];

    /// <summary>Length of the synthetic stream in bytes (deterministic; also used by the GB/s column in the host process).</summary>
    public static long StreamLength => Built.Value.Length;

    [GlobalSetup]
    public void Setup()
    {
        _stream = Built.Value;
        long records = ParseAsync().GetAwaiter().GetResult();
        long expected = DataPages + ((VmBytes / PageSize) - DataPages) + ((long)Passes * HotPages);
        Console.WriteLine($"// stream {_stream.Length:N0} B, {records:N0} records ({expected:N0} PAGE + ZERO)");
    }

    [Benchmark]
    public Task<long> Parse() => ParseAsync();

    private async Task<long> ParseAsync()
    {
        var reader = new MigrationStreamReader(new MemoryStream(_stream, writable: false));
        long records = 0;
        while (await reader.ReadAsync())
        {
            records++;
        }

        return records;
    }

    private static byte[] BuildStream() => BuildStreamAsync().AsTask().GetAwaiter().GetResult();

    private static async ValueTask<byte[]> BuildStreamAsync()
    {
        var rng = new Random(20_240_601);
        var block = new RamBlock("pc.ram", VmBytes);
        long vmPages = VmBytes / PageSize;
        var dataPages = new List<long>(DataPages);
        var output = new MemoryStream(capacity: 64 << 20);
        await using (var w = new MigrationStreamWriter(output, leaveOpen: true, bufferSize: 1 << 20))
        {
            await w.WriteHeaderAsync();
            byte[] machine = Encoding.ASCII.GetBytes("pc-q35-7.2");
            var config = new byte[5 + machine.Length];
            config[0] = 0x07;
            BinaryPrimitives.WriteUInt32BigEndian(config.AsSpan(1), (uint)machine.Length);
            machine.CopyTo(config, 5);
            await w.WriteRawAsync(config);

            await w.WriteSectionStartAsync(RamSection, "ram", 0, 4);
            await w.WriteMemSizeAsync(VmBytes, [block]);
            await w.WriteEosAsync();
            await w.WriteFooterAsync(RamSection);

            await w.WriteSectionPartAsync(RamSection);
            var page = new byte[PageSize];
            for (long p = 0; p < vmPages; p++)
            {
                if ((p / RunPages) % 2 == 0 && dataPages.Count < DataPages)
                {
                    rng.NextBytes(page);
                    dataPages.Add(p);
                    await w.WritePageAsync(block, p * PageSize, page, continueFlag: p > 0);
                }
                else
                {
                    await w.WriteZeroAsync(block, p * PageSize, 0, continueFlag: p > 0);
                }
            }

            await w.WriteEosAsync();
            await w.WriteFooterAsync(RamSection);

            long[] hot = [.. dataPages.OrderBy(_ => rng.Next()).Take(HotPages).Order()];
            for (int pass = 0; pass < Passes; pass++)
            {
                await w.WriteSectionPartAsync(RamSection);
                for (int h = 0; h < HotPages; h++)
                {
                    rng.NextBytes(page); // content is irrelevant to the reader

                    await w.WritePageAsync(block, hot[h] * PageSize, page, continueFlag: h > 0);
                }

                await w.WriteEosAsync();
                await w.WriteFooterAsync(RamSection);
            }

            await SyntheticStream.WriteCompletionAsync(w, RamSection, rng);
        }

        return output.ToArray();
    }
}

internal sealed class ParseConfig : ManualConfig
{
    public ParseConfig() => AddColumn(new BytesPerSecondColumn("Stream bytes per second (1e9), from the mean: stream length / mean", _ => ParseBenchmarks.StreamLength));
}

internal sealed class PerPageConfig : ManualConfig
{
    public PerPageConfig() => AddColumn(new BytesPerSecondColumn("Input bytes per second (1e9), from the per-page mean: 4096 / mean", _ => PagePairs.PageSize));
}

/// <summary>GB/s from the mean (per operation) and the bytes one operation processes.</summary>
internal sealed class BytesPerSecondColumn(string legend, Func<BenchmarkCase, double> bytesPerOperation) : IColumn
{
    public string Id => "BytesPerSecond";

    public string ColumnName => "GB/s";

    public bool AlwaysShow => true;

    public ColumnCategory Category => ColumnCategory.Custom;

    public int PriorityInCategory => 0;

    public bool IsNumeric => true;

    public UnitType UnitType => UnitType.Dimensionless;

    public string Legend => legend;

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase)
    {
        BenchmarkReport? report = summary[benchmarkCase];
        if (report?.ResultStatistics is not { } stats)
        {
            return "-";
        }

        return (bytesPerOperation(benchmarkCase) / stats.Mean).ToString("0.00", CultureInfo.InvariantCulture); // bytes per ns = GB/s
    }

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style) => GetValue(summary, benchmarkCase);

    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;

    public bool IsAvailable(Summary summary) => true;
}
