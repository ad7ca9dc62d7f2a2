using System.Text;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Engines;
using K4os.Compression.LZ4;

namespace DeltaMigrate.Benchmarks;

/// <summary>
/// LZ4 (K4os, <see cref="LZ4Level.L00_FAST"/>) on independent 4 KiB pages, as the tunnel and the snapshot analysis use it.
/// Mean is per page (OperationsPerInvoke); the GB/s column is uncompressed input bytes per second for both directions.
/// </summary>
[Config(typeof(PerPageConfig))]
[SimpleJob(RunStrategy.Throughput, launchCount: 1, warmupCount: 2, iterationCount: 5)]
public class Lz4PageBenchmarks
{
    /// <summary>256 pages = 1 MiB of input, so input, output and LZ4's hash table stay in L2/L3.</summary>
    public const int Pages = 256;

    private byte[] _input = [];
    private byte[] _packed = [];
    private int[] _packedLength = [];
    private readonly byte[] _output = new byte[LZ4Codec.MaximumOutputSize(PagePairs.PageSize)];
    private readonly byte[] _decoded = new byte[PagePairs.PageSize];

    /// <summary>Random: incompressible bytes. Text: the guest's fill=text generator (tests/guest/guest.c), about 3x.</summary>
    [Params("Random", "Text")]
    public string Content { get; set; } = "Random";

    /// <summary>Compressed bytes / input bytes over the page set (printed to the log by GlobalSetup).</summary>
    public double Ratio { get; private set; }

    [GlobalSetup]
    public void Setup()
    {
        _input = Content switch
        {
            "Random" => RandomPages(Pages, 4242),
            "Text" => TextPages.Generate(Pages * PagePairs.PageSize, 1),
            _ => throw new ArgumentOutOfRangeException(nameof(Content)),
        };
        int max = LZ4Codec.MaximumOutputSize(PagePairs.PageSize);
        _packed = new byte[Pages * max];
        _packedLength = new int[Pages];
        long total = 0;
        for (int p = 0; p < Pages; p++)
        {
            _packedLength[p] = LZ4Codec.Encode(_input.AsSpan(p * PagePairs.PageSize, PagePairs.PageSize), _packed.AsSpan(p * max, max), LZ4Level.L00_FAST);
            total += _packedLength[p];
            int n = LZ4Codec.Decode(_packed.AsSpan(p * max, _packedLength[p]), _decoded);
            if (n != PagePairs.PageSize || !_decoded.AsSpan().SequenceEqual(_input.AsSpan(p * PagePairs.PageSize, PagePairs.PageSize)))
            {
                throw new InvalidOperationException("LZ4 round trip failed");
            }
        }

        Ratio = (double)total / _input.Length;
        Console.WriteLine($"// {Content}: LZ4 output / input = {Ratio:0.000} ({(double)_input.Length / total:0.00}x)");
    }

    [Benchmark(OperationsPerInvoke = Pages)]
    public long Encode()
    {
        byte[] input = _input;
        long total = 0;
        for (int p = 0; p < Pages; p++)
        {
            total += LZ4Codec.Encode(input.AsSpan(p * PagePairs.PageSize, PagePairs.PageSize), _output, LZ4Level.L00_FAST);
        }

        return total;
    }

    [Benchmark(OperationsPerInvoke = Pages)]
    public long Decode()
    {
        int max = LZ4Codec.MaximumOutputSize(PagePairs.PageSize);
        long total = 0;
        for (int p = 0; p < Pages; p++)
        {
            total += LZ4Codec.Decode(_packed.AsSpan(p * max, _packedLength[p]), _decoded);
        }

        return total;
    }

    internal static byte[] RandomPages(int pages, int seed)
    {
        var bytes = new byte[pages * PagePairs.PageSize];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }
}

/// <summary>The guest's fill=text content (tests/guest/guest.c fill_text): 1/8 numbers, 1/2 stock phrases, 3/8 words.</summary>
internal static class TextPages
{
    private static readonly string[] Words =
    [
        "the", "migration", "page", "memory", "guest", "host", "dirty", "bitmap",
        "of", "and", "to", "in", "is", "that", "for", "with", "as", "on", "copy",
        "delta", "block", "transfer", "network", "state", "device", "vcpu", "round",
        "converge", "compress", "buffer", "queue", "stream", "socket", "kernel",
        "a", "be", "this", "from", "by", "at", "not", "are", "or", "it", "was",
        "data", "time", "value", "table", "index", "record", "system", "user",
        "file", "server", "client", "request", "response", "error", "status",
        "config", "update", "version", "checksum",
    ];

    private static readonly string[] Phrases =
    [
        "the guest dirtied a page", "memory transfer round", "network socket buffer",
        "converge the migration", "update the dirty bitmap", "checksum error in block",
        "send the page to the host", "compress the stream", "device state record",
        "the kernel queue is full", "client request and server response",
        "version of the config file",
    ];

    /// <summary><paramref name="length"/> bytes of text; the same xorshift32 generator shape as the guest's rnd().</summary>
    public static byte[] Generate(int length, uint seed)
    {
        var output = new byte[length];
        uint state = seed == 0 ? 1u : seed;
        uint Next()
        {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            return state;
        }

        int i = 0;
        while (i < length)
        {
            uint r = Next();
            uint k = r & 15;
            if (k < 2)
            {
                for (uint d = 1 + ((r >> 4) % 6); d-- > 0 && i < length;)
                {
                    output[i++] = (byte)('0' + (Next() % 10));
                }
            }
            else
            {
                string s = k >= 10 ? Words[(r >> 4) % (uint)Words.Length] : Phrases[(r >> 4) % (uint)Phrases.Length];
                i += Encoding.ASCII.GetBytes(s.AsSpan(0, Math.Min(s.Length, length - i)), output.AsSpan(i));
            }

            if (i < length)
            {
                output[i++] = (byte)(((r >> 16) % 10 == 0) ? '\n' : ' ');
            }
        }

        return output;
    }
}
