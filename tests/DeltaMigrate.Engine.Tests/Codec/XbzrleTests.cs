using DeltaMigrate.Engine.Codec;

namespace DeltaMigrate.Engine.Tests.Codec;

public class XbzrleTests
{
    private const int PageSize = 4096;

    public static TheoryData<string> Kinds => XbzrleReference.SupportedKinds();

    private static (byte[] Old, byte[] New) WorkedVector()
    {
        var oldPage = new byte[PageSize];
        var newPage = new byte[PageSize];
        byte[] oldTail = [0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11, 0x12, 0x13, 0x68, 0x00, 0x00, 0x6b, 0x00, 0x6d];
        byte[] newTail = [0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x68, 0x00, 0x00, 0x67, 0x00, 0x69];
        oldTail.CopyTo(oldPage, 1001);
        newTail.CopyTo(newPage, 1001);
        return (oldPage, newPage);
    }

    private static readonly byte[] WorkedEncoding =
    [
        0xe9, 0x07, 0x0f, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
        0x03, 0x01, 0x67, 0x01, 0x01, 0x69,
    ];

    [Fact]
    public void WorkedVector_ScalarEncoderMatchesQemuBytes()
    {
        var (oldPage, newPage) = WorkedVector();
        var dst = new byte[PageSize];
        int n = Xbzrle.EncodeScalar(oldPage, newPage, dst);
        Assert.Equal(24, n);
        Assert.Equal(WorkedEncoding, dst[..n]);
        Assert.Equal(WorkedEncoding, XbzrleReference.EncodeMaximal(oldPage, newPage));
    }

    [Fact]
    public void WorkedVector_DecodesQemuBytes()
    {
        var (oldPage, newPage) = WorkedVector();
        Assert.Equal(1001 + 21, Xbzrle.Decode(WorkedEncoding, oldPage));
        Assert.Equal(newPage, oldPage);
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void WorkedVector_EveryEncoderRoundTrips(string kind)
    {
        var (oldPage, newPage) = WorkedVector();
        var dst = new byte[PageSize];
        int n = Xbzrle.Encode(oldPage, newPage, dst, XbzrleReference.Parse(kind));
        Assert.InRange(n, 1, 24);
        Assert.True(Xbzrle.Decode(dst.AsSpan(0, n), oldPage) > 0);
        Assert.Equal(newPage, oldPage);
    }

    [Fact]
    public void PublicEncode_UsesBestKindAndRoundTrips()
    {
        var (oldPage, newPage) = WorkedVector();
        var dst = new byte[PageSize];
        int n = Xbzrle.Encode(oldPage, newPage, dst);
        Assert.Equal(n, Xbzrle.Encode(oldPage, newPage, new byte[PageSize], Xbzrle.BestKind));
        Assert.True(Xbzrle.Decode(dst.AsSpan(0, n), oldPage) > 0);
        Assert.Equal(newPage, oldPage);
        Assert.True(Xbzrle.IsSupported(Xbzrle.BestKind));
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void LastByteChanged_EncodesAsZrun4095AndOneByte(string kind)
    {
        var oldPage = new byte[PageSize];
        new Random(1).NextBytes(oldPage);
        var newPage = (byte[])oldPage.Clone();
        newPage[^1] ^= 0x5a;
        var dst = new byte[PageSize];
        int n = Xbzrle.Encode(oldPage, newPage, dst, XbzrleReference.Parse(kind));
        Assert.Equal(new byte[] { 0xff, 0x1f, 0x01, newPage[^1] }, dst[..n]);
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void FirstByteChanged_StartsWithZeroLengthZrun(string kind)
    {
        var oldPage = new byte[PageSize];
        var newPage = new byte[PageSize];
        newPage[0] = 0x42;
        var dst = new byte[PageSize];
        int n = Xbzrle.Encode(oldPage, newPage, dst, XbzrleReference.Parse(kind));
        Assert.Equal(new byte[] { 0x00, 0x01, 0x42 }, dst[..n]);
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void EveryOtherByteChanged_Overflows(string kind)
    {
        foreach (int first in new[] { 0, 1 })
        {
            var oldPage = new byte[PageSize];
            var newPage = new byte[PageSize];
            for (int i = first; i < PageSize; i += 2)
            {
                newPage[i] = 0xAA;
            }

            Assert.Equal(Xbzrle.Overflow, Xbzrle.Encode(oldPage, newPage, new byte[PageSize], XbzrleReference.Parse(kind)));
        }
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void RandomPage_Overflows(string kind)
    {
        var rng = new Random(7);
        var oldPage = new byte[PageSize];
        var newPage = new byte[PageSize];
        rng.NextBytes(oldPage);
        rng.NextBytes(newPage);
        Assert.Equal(Xbzrle.Overflow, Xbzrle.Encode(oldPage, newPage, new byte[PageSize], XbzrleReference.Parse(kind)));
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void IdenticalPages_EncodeToNothing(string kind)
    {
        var rng = new Random(3);
        foreach (int len in new[] { 0, 1, 7, 63, 64, 65, 200, PageSize, Xbzrle.MaxPageLength })
        {
            var page = new byte[len];
            rng.NextBytes(page);
            Assert.Equal(0, Xbzrle.Encode(page, (byte[])page.Clone(), new byte[len], XbzrleReference.Parse(kind)));
            Assert.Equal(0, Xbzrle.Encode(page, page, Span<byte>.Empty, XbzrleReference.Parse(kind)));
        }
    }

    [Fact]
    public void Length_RoundTripsForEvery14BitValue()
    {
        var buffer = new byte[2];
        for (int value = 0; value <= Xbzrle.MaxRunLength; value++)
        {
            int written = Xbzrle.WriteLength(buffer, value);
            Assert.Equal(value < 0x80 ? 1 : 2, written);
            if (written == 2)
            {
                Assert.Equal(0, buffer[1] & 0x80);
                Assert.NotEqual(0, buffer[0] & 0x80);
            }

            Assert.Equal(written, Xbzrle.ReadLength(buffer.AsSpan(0, written), out int decoded));
            Assert.Equal(value, decoded);
        }

        Assert.Throws<ArgumentOutOfRangeException>(() => Xbzrle.WriteLength(buffer, Xbzrle.MaxRunLength + 1));
        Assert.Equal(-1, Xbzrle.ReadLength([0x81, 0x80], out _));
        Assert.Equal(-1, Xbzrle.ReadLength([0x81], out _));
    }

    public static TheoryData<string, byte[]> MalformedInputs => new()
    {
        { "one byte where a zrun starts", [0x05] },
        { "one byte where an nzrun starts", [0x05, 0x01] },
        { "nothing where an nzrun starts", [0x85, 0x01] },
        { "zero zrun after the start", [0x00, 0x01, 0xAA, 0x00, 0x01, 0xBB] },
        { "zero zrun after the start, two-byte form", [0x00, 0x01, 0xAA, 0x80, 0x00, 0x01, 0xBB] },
        { "zero nzrun", [0x05, 0x00, 0xAA] },
        { "zero nzrun, two-byte form", [0x05, 0x80, 0x00, 0xAA] },
        { "zrun length with a third ULEB byte", [0x81, 0x80, 0x01, 0x01, 0xAA] },
        { "nzrun length with a third ULEB byte", [0x01, 0x81, 0x80, 0x01, 0xAA] },
        { "zrun past the page", [0xff, 0x7f, 0x01, 0xAA] },
        { "zrun to the page end then an nzrun", [0x80, 0x20, 0x01, 0xAA] },
        { "nzrun past the page", [0xff, 0x1f, 0x02, 0xAA, 0xBB] },
        { "nzrun past the input", [0x00, 0x05, 0x01, 0x02, 0x03] },
        { "valid run then one trailing byte", [0x00, 0x01, 0xAA, 0x05] },
    };

    [Theory]
    [MemberData(nameof(MalformedInputs))]
    public void Decode_RejectsMalformedInput(string why, byte[] encoded)
    {
        Assert.False(string.IsNullOrEmpty(why));
        Assert.Equal(-1, Xbzrle.Decode(encoded, new byte[PageSize]));
    }

    [Fact]
    public void Decode_AcceptsWhatQemuAccepts()
    {
        var page = new byte[PageSize];
        Assert.Equal(0, Xbzrle.Decode([], page));
        Assert.Equal(1, Xbzrle.Decode([0x00, 0x01, 0xAA], page)); // zero zrun at the very start
        Assert.Equal(0xAA, page[0]);
        Assert.Equal(6, Xbzrle.Decode([0x85, 0x00, 0x01, 0xBB], page)); // non-minimal ULEB128 (QEMU accepts it)
        Assert.Equal(0xBB, page[5]);
        Assert.Equal(PageSize, Xbzrle.Decode([0xff, 0x1f, 0x01, 0xCC], page)); // last byte
        Assert.Equal(0xCC, page[^1]);
        Assert.Equal(0xAA, page[0]); // zruns keep what is there
    }

    [Fact]
    public void Decode_WholePageNzrun()
    {
        var rng = new Random(11);
        var newPage = new byte[PageSize];
        rng.NextBytes(newPage);
        var encoded = new byte[3 + PageSize];
        encoded[0] = 0x00;
        Xbzrle.WriteLength(encoded.AsSpan(1), PageSize);
        newPage.CopyTo(encoded, 3);
        var page = new byte[PageSize];
        Assert.Equal(PageSize, Xbzrle.Decode(encoded, page));
        Assert.Equal(newPage, page);
        Assert.Equal(-1, Xbzrle.Decode(encoded, new byte[PageSize - 1]));
    }

    [Fact]
    public void EncodeScalar_ReturnsExactFitAndOverflowsByOne()
    {
        var (oldPage, newPage) = WorkedVector();
        Assert.Equal(24, Xbzrle.EncodeScalar(oldPage, newPage, new byte[24]));
        for (int dlen = 0; dlen < 24; dlen++)
        {
            Assert.Equal(Xbzrle.Overflow, Xbzrle.EncodeScalar(oldPage, newPage, new byte[dlen]));
        }
    }

    [Fact]
    public void Encode_RejectsBadPageLengths()
    {
        Assert.Throws<ArgumentException>(() => Xbzrle.Encode(new byte[10], new byte[11], new byte[16]));
        Assert.Throws<ArgumentException>(() => Xbzrle.EncodeScalar(new byte[10], new byte[11], new byte[16]));
        var big = new byte[Xbzrle.MaxPageLength + 1];
        Assert.Throws<ArgumentException>(() => Xbzrle.Encode(big, big, new byte[16]));
    }

    [Fact]
    public void SupportedKinds_IncludeEveryAcceleratedWidth()
    {
        var kinds = XbzrleReference.SupportedKindNames().ToHashSet();
        Assert.Contains("Reference", kinds);
        Assert.Contains("Scalar", kinds);
        Assert.Equal(System.Runtime.Intrinsics.Vector128.IsHardwareAccelerated, kinds.Contains("Vector128"));
        Assert.Equal(System.Runtime.Intrinsics.Vector256.IsHardwareAccelerated, kinds.Contains("Vector256"));
        Assert.Equal(System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated, kinds.Contains("Vector512"));
    }
}
