using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Engines;
using DeltaMigrate.Engine.Codec;

namespace DeltaMigrate.Benchmarks;

/// <summary>Applies precomputed deltas (one per page) into the destination's pages.</summary>
[Config(typeof(XbzrleConfig))]
[SimpleJob(RunStrategy.Throughput, launchCount: 1, warmupCount: 2, iterationCount: 5)]
public class XbzrleDecodeBenchmarks
{
    private byte[] _pages = null!;
    private byte[] _deltas = null!;
    private int[] _starts = null!;
    private int _count;

    [Params("EightWords", "Bytes5")]
    public string Pattern { get; set; } = "EightWords";

    [Params("Cold", "Hot")]
    public string Size { get; set; } = "Hot";

    [GlobalSetup]
    public void Setup()
    {
        var pairs = new PagePairs(Pattern, Size);
        _count = pairs.Count;
        _pages = (byte[])pairs.Old.Clone();
        _starts = new int[_count + 1];
        var deltas = new byte[_count * PagePairs.PageSize];
        int at = 0;
        for (int p = 0; p < _count; p++)
        {
            int offset = p * PagePairs.PageSize;
            int n = Xbzrle.Encode(
                pairs.Old.AsSpan(offset, PagePairs.PageSize), pairs.New.AsSpan(offset, PagePairs.PageSize), deltas.AsSpan(at, PagePairs.PageSize));
            if (n < 0)
            {
                throw new InvalidOperationException("benchmark page overflowed");
            }

            _starts[p] = at;
            at += n;
            _starts[p + 1] = at;
        }

        _deltas = deltas;
    }

    [Benchmark]
    public long Decode()
    {
        long total = 0;
        for (int p = 0; p < _count; p++)
        {
            total += Xbzrle.Decode(
                _deltas.AsSpan(_starts[p], _starts[p + 1] - _starts[p]), _pages.AsSpan(p * PagePairs.PageSize, PagePairs.PageSize));
        }

        return total;
    }
}
