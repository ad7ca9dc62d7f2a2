namespace DeltaMigrate.Benchmarks;

/// <summary>Deterministic page pairs for the XBZRLE benchmarks: old pages and new pages in two contiguous arrays.</summary>
public sealed class PagePairs
{
    public const int PageSize = 4096;

    /// <summary>"Cold": 32 MiB of pairs (16 MiB old + 16 MiB new), beyond a Zen 1 L3.</summary>
    public const int ColdBytes = 32 << 20;

    /// <summary>"Hot": 256 KiB of pairs, fits in L2.</summary>
    public const int HotBytes = 256 << 10;

    public PagePairs(string pattern, string size, int seed = 12345)
    {
        int bytes = size switch
        {
            "Cold" => ColdBytes,
            "Hot" => HotBytes,
            _ => throw new ArgumentOutOfRangeException(nameof(size)),
        };
        Count = bytes / (2 * PageSize);
        Old = new byte[Count * PageSize];
        New = new byte[Count * PageSize];
        var rng = new Random(seed);
        rng.NextBytes(Old);
        Old.CopyTo(New, 0);
        for (int p = 0; p < Count; p++)
        {
            Mutate(rng, pattern, New.AsSpan(p * PageSize, PageSize));
        }
    }

    public int Count { get; }

    public byte[] Old { get; }

    public byte[] New { get; }

    public static int PairsFor(string size) => (size == "Cold" ? ColdBytes : HotBytes) / (2 * PageSize);

    private static void Mutate(Random rng, string pattern, Span<byte> page)
    {
        switch (pattern)
        {
            case "Unchanged":
                break;
            case "OneWord":
                FlipWord(rng, page);
                break;
            case "EightWords":
                for (int w = 0; w < 8; w++)
                {
                    FlipWord(rng, page);
                }

                break;
            case "Run64":
                {
                    int at = rng.Next(PageSize - 64);
                    for (int k = at; k < at + 64; k++)
                    {
                        page[k] ^= (byte)(1 + rng.Next(255));
                    }

                    break;
                }

            case "Bytes5":
                FlipBytes(rng, page, 0.05);
                break;
            case "Bytes25":
                FlipBytes(rng, page, 0.25);
                break;
            case "Random":
                rng.NextBytes(page);
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(pattern));
        }
    }

    private static void FlipWord(Random rng, Span<byte> page)
    {
        int at = rng.Next(PageSize / 4) * 4;
        for (int k = at; k < at + 4; k++)
        {
            page[k] ^= (byte)(1 + rng.Next(255));
        }
    }

    private static void FlipBytes(Random rng, Span<byte> page, double density)
    {
        for (int k = 0; k < page.Length; k++)
        {
            if (rng.NextDouble() < density)
            {
                page[k] ^= (byte)(1 + rng.Next(255));
            }
        }
    }
}
