using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Engines;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using DeltaMigrate.Engine.Codec;

namespace DeltaMigrate.Benchmarks;

/// <summary>Encodes every page pair once per invocation; the GB/s column is new-page bytes per second.</summary>
[Config(typeof(XbzrleConfig))]
[SimpleJob(RunStrategy.Throughput, launchCount: 1, warmupCount: 2, iterationCount: 5)]
public class XbzrleEncodeBenchmarks
{
    private PagePairs _pairs = null!;
    private XbzrleEncoderKind _kind;
    private readonly byte[] _destination = new byte[PagePairs.PageSize];

    [Params("Unchanged", "OneWord", "EightWords", "Run64", "Bytes5", "Bytes25", "Random")]
    public string Pattern { get; set; } = "Unchanged";

    [Params("Cold", "Hot")]
    public string Size { get; set; } = "Hot";

    /// <summary>Reference = Xbzrle.EncodeScalar (QEMU's algorithm); the others are the run-merging encoder.</summary>
    [Params("Reference", "Vector256", "Vector512")]
    public string Encoder { get; set; } = "Vector256";

    [GlobalSetup]
    public void Setup()
    {
        _kind = Enum.Parse<XbzrleEncoderKind>(Encoder);
        if (!Xbzrle.IsSupported(_kind))
        {
            throw new NotSupportedException($"{_kind} is not hardware accelerated on this CPU.");
        }

        _pairs = new PagePairs(Pattern, Size);
    }

    [Benchmark]
    public long Encode()
    {
        XbzrleEncoderKind kind = _kind;
        byte[] oldPages = _pairs.Old;
        byte[] newPages = _pairs.New;
        long total = 0;
        for (int p = 0; p < _pairs.Count; p++)
        {
            int offset = p * PagePairs.PageSize;
            total += Xbzrle.Encode(
                oldPages.AsSpan(offset, PagePairs.PageSize), newPages.AsSpan(offset, PagePairs.PageSize), _destination, kind);
        }

        return total;
    }
}

internal sealed class XbzrleConfig : ManualConfig
{
    public XbzrleConfig() => AddColumn(new GigabytesPerSecondColumn());
}

/// <summary>GB/s of new-page input: pairs * 4096 / mean.</summary>
internal sealed class GigabytesPerSecondColumn : IColumn
{
    public string Id => "GBps";

    public string ColumnName => "GB/s";

    public bool AlwaysShow => true;

    public ColumnCategory Category => ColumnCategory.Custom;

    public int PriorityInCategory => 0;

    public bool IsNumeric => true;

    public UnitType UnitType => UnitType.Dimensionless;

    public string Legend => "New-page bytes per second (1e9), from the mean: pairs * 4096 / mean";

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase)
    {
        BenchmarkReport? report = summary[benchmarkCase];
        if (report?.ResultStatistics is not { } stats)
        {
            return "-";
        }

        string size = benchmarkCase.Parameters["Size"]?.ToString() ?? "Hot";
        double bytes = (double)PagePairs.PairsFor(size) * PagePairs.PageSize;
        return (bytes / stats.Mean).ToString("0.00", System.Globalization.CultureInfo.InvariantCulture); // bytes per ns = GB/s
    }

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style) => GetValue(summary, benchmarkCase);

    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;

    public bool IsAvailable(Summary summary) => true;
}
