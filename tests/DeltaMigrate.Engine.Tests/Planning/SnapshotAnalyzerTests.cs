using DeltaMigrate.Engine.Planning;

namespace DeltaMigrate.Engine.Tests.Planning;

public class SnapshotAnalyzerTests
{
    private const int Page = 4096;

    /// <summary>An image of 600 pages (more than one 256-page read): 200 zero, 200 random, 200 text-like.</summary>
    private static byte[] Image()
    {
        var image = new byte[600 * Page];
        var rng = new Random(7);
        rng.NextBytes(image.AsSpan(200 * Page, 200 * Page));
        var text = "the quick brown fox jumps over the lazy dog 0123456789\n"u8;
        for (int i = 400 * Page; i < image.Length; i++)
        {
            image[i] = text[i % text.Length];
        }

        return image;
    }

    private static void Scatter(byte[] image, int page, int bytes)
    {
        for (int k = 0; k < bytes; k++)
        {
            image[(page * Page) + (k * (Page / bytes))] ^= 0x5A;
        }
    }

    [Fact]
    public void CountsChangedPagesAndSizesTheirDeltas()
    {
        var older = Image();
        var newer = (byte[])older.Clone();
        for (int p = 210; p < 260; p++)
        {
            Scatter(newer, p, 16); // 16 bytes spread over the page
        }

        new Random(9).NextBytes(newer.AsSpan(300 * Page, 10 * Page)); // 10 pages rewritten whole

        var analysis = SnapshotAnalyzer.Analyze([older, newer]);

        Assert.Equal(600, analysis.Pages);
        Assert.Equal(200, analysis.ZeroPages);
        Assert.Equal(1.0 / 3, analysis.ZeroPageFraction, 6);
        Assert.Equal([60L], analysis.ChangedPages);
        Assert.Equal(60, analysis.HotSetPages);
        Assert.Null(analysis.RedirtyFraction);

        // 16 scattered bytes: 16 runs of 1 changed byte, each a zrun length (1-2 bytes), an nzrun length and the byte.
        Assert.Equal(50, analysis.DeltaPages);
        Assert.InRange(analysis.MeanDeltaBytes!.Value, 16 * 3, 16 * 4);
        Assert.Equal(10, analysis.DeltaOverflows);
        Assert.Equal(10.0 / 60, analysis.DeltaOverflowFraction!.Value, 6);

        // LZ4 over the non-zero pages of the newer image: random ones stay 4096, text shrinks a lot.
        Assert.Equal(400, analysis.Lz4SampledPages);
        Assert.InRange(analysis.MeanLz4Bytes!.Value, 2048, 2400);
        Assert.Equal(4096, analysis.MeanChangedLz4Bytes!.Value);
    }

    [Fact]
    public void IdenticalImagesShowNoChange()
    {
        var image = Image();
        var analysis = SnapshotAnalyzer.Analyze([image, (byte[])image.Clone()]);
        Assert.Equal([0L], analysis.ChangedPages);
        Assert.Equal(0, analysis.HotSetPages);
        Assert.Null(analysis.MeanDeltaBytes);
        Assert.Null(analysis.DeltaOverflowFraction);
    }

    [Fact]
    public void ThreeSnapshotsGiveTheHotSetAndReDirtyLocality()
    {
        var a = Image();
        var b = (byte[])a.Clone();
        var c = (byte[])a.Clone();
        for (int p = 200; p < 240; p++)
        {
            Scatter(b, p, 8); // interval 1: pages 200-239
        }

        Array.Copy(b, c, b.Length);
        for (int p = 220; p < 280; p++)
        {
            Scatter(c, p, 8); // interval 2: pages 220-279; 220-239 again
        }

        var analysis = SnapshotAnalyzer.Analyze([a, b, c]);

        Assert.Equal([40L, 60L], analysis.ChangedPages);
        Assert.Equal(80, analysis.HotSetPages);
        Assert.Equal(20, analysis.RedirtiedPages);
        Assert.Equal(0.5, analysis.RedirtyFraction!.Value, 6);
    }

    [Fact]
    public void AProfileScalesTheSampleToAllOfRam()
    {
        var a = Image();
        var b = (byte[])a.Clone();
        for (int p = 200; p < 300; p++)
        {
            Scatter(b, p, 16);
        }

        var analysis = SnapshotAnalyzer.Analyze([a, b]);
        // The 600 pages sampled are a quarter of RAM; 100 pages changed in half a second.
        var profile = MemorySampler.ToProfile(analysis, [TimeSpan.FromSeconds(0.5)], 2400L * Page, qemuDirtyPagesPerSecond: 512, TimeSpan.FromSeconds(1));

        Assert.Equal(800, profile.DirtyPagesPerSecond, 6);
        Assert.Equal(400, profile.HotSetPages);
        Assert.Equal(512, profile.QemuDirtyPagesPerSecond);
        Assert.Equal(1.0 / 3, profile.ZeroPageFraction, 6);
        Assert.InRange(profile.MeanDeltaBytes, 48, 64);
        Assert.Equal(0, profile.DeltaOverflowFraction);
    }

    [Fact]
    public void SnapshotsOfDifferentLengthsAreRefused() =>
        Assert.Throws<ArgumentException>(() => SnapshotAnalyzer.Analyze([new byte[2 * Page], new byte[3 * Page]]));
}
