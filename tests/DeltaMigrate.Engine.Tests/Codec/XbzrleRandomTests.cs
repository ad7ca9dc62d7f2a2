using DeltaMigrate.Engine.Codec;

namespace DeltaMigrate.Engine.Tests.Codec;

public class XbzrleRandomTests
{
    private const int PageSize = 4096;

    public static TheoryData<string> Kinds => XbzrleReference.SupportedKinds();

    /// <summary>A page pair with a random change pattern: from one word to the whole page, sparse to dense.</summary>
    internal static (byte[] Old, byte[] New) RandomPair(Random rng, int len)
    {
        var oldPage = new byte[len];
        switch (rng.Next(3))
        {
            case 0:
                rng.NextBytes(oldPage);
                break;
            case 1:
                for (int i = 0; i < len; i++)
                {
                    oldPage[i] = (byte)rng.Next(4); // many accidental equal bytes
                }

                break;
            default:
                break; // zero page
        }

        var newPage = (byte[])oldPage.Clone();
        if (len == 0)
        {
            return (oldPage, newPage);
        }

        int pattern = rng.Next(8);
        switch (pattern)
        {
            case 0: // unchanged
                break;
            case 1: // one word
                {
                    int at = rng.Next(Math.Max(1, len - 3));
                    for (int k = at; k < Math.Min(len, at + 4); k++)
                    {
                        newPage[k] ^= (byte)(1 + rng.Next(255));
                    }

                    break;
                }

            case 2: // one contiguous range
                {
                    int start = rng.Next(len);
                    int count = rng.Next(1, len - start + 1);
                    for (int k = start; k < start + count; k++)
                    {
                        newPage[k] ^= (byte)(1 + rng.Next(255));
                    }

                    break;
                }

            case 3: // several ranges, each with its own density
                {
                    int ranges = rng.Next(1, 40);
                    for (int r = 0; r < ranges; r++)
                    {
                        int start = rng.Next(len);
                        int count = rng.Next(1, Math.Min(len - start, 300) + 1);
                        double density = rng.NextDouble();
                        for (int k = start; k < start + count; k++)
                        {
                            if (rng.NextDouble() < density)
                            {
                                newPage[k] ^= (byte)(1 + rng.Next(255));
                            }
                        }
                    }

                    break;
                }

            case 4: // scattered bytes at a page-wide density
                {
                    double density = Math.Pow(rng.NextDouble(), 3);
                    for (int k = 0; k < len; k++)
                    {
                        if (rng.NextDouble() < density)
                        {
                            newPage[k] ^= (byte)(1 + rng.Next(255));
                        }
                    }

                    break;
                }

            case 5: // short gaps of 1..4 equal bytes between changed bytes (exercises run merging)
                {
                    int k = rng.Next(len);
                    int end = Math.Min(len, k + rng.Next(1, 600));
                    while (k < end)
                    {
                        newPage[k] ^= (byte)(1 + rng.Next(255));
                        k += 1 + rng.Next(1, 5);
                    }

                    break;
                }

            case 6: // whole page replaced
                rng.NextBytes(newPage);
                break;
            default: // words here and there
                {
                    int words = rng.Next(1, 16);
                    for (int w = 0; w < words; w++)
                    {
                        int at = rng.Next(len);
                        newPage[at] ^= (byte)(1 + rng.Next(255));
                        if (at + 3 < len)
                        {
                            newPage[at + 3] ^= (byte)(1 + rng.Next(255));
                        }
                    }

                    break;
                }
        }

        return (oldPage, newPage);
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void RandomPairs_RoundTripAtPageSize(string kindName) => RoundTrips(kindName, seed: 1234, pairs: 3000, fixedLength: PageSize);

    [Theory]
    [MemberData(nameof(Kinds))]
    public void RandomPairs_RoundTripAtOddLengths(string kindName) => RoundTrips(kindName, seed: 99, pairs: 3000, fixedLength: -1);

    private static void RoundTrips(string kindName, int seed, int pairs, int fixedLength)
    {
        XbzrleEncoderKind kind = XbzrleReference.Parse(kindName);
        var rng = new Random(seed);
        int overflows = 0;
        int encoded = 0;
        for (int t = 0; t < pairs; t++)
        {
            int len = fixedLength >= 0 ? fixedLength : PickLength(rng);
            var (oldPage, newPage) = RandomPair(rng, len);
            byte[] maximal = XbzrleReference.EncodeMaximal(oldPage, newPage);

            // Page-size destination (what QEMU and the engine use), and sometimes a tighter one.
            int dlen = rng.Next(4) == 0 ? rng.Next(len + 1) : len;
            var dst = new byte[dlen];
            int n = Xbzrle.Encode(oldPage, newPage, dst, kind);

            if (kind == XbzrleEncoderKind.Reference)
            {
                // Maximal runs, byte for byte, whenever they fit.
                Assert.Equal(maximal.Length <= dlen ? maximal.Length : Xbzrle.Overflow, n);
            }

            if (n == Xbzrle.Overflow)
            {
                overflows++;

                // The merging encoder gives up only when maximal runs are near the budget (hopeless-page
                // sampling stops at about 15/16 of it, merging adds at most one length byte per 128 bytes).
                Assert.True(maximal.Length > dlen - (len / 128) - 2 || maximal.Length * 16 > dlen * 12,
                    $"{kind}: overflow at maximal length {maximal.Length}, budget {dlen}, pair {t}");
                continue;
            }

            Assert.InRange(n, 0, dlen);
            if (n == 0)
            {
                Assert.Equal(oldPage, newPage);
                continue;
            }

            encoded++;
            Assert.True(n <= maximal.Length + (len / 128) + 1, $"{kind}: {n} bytes vs maximal {maximal.Length}");
            var page = (byte[])oldPage.Clone();
            int end = Xbzrle.Decode(dst.AsSpan(0, n), page);
            Assert.True(end > 0 && end <= len, $"{kind}: decode returned {end} for pair {t}");
            Assert.Equal(newPage, page);
        }

        Assert.True(encoded > pairs / 4, $"only {encoded} of {pairs} pairs were encoded");
        Assert.True(overflows > 0, "no pair overflowed");
    }

    private static int PickLength(Random rng) => rng.Next(6) switch
    {
        0 => rng.Next(0, 8),
        1 => rng.Next(8, 130),
        2 => rng.Next(130, 1100),
        3 => 64 * rng.Next(1, 40),
        4 => Xbzrle.MaxPageLength - rng.Next(0, 200),
        _ => rng.Next(1100, 5000),
    };

    [Theory]
    [MemberData(nameof(Kinds))]
    public void Encode_NeverWritesOutsideTheDestination(string kindName)
    {
        XbzrleEncoderKind kind = XbzrleReference.Parse(kindName);
        var rng = new Random(42);
        const int Guard = 96;
        for (int t = 0; t < 1500; t++)
        {
            int len = t % 3 == 0 ? PageSize : rng.Next(0, 700);
            var (oldPage, newPage) = RandomPair(rng, len);
            int dlen = rng.Next(3) switch
            {
                0 => rng.Next(0, 40),
                1 => rng.Next(len + 1),
                _ => len,
            };
            var buffer = new byte[Guard + dlen + Guard];
            byte fill = (byte)rng.Next(256);
            buffer.AsSpan().Fill(fill);
            int n = Xbzrle.Encode(oldPage, newPage, buffer.AsSpan(Guard, dlen), kind);
            Assert.True(n >= -1 && n <= dlen);
            for (int k = 0; k < Guard; k++)
            {
                Assert.Equal(fill, buffer[k]);
                Assert.Equal(fill, buffer[Guard + dlen + k]);
            }

            if (n > 0)
            {
                var page = (byte[])oldPage.Clone();
                Assert.True(Xbzrle.Decode(buffer.AsSpan(Guard, n), page) > 0);
                Assert.Equal(newPage, page);
            }
        }
    }

    [Fact]
    public void Decode_NeverWritesOutsideThePageOrCrashesOnGarbage()
    {
        var rng = new Random(5);
        for (int t = 0; t < 20000; t++)
        {
            int len = rng.Next(0, 300);
            var encoded = new byte[rng.Next(0, 40)];
            rng.NextBytes(encoded);
            if (encoded.Length > 0 && rng.Next(2) == 0)
            {
                encoded[0] = (byte)rng.Next(0, 8);
            }

            var buffer = new byte[len + 64];
            int end = Xbzrle.Decode(encoded, buffer.AsSpan(32, len));
            Assert.True(end >= -1 && end <= len);
            for (int k = 0; k < 32; k++)
            {
                Assert.Equal(0, buffer[k]);
                Assert.Equal(0, buffer[32 + len + k]);
            }
        }
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void EncodersAgreeWithEachOtherOnDecodedResult(string kindName)
    {
        XbzrleEncoderKind kind = XbzrleReference.Parse(kindName);
        var rng = new Random(77);
        for (int t = 0; t < 500; t++)
        {
            var (oldPage, newPage) = RandomPair(rng, PageSize);
            var a = new byte[PageSize];
            var b = new byte[PageSize];
            int na = Xbzrle.Encode(oldPage, newPage, a, kind);
            int nb = Xbzrle.Encode(oldPage, newPage, b, XbzrleEncoderKind.Scalar);

            // Every merging encoder width produces exactly the same bytes.
            if (kind != XbzrleEncoderKind.Reference)
            {
                Assert.Equal(nb, na);
                if (na > 0)
                {
                    Assert.Equal(b.AsSpan(0, nb).ToArray(), a.AsSpan(0, na).ToArray());
                }
            }
        }
    }
}
