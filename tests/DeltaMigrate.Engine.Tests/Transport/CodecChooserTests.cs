using DeltaMigrate.Engine.Transport;

namespace DeltaMigrate.Engine.Tests.Transport;

/// <summary>
/// The chooser fed figures recorded on this machine (docs/performance.md, `--codecs` on a pmemsave of the
/// test guest with fill=text and fill=random: ratio = wire/input per 64 KiB frame, speed = input bytes/s).
/// </summary>
public sealed class CodecChooserTests
{
    private static readonly CodecOption ZstdFast = CodecOption.Zstd(-1);
    private static readonly CodecOption Zstd1 = CodecOption.Zstd(1);
    private static readonly CodecOption Zstd3 = CodecOption.Zstd(3);
    private static readonly CodecOption Zstd6 = CodecOption.Zstd(6);

    /// <summary>Guest text pages: (option, ratio, input bytes/s).</summary>
    private static readonly (CodecOption Option, double Ratio, double Speed)[] Text =
    [
        (CodecOption.Lz4, 1 / 3.82, 0.66e9), (ZstdFast, 1 / 5.61, 0.40e9), (Zstd1, 1 / 6.29, 0.34e9), (Zstd3, 1 / 6.61, 0.33e9), (Zstd6, 1 / 7.22, 0.08e9),
    ];

    /// <summary>Guest random pages: nothing compresses (the output is a little larger than the input).</summary>
    private static readonly (CodecOption Option, double Ratio, double Speed)[] Random =
    [
        (CodecOption.Lz4, 1.004, 3.4e9), (ZstdFast, 1.0001, 2.6e9), (Zstd1, 1.0001, 1.9e9), (Zstd3, 1.0001, 1.7e9), (Zstd6, 1.0001, 1.0e9),
    ];

    private const double Mbit100 = 11.5e6; // TCP payload of a shaped 100 Mbit/s link here (qemu-traps.md)
    private const double Gbit1 = 98e6;

    [Theory]
    [InlineData(1e6, "zstd 6")]          // a 8 Mbit/s WAN: the strongest level still outruns it
    [InlineData(Mbit100, "zstd 3")]      // zstd 6 would make the CPU the limit (40 MB/s of input for 83 the link could take)
    [InlineData(Gbit1, "lz4")]           // zstd would bind the CPU; LZ4 delivers 330 MB/s
    [InlineData(2e9, "raw")]             // loopback: any encoder is slower than the socket
    public void TextPages_PickTheStrongestCodecTheCpuSustains(double drain, string expected)
    {
        var chooser = Fed(Text, drain);
        Assert.Equal(expected, chooser.Choose().Name);
    }

    [Theory]
    [InlineData(1e6)]
    [InlineData(Mbit100)]
    [InlineData(2e9)]
    public void IncompressiblePages_GoRaw_OnAnyLink(double drain) =>
        Assert.Equal(CodecOption.Raw, Fed(Random, drain).Choose());

    [Fact]
    public void BeforeTheLinkIsMeasured_ItStartsWithLz4() =>
        Assert.Equal(CodecOption.Lz4, new CodecChooser(CodecChooser.AdaptiveSet).Choose());

    [Fact]
    public void WithoutRawAllowed_TheCheapestCompressorIsTheFallback()
    {
        var chooser = new CodecChooser([CodecOption.Lz4, Zstd3]);
        Feed(chooser, Random, 2e9);
        Assert.Equal(CodecOption.Lz4, chooser.Choose());
    }

    [Fact]
    public void WhenThePagesTurnIncompressible_RecentFramesWin()
    {
        var chooser = Fed(Text, Mbit100);
        Assert.Equal(Zstd3, chooser.Choose());
        // The guest rewrites its memory with random bytes: only the chosen codec sees it at first.
        for (int i = 0; i < 20; i++)
        {
            chooser.ObserveEncode(Zstd3, 65536, 65540, 65536 / 1.7e9);
        }

        // Zstd 3 now looks like raw; the stale text figures of the others still promise more, so they are probed next.
        CodecOption? probe = Probe(chooser, chooser.Choose());
        Assert.NotNull(probe);
        foreach (var (option, ratio, speed) in Random)
        {
            for (int i = 0; i < 20; i++)
            {
                chooser.ObserveEncode(option, 65536, (int)(65536 * ratio), 65536 / speed);
            }
        }

        Assert.Equal(CodecOption.Raw, chooser.Choose());
    }

    [Fact]
    public void TheLinkSpeedingUp_MovesToCheaperCodecs()
    {
        var chooser = Fed(Text, Mbit100);
        Assert.Equal(Zstd3, chooser.Choose());
        for (int i = 0; i < 30; i++)
        {
            chooser.ObserveDrain(65536, 65536 / 2e9);
        }

        Assert.Equal(CodecOption.Raw, chooser.Choose());
    }

    [Fact]
    public void UnmeasuredCodecs_AreProbedFirst_EveryOtherFrame()
    {
        var chooser = new CodecChooser(CodecChooser.AdaptiveSet);
        chooser.ObserveDrain(65536, 65536 / Mbit100);
        var probed = new List<CodecOption>();
        for (int frame = 0; frame < 20; frame++)
        {
            if (chooser.NextProbe(CodecOption.Lz4) is { } probe)
            {
                probed.Add(probe);
                var (_, ratio, speed) = Text.Single(t => t.Option == probe);
                chooser.ObserveEncode(probe, 65536, (int)(65536 * ratio), 65536 / speed);
            }
        }

        // Every zstd level twice (the first encode only warms it up), two frames apart; then every 8th frame.
        Assert.Equal([ZstdFast, Zstd1, Zstd3, Zstd6, ZstdFast, Zstd1, Zstd3, Zstd6], probed);
        Assert.NotNull(chooser.EstimateOf(Zstd6));
    }

    [Fact]
    public void CodecsTooSlowToWin_AreNotProbed()
    {
        // Raw delivers 2 GB/s; no encoder here does half of that: only the rechecks (every 4th probe slot) try one.
        var chooser = Fed(Text, 2e9);
        int probes = Enumerable.Range(0, 64).Count(_ => chooser.NextProbe(CodecOption.Raw) is not null);
        Assert.Equal(64 / 8 / CodecChooser.RecheckEvery, probes);

        // On a slow link zstd 3 delivers 76 MB/s: the encoders faster than that are probed in turn, zstd 6
        // (40 MB/s on half a core) only when a recheck comes to it.
        var slow = Fed(Text, Mbit100);
        var probed = Enumerable.Range(0, 256).Select(_ => slow.NextProbe(Zstd3)).OfType<CodecOption>().ToList();
        Assert.Equal(256 / 8, probed.Count);
        Assert.Equal(new HashSet<CodecOption> { CodecOption.Lz4, ZstdFast, Zstd1, Zstd6 }, probed.ToHashSet());
        Assert.True(probed.Count(p => p == Zstd6) <= probed.Count / CodecChooser.RecheckEvery, string.Join(", ", probed));
        Assert.True(probed.Count(p => p == CodecOption.Lz4) >= probed.Count / 4, string.Join(", ", probed));
    }

    [Fact]
    public void DeliveredRate_IsTheSlowerOfLinkAndEncoder()
    {
        var chooser = Fed(Text, Mbit100);
        Assert.Equal(Mbit100, chooser.Delivered(CodecOption.Raw)!.Value, Mbit100 * 1e-6);
        Assert.Equal(Mbit100 * 6.61, chooser.Delivered(Zstd3)!.Value, Mbit100 * 6.61 * 1e-3); // link-bound
        Assert.Equal(0.08e9 * 0.5, chooser.Delivered(Zstd6)!.Value, 0.08e9 * 1e-6);          // CPU-bound
    }

    private static CodecOption? Probe(CodecChooser chooser, CodecOption chosen)
    {
        for (int frame = 0; frame < 16; frame++)
        {
            if (chooser.NextProbe(chosen) is { } probe)
            {
                return probe;
            }
        }

        return null;
    }

    private static CodecChooser Fed((CodecOption Option, double Ratio, double Speed)[] figures, double drain)
    {
        var chooser = new CodecChooser(CodecChooser.AdaptiveSet);
        Feed(chooser, figures, drain);
        return chooser;
    }

    private static void Feed(CodecChooser chooser, (CodecOption Option, double Ratio, double Speed)[] figures, double drain)
    {
        foreach (var (option, ratio, speed) in figures)
        {
            chooser.ObserveEncode(option, 1, 1, 1); // the warm-up encode, which the chooser drops
            chooser.ObserveEncode(option, 65536, (int)Math.Round(65536 * ratio), 65536 / speed);
        }

        chooser.ObserveDrain(65536, 65536 / drain);
    }
}
