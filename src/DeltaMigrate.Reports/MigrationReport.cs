using System.Globalization;
using System.Net;
using System.Text;
using DeltaMigrate.Engine.Migration;
using ScottPlot;

namespace DeltaMigrate.Reports;

/// <summary>One line of a migration's summary table, already formatted for people.</summary>
public sealed record SummaryItem(string Label, string Value);

/// <summary>Network throughput of one round: its wire bytes over its duration, at the round's end.</summary>
public sealed record ThroughputSample(int Round, double Seconds, double Mbps);

/// <summary>
/// Charts and self-contained HTML reports of migration results, for a maintenance mail or a
/// benchmark. Numbers are formatted with the invariant culture so a report reads the same anywhere.
/// </summary>
public static class MigrationReport
{
    public const int DefaultWidth = 900;
    public const int DefaultHeight = 500;

    private const double MiB = 1048576.0;
    private static readonly CultureInfo Invariant = CultureInfo.InvariantCulture;

    // ScottPlot picks the first family it finds (DejaVu Serif on Debian); a sans face reads better.
    private static readonly string[] SansFonts = ["DejaVu Sans", "Liberation Sans", "Noto Sans", "Open Sans", "Arial", "Helvetica"];
    private static readonly Lazy<string?> SansFont = new(() =>
    {
        var installed = SkiaSharp.SKFontManager.Default.FontFamilies.ToHashSet(StringComparer.OrdinalIgnoreCase);
        return SansFonts.FirstOrDefault(installed.Contains);
    });

    static MigrationReport() => NativeAssets.Register();

    /// <summary>The rounds chart of one migration as a PNG image.</summary>
    public static byte[] RenderRoundsPng(MigrationResult result, int width = DefaultWidth, int height = DefaultHeight)
    {
        CheckSize(width, height);
        using var plot = RoundsPlot(result);
        return plot.GetImageBytes(width, height, ImageFormat.Png);
    }

    /// <summary>The rounds chart of one migration as an SVG document.</summary>
    public static string RenderRoundsSvg(MigrationResult result, int width = DefaultWidth, int height = DefaultHeight)
    {
        CheckSize(width, height);
        using var plot = RoundsPlot(result);
        return Describe(plot.GetSvgXml(width, height), Title(result));
    }

    /// <summary>MiB remaining over time, one line per result labelled by its mode (for comparing modes).</summary>
    public static byte[] RenderComparisonPng(IReadOnlyList<MigrationResult> results, int width = DefaultWidth, int height = DefaultHeight)
    {
        CheckSize(width, height);
        using var plot = ComparisonPlot(results);
        return plot.GetImageBytes(width, height, ImageFormat.Png);
    }

    /// <summary>The comparison chart as an SVG document.</summary>
    public static string RenderComparisonSvg(IReadOnlyList<MigrationResult> results, int width = DefaultWidth, int height = DefaultHeight)
    {
        CheckSize(width, height);
        using var plot = ComparisonPlot(results);
        return Describe(plot.GetSvgXml(width, height), ComparisonTitle(results));
    }

    /// <summary>A self-contained HTML page: the summary table and the rounds chart (inline PNG).</summary>
    public static string RenderHtml(MigrationResult result)
    {
        ArgumentNullException.ThrowIfNull(result);
        return RenderHtml([result]);
    }

    /// <summary>One HTML page for several migrations: a comparison chart, then each one's summary and chart.</summary>
    public static string RenderHtml(IReadOnlyList<MigrationResult> results)
    {
        ArgumentNullException.ThrowIfNull(results);
        if (results.Count == 0)
        {
            throw new ArgumentException("There is no migration result to report.", nameof(results));
        }

        var html = new StringBuilder();
        var heading = results.Count == 1 ? $"Migration of {results[0].VMName}" : $"{results.Count} migrations";
        html.Append("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n")
            .Append("<title>DeltaMigrate: ").Append(Encode(heading)).Append("</title>\n")
            .Append("<style>\n")
            .Append("body { font-family: 'DejaVu Sans', Arial, sans-serif; color: #222; margin: 1.5em; }\n")
            .Append("table { border-collapse: collapse; margin: 0.5em 0 1em; }\n")
            .Append("th, td { border: 1px solid #ccc; padding: 3px 10px; text-align: left; }\n")
            .Append("th { background: #f2f2f2; font-weight: normal; }\n")
            .Append("td.n { text-align: right; font-variant-numeric: tabular-nums; }\n")
            .Append(".Completed { color: #1a7f37; } .Failed { color: #cf222e; } .Cancelled { color: #9a6700; }\n")
            .Append("</style>\n</head>\n<body>\n")
            .Append("<h1>DeltaMigrate: ").Append(Encode(heading)).Append("</h1>\n")
            .Append("<p>Report generated ").Append(DateTime.UtcNow.ToString("yyyy-MM-dd HH:mm", Invariant)).Append(" UTC.</p>\n");

        if (results.Count > 1)
        {
            html.Append("<h2>Remaining memory over time</h2>\n");
            AppendImage(html, RenderComparisonPng(results), ComparisonTitle(results));
        }

        foreach (var result in results)
        {
            ArgumentNullException.ThrowIfNull(result);
            html.Append("<section>\n<h2>").Append(Encode(result.VMName)).Append(": <span class=\"")
                .Append(result.Status).Append("\">").Append(result.Status).Append("</span> (")
                .Append(result.Mode).Append(")</h2>\n<table>\n");
            foreach (var item in Summary(result))
            {
                html.Append("<tr><th>").Append(Encode(item.Label)).Append("</th><td>").Append(Encode(item.Value)).Append("</td></tr>\n");
            }

            html.Append("</table>\n");
            AppendImage(html, RenderRoundsPng(result), Title(result));
            AppendRounds(html, result);
            html.Append("</section>\n");
        }

        return html.Append("</body>\n</html>\n").ToString();
    }

    /// <summary>The summary table's lines, formatted as in the HTML report.</summary>
    public static IReadOnlyList<SummaryItem> Summary(MigrationResult result)
    {
        ArgumentNullException.ThrowIfNull(result);
        var stream = StreamBytes(result);
        var compression = result.Compression;
        var items = new List<SummaryItem>
        {
            new("VM", result.VMName),
            new("Status", result.Status.ToString()),
            new("Mode", result.Mode.ToString()),
            new("Source -> destination", $"{result.Source} -> {result.Destination}"),
            new("Total time", FormatSeconds(result.TotalTime)),
            new("Downtime", FormatMilliseconds(result.Downtime)),
            new("Stream", FormatMiB(stream)),
            new("Wire", FormatMiB(result.BytesTransferred)),
            new("Compression ratio", result.BytesTransferred > 0 ? ((double)stream / result.BytesTransferred).ToString("0.00", Invariant) + " : 1" : "n/a"),
            new("Rounds", result.DirtySyncCount.ToString(Invariant)),
            new("Converged", result.Converged ? "yes" : result.TimedOut ? "no (timed out, guest paused)" : "no"),
            new("Cache hits", Count(compression?.CacheHits)),
            new("XBZRLE pages", Count(compression?.XbzrlePages)),
            new("Unchanged pages", Count(compression?.UnchangedPages)),
        };
        if (!string.IsNullOrEmpty(result.Error))
        {
            items.Add(new SummaryItem("Error", result.Error));
        }

        return items;
    }

    /// <summary>Wire throughput per round: the round's wire bytes over its duration, in Mbit/s.</summary>
    public static IReadOnlyList<ThroughputSample> WireThroughput(MigrationResult result)
    {
        ArgumentNullException.ThrowIfNull(result);
        return result.Rounds
            .Where(r => r.Duration > TimeSpan.Zero)
            .Select(r => new ThroughputSample(r.Round, (r.Elapsed + r.Duration).TotalSeconds, r.WireBytes * 8 / r.Duration.TotalSeconds / 1e6))
            .ToArray();
    }

    /// <summary>
    /// The remaining-bytes curve: every poll's sample where the result has them, else one point per round
    /// (a result from an older version).
    /// </summary>
    public static IReadOnlyList<(double Seconds, double RemainingMiB)> RemainingCurve(MigrationResult result)
    {
        ArgumentNullException.ThrowIfNull(result);
        return result.Samples.Count > 0
            ? result.Samples.Select(s => (s.Elapsed.TotalSeconds, s.BytesRemaining / MiB)).ToArray()
            : result.Rounds.Select(r => (r.Elapsed.TotalSeconds, r.BytesRemaining / MiB)).ToArray();
    }

    /// <summary>"12.3 s": total time as the summary shows it.</summary>
    public static string FormatSeconds(TimeSpan time) => time.TotalSeconds.ToString("0.0", Invariant) + " s";

    /// <summary>"123 ms": downtime as the summary shows it.</summary>
    public static string FormatMilliseconds(TimeSpan time) => time.TotalMilliseconds.ToString("0", Invariant) + " ms";

    /// <summary>"45.6 MiB": byte counts as the summary shows them.</summary>
    public static string FormatMiB(long bytes) => (bytes / MiB).ToString("0.0", Invariant) + " MiB";

    private static Plot RoundsPlot(MigrationResult result)
    {
        ArgumentNullException.ThrowIfNull(result);
        var plot = new Plot();
        plot.Title(Title(result));
        plot.XLabel("Elapsed (s)");
        plot.YLabel("Remaining (MiB)");

        if (result.Rounds.Count == 0)
        {
            plot.Axes.SetLimits(0, Math.Max(1, result.TotalTime.TotalSeconds), 0, Math.Max(1, result.MemorySize / MiB));
            plot.Add.Annotation("No pre-copy rounds were recorded for this migration.", Alignment.MiddleCenter);
            return Styled(plot);
        }

        var curve = RemainingCurve(result);
        var remaining = plot.Add.ScatterLine(curve.Select(c => c.Seconds).ToArray(), curve.Select(c => c.RemainingMiB).ToArray(), Colors.Navy);
        remaining.LegendText = "Remaining (MiB, left)";
        remaining.LineWidth = 2;

        // Where each round began, on the curve.
        var starts = plot.Add.ScatterPoints(
            result.Rounds.Select(r => r.Elapsed.TotalSeconds).ToArray(),
            result.Rounds.Select(r => r.BytesRemaining / MiB).ToArray(),
            Colors.Navy);
        starts.LegendText = result.Rounds.Any(r => r.Exact) ? "Round start (counted from the stream)" : "Round start (QEMU's dirty-sync count)";
        starts.MarkerSize = 7;

        // Each round's rate is its average: drawn as a step over the round.
        var throughput = WireThroughput(result);
        if (throughput.Count > 0)
        {
            var steps = new List<Coordinates>();
            foreach (var round in result.Rounds.Where(r => r.Duration > TimeSpan.Zero))
            {
                var mbps = round.WireBytes * 8 / round.Duration.TotalSeconds / 1e6;
                steps.Add(new Coordinates(round.Elapsed.TotalSeconds, mbps));
                steps.Add(new Coordinates((round.Elapsed + round.Duration).TotalSeconds, mbps));
            }

            var wire = plot.Add.ScatterLine(steps, Colors.OrangeRed);
            wire.Axes.YAxis = plot.Axes.Right;
            wire.LegendText = "Wire throughput of the round (Mbit/s, right)";
            wire.LineWidth = 2;
            plot.Axes.Right.Label.Text = "Wire throughput (Mbit/s)";
        }

        var right = Math.Max(result.TotalTime.TotalSeconds, Math.Max(curve.Count > 0 ? curve[^1].Seconds : 0, result.Rounds[^1].Elapsed.TotalSeconds));
        plot.Axes.SetLimitsX(0, Math.Max(1, right) * 1.03);
        var top = Math.Max(curve.Count > 0 ? curve.Max(c => c.RemainingMiB) : 0, result.Rounds.Max(r => r.BytesRemaining) / MiB);
        plot.Axes.SetLimitsY(0, Math.Max(1, top) * 1.1, plot.Axes.Left);
        if (throughput.Count > 0)
        {
            plot.Axes.SetLimitsY(0, Math.Max(1, throughput.Max(t => t.Mbps)) * 1.1, plot.Axes.Right);
        }

        plot.ShowLegend(Edge.Bottom);
        return Styled(plot);
    }

    private static Plot ComparisonPlot(IReadOnlyList<MigrationResult> results)
    {
        ArgumentNullException.ThrowIfNull(results);
        var plot = new Plot();
        plot.Title(ComparisonTitle(results));
        plot.XLabel("Elapsed (s)");
        plot.YLabel("Remaining (MiB)");

        var plotted = 0;
        var top = 1.0;
        var right = 1.0;
        foreach (var result in results)
        {
            ArgumentNullException.ThrowIfNull(result);
            var curve = RemainingCurve(result);
            if (curve.Count == 0)
            {
                continue;
            }

            var line = plot.Add.ScatterLine(curve.Select(c => c.Seconds).ToArray(), curve.Select(c => c.RemainingMiB).ToArray());
            line.LegendText = Label(result, results);
            line.LineWidth = 2;
            top = Math.Max(top, curve.Max(c => c.RemainingMiB));
            right = Math.Max(right, Math.Max(result.TotalTime.TotalSeconds, curve[^1].Seconds));
            plotted++;
        }

        if (plotted == 0)
        {
            plot.Axes.SetLimits(0, 1, 0, 1);
            plot.Add.Annotation("No pre-copy rounds were recorded for these migrations.", Alignment.MiddleCenter);
            return Styled(plot);
        }

        plot.Axes.SetLimits(0, right * 1.03, 0, top * 1.1);
        plot.ShowLegend(Edge.Bottom);
        return Styled(plot);
    }

    private static Plot Styled(Plot plot)
    {
        if (SansFont.Value is { } font)
        {
            plot.Font.Set(font);
        }

        return plot;
    }

    private static string Title(MigrationResult result) =>
        $"{result.VMName} ({result.Mode}): total {FormatSeconds(result.TotalTime)}, downtime {FormatMilliseconds(result.Downtime)}";

    private static string ComparisonTitle(IReadOnlyList<MigrationResult> results) =>
        results.Select(r => r.VMName).Distinct(StringComparer.Ordinal).Count() == 1
            ? $"{results[0].VMName}: remaining memory by mode"
            : "Remaining memory by mode";

    // The mode, plus the VM when two results share a mode.
    private static string Label(MigrationResult result, IReadOnlyList<MigrationResult> all) =>
        all.Count(r => r.Mode == result.Mode) > 1 ? $"{result.Mode} ({result.VMName})" : result.Mode.ToString();

    private static long StreamBytes(MigrationResult result) => result.StreamBytes > 0 ? result.StreamBytes : result.BytesTransferred;

    private static string Count(long? value) => value is { } v ? v.ToString("N0", Invariant) : "n/a";

    private static void CheckSize(int width, int height)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(width);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(height);
    }

    // A <title> first in the SVG: what the chart is, for screen readers and text search.
    private static string Describe(string svg, string title)
    {
        var start = svg.IndexOf("<svg", StringComparison.Ordinal);
        var end = start < 0 ? -1 : svg.IndexOf('>', start);
        return end < 0 ? svg : svg.Insert(end + 1, $"<title>{Encode(title)}</title>");
    }

    private static void AppendImage(StringBuilder html, byte[] png, string alt) =>
        html.Append("<p><img src=\"data:image/png;base64,").Append(Convert.ToBase64String(png))
            .Append("\" width=\"").Append(DefaultWidth.ToString(Invariant)).Append("\" height=\"").Append(DefaultHeight.ToString(Invariant))
            .Append("\" alt=\"").Append(Encode(alt)).Append("\"></p>\n");

    private static void AppendRounds(StringBuilder html, MigrationResult result)
    {
        if (result.Rounds.Count == 0)
        {
            html.Append("<p>No pre-copy rounds were recorded for this migration.</p>\n");
            return;
        }

        var throughput = WireThroughput(result).ToDictionary(t => t.Round, t => t.Mbps);
        var counted = result.Rounds.Any(r => r.Exact) ? "counted from the stream" : "from QEMU's counters between polls";
        html.Append("<details>\n<summary>Rounds (").Append(result.Rounds.Count.ToString(Invariant)).Append(", ").Append(counted).Append(")</summary>\n<table>\n")
            .Append("<tr><th>Round</th><th>Start (s)</th><th>Duration (s)</th><th>Remaining at start (MiB)</th>")
            .Append("<th>Stream (MiB)</th><th>Sent (MiB)</th><th>Wire (MiB)</th><th>Wire (Mbit/s)</th><th>Raw pages</th><th>XBZRLE pages</th><th>Zero pages</th><th>Unchanged pages</th></tr>\n");
        foreach (var r in result.Rounds)
        {
            html.Append("<tr>");
            Cell(html, r.Round.ToString(Invariant));
            Cell(html, r.Elapsed.TotalSeconds.ToString("0.00", Invariant));
            Cell(html, r.Duration.TotalSeconds.ToString("0.00", Invariant));
            Cell(html, (r.BytesRemaining / MiB).ToString("0.0", Invariant));
            Cell(html, (r.StreamBytes / MiB).ToString("0.0", Invariant));
            Cell(html, (r.SentBytes / MiB).ToString("0.0", Invariant));
            Cell(html, (r.WireBytes / MiB).ToString("0.0", Invariant));
            Cell(html, throughput.TryGetValue(r.Round, out var mbps) ? mbps.ToString("0.0", Invariant) : "n/a");
            Cell(html, r.RawPages.ToString("N0", Invariant));
            Cell(html, r.XbzrlePages.ToString("N0", Invariant));
            Cell(html, r.ZeroPages.ToString("N0", Invariant));
            Cell(html, r.UnchangedPages.ToString("N0", Invariant));
            html.Append("</tr>\n");
        }

        html.Append("</table>\n</details>\n");
    }

    private static void Cell(StringBuilder html, string value) => html.Append("<td class=\"n\">").Append(value).Append("</td>");

    private static string Encode(string text) => WebUtility.HtmlEncode(text);
}
