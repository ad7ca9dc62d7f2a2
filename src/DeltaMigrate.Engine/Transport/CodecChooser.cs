namespace DeltaMigrate.Engine.Transport;

/// <summary>
/// Picks the wire codec for the next frame from what was measured while migrating, and says when to
/// try another codec on a frame so its figures stay current. Pure: no clock, no I/O; the sender feeds it.
/// </summary>
/// <remarks>
/// The rule: move the most guest bytes per second. A codec with wire/input ratio r on a link that drains
/// D wire bytes/s can take D / r input bytes/s; its encoder, given a share of one core, can take
/// share × T (T = input bytes per second of encoding on this CPU). The slower of the two is what it
/// delivers. While the link is the limit, a smaller r wins (fewest bytes on the wire); an encoder that
/// would become the limit loses to a cheaper one. Raw costs no encoding and has r = 1. Options within
/// <see cref="Tolerance"/> of the best count as equal and the cheapest of them is taken, so incompressible
/// data goes raw.
/// </remarks>
public sealed class CodecChooser
{
    /// <summary>Options within this fraction of the best delivered rate are equal; the cheapest wins.</summary>
    public const double Tolerance = 0.03;

    /// <summary>Every n-th regular probe may try any codec, however slow it looked.</summary>
    public const int RecheckEvery = 4;

    /// <summary>Weight of a new observation in the running averages (recent pages count most).</summary>
    public const double Smoothing = 0.25;

    private readonly CodecOption[] _options;
    private readonly Estimate[] _estimates;
    private readonly double _cpuShare;
    private readonly int _probeEvery;
    private double? _drain;
    private int _frames;
    private int _nextProbe;
    private int _probes;

    /// <param name="options">The candidates, cheapest first (raw, if allowed, first of all).</param>
    /// <param name="cpuShare">Share of one core compression may use: the transcoder and the cipher run on the same CPU.</param>
    /// <param name="probeEvery">Try another codec on every n-th frame (more often while some codec is unmeasured).</param>
    public CodecChooser(IReadOnlyList<CodecOption> options, double cpuShare = 0.5, int probeEvery = 8)
    {
        ArgumentOutOfRangeException.ThrowIfZero(options.Count);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(cpuShare);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(probeEvery);
        _options = [.. options];
        _estimates = new Estimate[_options.Length];
        _cpuShare = cpuShare;
        _probeEvery = probeEvery;
    }

    /// <summary>Raw, LZ4 and zstd at levels -1, 1, 3 and 6 (the adaptive set; docs/performance.md has their speeds).</summary>
    public static IReadOnlyList<CodecOption> AdaptiveSet { get; } =
        [CodecOption.Raw, CodecOption.Lz4, CodecOption.Zstd(-1), CodecOption.Zstd(1), CodecOption.Zstd(3), CodecOption.Zstd(6)];

    public IReadOnlyList<CodecOption> Options => _options;

    /// <summary>The link's drain rate in wire bytes per second, if measured yet.</summary>
    public double? DrainBytesPerSecond => _drain;

    /// <summary>
    /// What the link took: <paramref name="wireBytes"/> in <paramref name="seconds"/> of waiting for the
    /// pacer and the socket. Averaged as bytes over time, so short quick sends do not dominate.
    /// </summary>
    public void ObserveDrain(long wireBytes, double seconds)
    {
        if (wireBytes <= 0)
        {
            return;
        }

        double rate = wireBytes / Math.Max(seconds, 1e-7);
        _drain = _drain is double d ? d + (Smoothing * (rate - d)) : rate;
    }

    /// <summary>An option encoded <paramref name="inputBytes"/> into <paramref name="outputBytes"/> in <paramref name="seconds"/>.</summary>
    public void ObserveEncode(CodecOption option, int inputBytes, int outputBytes, double seconds)
    {
        int i = Array.IndexOf(_options, option);
        if (i < 0 || inputBytes <= 0 || option.Codec == WireCodec.Raw)
        {
            return;
        }

        double ratio = (double)outputBytes / inputBytes;
        double speed = inputBytes / Math.Max(seconds, 1e-9);
        ref Estimate e = ref _estimates[i];
        e = e.Known
            ? new Estimate(true, true, e.Ratio + (Smoothing * (ratio - e.Ratio)), e.Speed + (Smoothing * (speed - e.Speed)))
            // An option's first encode pays for JIT and its context: it is not a speed, so it is dropped.
            : e.WarmedUp ? new Estimate(true, true, ratio, speed) : new Estimate(true, false, 0, 0);
    }

    /// <summary>The wire/input ratio and encoder speed (input bytes/s) measured for an option, if any.</summary>
    public (double Ratio, double BytesPerSecond)? EstimateOf(CodecOption option)
    {
        int i = Array.IndexOf(_options, option);
        return i < 0 ? null : option.Codec == WireCodec.Raw ? (1, double.PositiveInfinity)
            : _estimates[i].Known ? (_estimates[i].Ratio, _estimates[i].Speed) : null;
    }

    /// <summary>Input bytes per second an option would deliver now (null when unmeasured).</summary>
    public double? Delivered(CodecOption option)
    {
        if (EstimateOf(option) is not var (ratio, speed))
        {
            return null;
        }

        double link = _drain is double d ? d / Math.Max(ratio, 1e-6) : double.PositiveInfinity;
        return Math.Min(link, speed * _cpuShare);
    }

    /// <summary>The codec for the next frame. Before the link is measured: the first compressing option (LZ4), else raw.</summary>
    public CodecOption Choose()
    {
        if (_drain is null)
        {
            return _options.FirstOrDefault(o => o.Codec != WireCodec.Raw, _options[0]);
        }

        double best = _options.Max(o => Delivered(o) ?? 0);
        foreach (CodecOption option in _options)
        {
            // Cheapest first: the first one within the tolerance of the best.
            if (Delivered(option) is double rate && rate >= best * (1 - Tolerance))
            {
                return option;
            }
        }

        return _options[0];
    }

    /// <summary>
    /// Counts a frame; returns an option to also try on it (the sender then sends the smaller result),
    /// or null. Unmeasured options first, then in turn those that could beat the choice: an encoder
    /// whose known speed alone is below what the choice delivers cannot win on any data. Every
    /// <see cref="RecheckEvery"/>-th probe skips that test, so a speed measured while the CPU was busy
    /// does not rule a codec out for good.
    /// </summary>
    public CodecOption? NextProbe(CodecOption chosen)
    {
        _frames++;
        bool unmeasured = _options.Any(o => o.Codec != WireCodec.Raw && o != chosen && EstimateOf(o) is null);
        if (_frames % (unmeasured ? 2 : _probeEvery) != 0)
        {
            return null;
        }

        bool recheck = ++_probes % RecheckEvery == 0;
        double current = recheck ? 0 : Delivered(chosen) ?? 0;
        for (int step = 0; step < _options.Length; step++)
        {
            CodecOption option = _options[(_nextProbe + step) % _options.Length];
            if (option == chosen || option.Codec == WireCodec.Raw)
            {
                continue;
            }

            var estimate = EstimateOf(option);
            if (unmeasured ? estimate is null : estimate!.Value.BytesPerSecond * _cpuShare > current)
            {
                _nextProbe = (Array.IndexOf(_options, option) + 1) % _options.Length;
                return option;
            }
        }

        return null;
    }

    private readonly record struct Estimate(bool WarmedUp, bool Known, double Ratio, double Speed);
}
