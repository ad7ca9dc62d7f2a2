using System.Buffers.Binary;
using System.Xml.Linq;
using DeltaMigrate.Engine.Migration;
using DeltaMigrate.Reports;

namespace DeltaMigrate.Engine.Tests.Reports;

public class MigrationReportTests
{
    private static readonly byte[] PngSignature = [0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A];

    private static MigrationResult Result(string vm = "web-01", CompressionMode mode = CompressionMode.Delta, int rounds = 5) => new()
    {
        VMName = vm,
        Status = MigrationStatus.Completed,
        Mode = mode,
        Source = vm,
        Destination = "10.0.0.2:4444",
        TotalTime = TimeSpan.FromMilliseconds(12345),
        Downtime = TimeSpan.FromMilliseconds(87),
        SetupTime = TimeSpan.FromMilliseconds(20),
        MemorySize = 128L << 20,
        BytesTransferred = 50L << 20,
        StreamBytes = 140L << 20,
        DirtySyncCount = rounds,
        Converged = true,
        Compression = new CompressionStats { CacheHits = 12345, XbzrlePages = 6789, UnchangedPages = 1011, StreamBytes = 140L << 20, WireBytes = 50L << 20 },
        Rounds = Enumerable.Range(1, rounds).Select(i => new MigrationRound
        {
            Round = i,
            Elapsed = TimeSpan.FromSeconds(i * 2.0),
            Duration = TimeSpan.FromSeconds(2.0),
            Exact = true,
            StreamBytes = 30L << 20,
            SentBytes = 20L << 20,
            BytesRemaining = (128L << 20) >> i,
            DirtyPagesRate = 1000,
            ThroughputMbps = 100,
            WireBytes = 10L << 20,
            RawPages = 1000,
            XbzrlePages = 500,
            UnchangedPages = 100,
        }).ToArray(),
        Samples = Enumerable.Range(1, rounds * 10).Select(i => new MigrationSample
        {
            Elapsed = TimeSpan.FromSeconds(i * 0.2),
            Round = 1 + ((i - 1) / 10),
            BytesRemaining = (128L << 20) - (i * (1L << 20)),
            WireBytes = i * (1L << 20),
        }).ToArray(),
    };

    private static (int Width, int Height) PngSize(byte[] png)
    {
        Assert.True(png.AsSpan(0, 8).SequenceEqual(PngSignature), "PNG signature");
        Assert.Equal("IHDR", System.Text.Encoding.ASCII.GetString(png, 12, 4));
        return (BinaryPrimitives.ReadInt32BigEndian(png.AsSpan(16)), BinaryPrimitives.ReadInt32BigEndian(png.AsSpan(20)));
    }

    [Theory]
    [InlineData(900, 500)]
    [InlineData(640, 360)]
    public void PngHasTheSignatureAndTheRequestedSize(int width, int height)
    {
        var png = MigrationReport.RenderRoundsPng(Result(), width, height);
        Assert.Equal((width, height), PngSize(png));
    }

    [Fact]
    public void SvgIsXmlNamingTheVmAndTheMode()
    {
        var svg = MigrationReport.RenderRoundsSvg(Result("db-07", CompressionMode.Native));
        var document = XDocument.Parse(svg);
        Assert.Equal("svg", document.Root!.Name.LocalName);
        Assert.Contains("db-07", svg, StringComparison.Ordinal);
        Assert.Contains("Native", svg, StringComparison.Ordinal);
    }

    [Fact]
    public void HtmlShowsTheResultsNumbers()
    {
        var result = Result();
        var html = MigrationReport.RenderHtml(result);
        Assert.StartsWith("<!DOCTYPE html>", html, StringComparison.Ordinal);
        Assert.Contains("12.3 s", html, StringComparison.Ordinal);
        Assert.Contains("87 ms", html, StringComparison.Ordinal);
        Assert.Contains("50.0 MiB", html, StringComparison.Ordinal);
        Assert.Contains("140.0 MiB", html, StringComparison.Ordinal);
        Assert.Contains("2.80 : 1", html, StringComparison.Ordinal);
        Assert.Contains("12,345", html, StringComparison.Ordinal);
        Assert.Contains("data:image/png;base64,", html, StringComparison.Ordinal);
        Assert.Equal(MigrationReport.FormatMiB(result.BytesTransferred),
            MigrationReport.Summary(result).Single(i => i.Label == "Wire").Value);
    }

    [Fact]
    public void HtmlEncodesNames()
    {
        var html = MigrationReport.RenderHtml(Result("<script>vm&"));
        Assert.DoesNotContain("<script>vm", html, StringComparison.Ordinal);
        Assert.Contains("&lt;script&gt;vm&amp;", html, StringComparison.Ordinal);
    }

    [Fact]
    public void ResultWithoutRoundsStillRendersWithANote()
    {
        var result = Result() with { Rounds = [], Status = MigrationStatus.Failed, Error = "QEMU said no" };
        Assert.Equal((900, 500), PngSize(MigrationReport.RenderRoundsPng(result)));
        XDocument.Parse(MigrationReport.RenderRoundsSvg(result));
        var html = MigrationReport.RenderHtml(result);
        Assert.Contains("No pre-copy rounds were recorded", html, StringComparison.Ordinal);
        Assert.Contains("QEMU said no", html, StringComparison.Ordinal);
        Assert.Empty(MigrationReport.WireThroughput(result));
    }

    [Fact]
    public void WireThroughputIsEachRoundsWireBytesOverItsDuration()
    {
        // 10 MiB on the wire in each 2 s round: 41.9 Mbit/s, placed at the round's end.
        var samples = MigrationReport.WireThroughput(Result());
        Assert.Equal(5, samples.Count);
        Assert.All(samples, s => Assert.Equal(10 * 1048576 * 8 / 2.0 / 1e6, s.Mbps, 6));
        Assert.Equal([4.0, 6, 8, 10, 12], samples.Select(s => s.Seconds));
    }

    [Fact]
    public void RemainingCurveFollowsEverySampleAndFallsBackToRounds()
    {
        var result = Result();
        Assert.Equal(result.Samples.Count, MigrationReport.RemainingCurve(result).Count);
        var older = result with { Samples = [] };
        Assert.Equal(result.Rounds.Select(r => r.Elapsed.TotalSeconds), MigrationReport.RemainingCurve(older).Select(c => c.Seconds));
    }

    [Fact]
    public void ComparisonPlotsSeveralResults()
    {
        var results = new[] { Result(mode: CompressionMode.None), Result(mode: CompressionMode.Native, rounds: 3), Result(mode: CompressionMode.Delta, rounds: 0) };
        Assert.Equal((800, 400), PngSize(MigrationReport.RenderComparisonPng(results, 800, 400)));
        var svg = MigrationReport.RenderComparisonSvg(results);
        XDocument.Parse(svg);
        var html = MigrationReport.RenderHtml(results);
        Assert.Equal(3, html.Split("<section>").Length - 1);
    }

    [Fact]
    public void RejectsNonsense()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => MigrationReport.RenderRoundsPng(Result(), 0, 10));
        Assert.Throws<ArgumentException>(() => MigrationReport.RenderHtml(Array.Empty<MigrationResult>()));
    }
}
