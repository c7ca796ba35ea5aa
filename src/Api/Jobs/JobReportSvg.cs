using System.Globalization;
using System.Net;
using System.Text;
using SurgeryService.Domain.Deployment;
using SurgeryService.Domain.Jobs;

namespace SurgeryService.Api.Jobs;

/// <summary>
/// Two plots in one SVG: remaining weights per layer (percent) against iteration, and test top-1 accuracy against
/// iteration; below them, for a job with a deployment report, its ONNX Runtime figures (one row and bar per model).
/// Plain SVG so any browser or README renders it; no plotting library needed on the server.
/// </summary>
public static class JobReportSvg
{
    internal const int Width = 820, PanelHeight = 260, Left = 70, Right = 170, Top = 40, Gap = 70;
    private static readonly string[] Colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"];

    public static string Render(SurgeryJob job, IReadOnlyList<(int Iteration, long[] LayerKept)> points, IReadOnlyList<long> layerTotals,
        IReadOnlyList<(int Iteration, double Top1)> evaluations)
    {
        var deployment = job.Deployment;
        var deploymentTop = Top + 2 * PanelHeight + Gap + 80;
        var height = deployment is null ? Top + 2 * PanelHeight + Gap + 50 : deploymentTop + DeploymentHeight(deployment);
        var svg = Begin(height,
            $"Job {job.Id} ({job.Settings.Method}, {job.State}, iteration {job.Iteration} of {job.TotalIterations})");
        var maxIteration = Math.Max(1, Math.Max(job.TotalIterations, points.Count > 0 ? points[^1].Iteration : 1));

        var totals = layerTotals;
        var series = job.LayerNames.Select((name, k) => (name,
            points.Where(p => k < p.LayerKept.Length && k < totals.Count && totals[k] > 0)
                .Select(p => ((double)p.Iteration, 100.0 * p.LayerKept[k] / totals[k])).ToList())).ToList();
        var iterations = XAxis.Linear(maxIteration, "iteration");
        Panel(svg, Top, "Remaining weights per layer (%)", iterations, 100, series);

        var accuracy = new List<(string, List<(double, double)>)>
        {
            ("top-1 accuracy", evaluations.Select(e => ((double)e.Iteration, 100 * e.Top1)).ToList()),
        };
        Panel(svg, Top + PanelHeight + Gap, "Test top-1 accuracy (%)", iterations, 100, accuracy);
        if (deployment is not null) Deployment(svg, deploymentTop, deployment);
        svg.Append("</svg>");
        return svg.ToString();
    }

    private const int RowHeight = 22;

    private static int DeploymentHeight(JobDeployment deployment) => 60 + RowHeight * (2 + 2 * (deployment.Report?.Models.Count ?? 0));

    /// <summary>
    /// The deployment report: the int8 decision, then per model its ORT test top-1, smallest file, p50 latency at each
    /// batch size and memory at load; bars compare each model's file size and p50 latency with the first model's.
    /// </summary>
    private static void Deployment(StringBuilder svg, int top, JobDeployment deployment)
    {
        var q = deployment.Quantization;
        Text(svg, Left, top, "Deployment, measured in ONNX Runtime", bold: true);
        var decision = q.FallbackReason is null
            ? $"delivered {q.Delivered}; int8 validated on {q.BudgetSamples} {q.BudgetSplit} samples, {q.CalibrationMethod} calibration on {q.CalibrationSamples} training samples"
            : $"delivered {q.Delivered}: {q.FallbackReason}";
        Text(svg, Left, top + RowHeight, decision);
        if (deployment.Report is not { } report || report.Models.Count == 0) return;
        Text(svg, Left, top + 2 * RowHeight, FormattableString.Invariant(
            $"{report.Runtime}, {report.ExecutionProvider}, {report.IntraOpThreads} intra-op thread(s), p50 of {report.Runs} runs after {report.WarmupRuns} warm-up runs"));
        var first = report.Models[0];
        var batches = first.Latency.Select(l => l.Batch).ToList();
        const int barWidth = 180;
        for (var m = 0; m < report.Models.Count; m++)
        {
            var model = report.Models[m];
            var y = top + (3 + 2 * m) * RowHeight;
            var bytes = Math.Min(model.DenseBytes, model.SparseBytes ?? long.MaxValue);
            var firstBytes = Math.Min(first.DenseBytes, first.SparseBytes ?? long.MaxValue);
            var latency = string.Join(", ", model.Latency.Select(l => FormattableString.Invariant($"batch {l.Batch} {l.P50Ms:0.###} ms")));
            Text(svg, Left, y, FormattableString.Invariant(
                $"{model.Name} ({model.Storage}): top-1 {100 * model.Top1:0.00}%, {bytes / 1024.0:0.#} KiB, {latency}, load +{model.Memory.RssDeltaBytes / 1024} KiB"));
            // Bars: file size, then p50 latency at the largest batch, each as a share of the first model's.
            var largest = batches.Count > 0 ? batches.Max() : 0;
            var p50 = model.Latency.FirstOrDefault(l => l.Batch == largest)?.P50Ms;
            var firstP50 = first.Latency.FirstOrDefault(l => l.Batch == largest)?.P50Ms;
            Bar(svg, Left, y + 6, barWidth, (double)bytes / firstBytes, Colors[0], "size");
            if (p50 is { } p && firstP50 is { } f && f > 0)
            {
                Bar(svg, Left + 370, y + 6, barWidth, p / f, Colors[1], FormattableString.Invariant($"batch {largest} time"));
            }
        }
    }

    private static void Text(StringBuilder svg, int x, int y, string text, bool bold = false) =>
        svg.Append(CultureInfo.InvariantCulture,
            $"<text x=\"{x}\" y=\"{y}\"{(bold ? " font-weight=\"bold\"" : "")}>{WebUtility.HtmlEncode(text)}</text>");

    /// <summary>A bar <paramref name="share"/> of <paramref name="width"/> long (clamped to 1.5 widths), labelled with the share.</summary>
    private static void Bar(StringBuilder svg, int x, int y, int width, double share, string color, string label)
    {
        var length = width * Math.Clamp(share, 0, 1.5);
        svg.Append(CultureInfo.InvariantCulture,
            $"<rect x=\"{x}\" y=\"{y}\" width=\"{length:F1}\" height=\"10\" fill=\"{color}\"/>" +
            $"<text x=\"{x + length + 4:F1}\" y=\"{y + 9}\" font-size=\"10\">{WebUtility.HtmlEncode(label)} {share:0.###}x of the first</text>");
    }

    /// <summary>The document's opening: size, white background and a title line (HTML-encoded here).</summary>
    internal static StringBuilder Begin(int height, string title)
    {
        var svg = new StringBuilder();
        svg.Append(CultureInfo.InvariantCulture,
            $"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{Width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">");
        svg.Append("<rect width=\"100%\" height=\"100%\" fill=\"white\"/>");
        svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{Left}\" y=\"22\" font-size=\"15\">{WebUtility.HtmlEncode(title)}</text>");
        return svg;
    }

    /// <summary>
    /// A framed plot with a y grid from 0 to <paramref name="maxY"/>, <paramref name="x"/>'s ticks, one polyline per series
    /// and a legend; <paramref name="markers"/> also draws every point.
    /// </summary>
    internal static void Panel(StringBuilder svg, int top, string title, XAxis x, double maxY,
        IReadOnlyList<(string Name, List<(double X, double Y)> Points)> series, bool markers = false)
    {
        var plotWidth = Width - Left - Right;
        string X(double value) => (Left + plotWidth * x.Position(value)).ToString("F1", CultureInfo.InvariantCulture);
        string Y(double y) => (top + PanelHeight - PanelHeight * Math.Clamp(y, 0, maxY) / maxY).ToString("F1", CultureInfo.InvariantCulture);

        svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{Left}\" y=\"{top - 8}\" font-weight=\"bold\">{WebUtility.HtmlEncode(title)}</text>");
        svg.Append(CultureInfo.InvariantCulture,
            $"<rect x=\"{Left}\" y=\"{top}\" width=\"{plotWidth}\" height=\"{PanelHeight}\" fill=\"none\" stroke=\"#444\"/>");
        for (var i = 0; i <= 4; i++)
        {
            var y = maxY * i / 4;
            svg.Append(CultureInfo.InvariantCulture,
                $"<line x1=\"{Left}\" x2=\"{Left + plotWidth}\" y1=\"{Y(y)}\" y2=\"{Y(y)}\" stroke=\"#ddd\"/><text x=\"{Left - 8}\" y=\"{Y(y)}\" text-anchor=\"end\" dominant-baseline=\"middle\">{y:0}</text>");
        }
        foreach (var tick in x.Ticks)
        {
            svg.Append(CultureInfo.InvariantCulture,
                $"<text x=\"{X(tick)}\" y=\"{top + PanelHeight + 16}\" text-anchor=\"middle\">{tick.ToString(x.TickFormat, CultureInfo.InvariantCulture)}</text>");
        }
        svg.Append(CultureInfo.InvariantCulture,
            $"<text x=\"{Left + plotWidth / 2}\" y=\"{top + PanelHeight + 34}\" text-anchor=\"middle\">{WebUtility.HtmlEncode(x.Label)}</text>");
        for (var s = 0; s < series.Count; s++)
        {
            var color = Colors[s % Colors.Length];
            var (name, points) = series[s];
            if (points.Count > 0)
            {
                var path = string.Join(' ', points.Select(p => $"{X(p.X)},{Y(p.Y)}"));
                svg.Append(CultureInfo.InvariantCulture,
                    $"<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\" points=\"{path}\"/>");
                if (markers || points.Count == 1 || series.Count == 1)
                {
                    foreach (var p in points)
                    {
                        svg.Append(CultureInfo.InvariantCulture, $"<circle cx=\"{X(p.X)}\" cy=\"{Y(p.Y)}\" r=\"2.5\" fill=\"{color}\"/>");
                    }
                }
            }
            var legendY = top + 14 + 18 * s;
            svg.Append(CultureInfo.InvariantCulture,
                $"<rect x=\"{Left + plotWidth + 12}\" y=\"{legendY - 9}\" width=\"12\" height=\"12\" fill=\"{color}\"/>" +
                $"<text x=\"{Left + plotWidth + 30}\" y=\"{legendY + 1}\">{WebUtility.HtmlEncode(name)}</text>");
        }
    }
}

/// <summary>An x axis of a plot: where a value lies across it (0 left, 1 right), its ticks and its label.</summary>
internal sealed record XAxis(string Label, Func<double, double> Position, IReadOnlyList<double> Ticks, string TickFormat)
{
    /// <summary>From 0 to <paramref name="max"/>, five ticks.</summary>
    public static XAxis Linear(double max, string label) =>
        new(label, x => x / max, [.. Enumerable.Range(0, 5).Select(i => max * i / 4)], "0");

    /// <summary>Logarithmic from <paramref name="left"/> to <paramref name="right"/> (either may be the larger).</summary>
    public static XAxis Log(double left, double right, IReadOnlyList<double> ticks, string label, string tickFormat) =>
        new(label, x => Math.Log(x / left) / Math.Log(right / left), ticks, tickFormat);
}
