using SurgeryService.Domain.Jobs;
using SurgeryService.Domain.Surgery;

namespace SurgeryService.Api.Jobs;

/// <summary>
/// The sensitivity curves as one SVG line plot: validation top-1 (%) against the layer's kept share on a log axis from 1
/// (dense) down to the ladder's smallest share, one line per layer (in the plot style of <see cref="JobReportSvg"/>).
/// </summary>
public static class SensitivityPlot
{
    public static string Render(SurgeryJob job, SearchReport report)
    {
        // Room for the panel's own title under the document's.
        const int top = JobReportSvg.Top + 24;
        var svg = JobReportSvg.Begin(top + JobReportSvg.PanelHeight + 50,
            $"Sensitivity of job {job.Id}: each layer alone pruned by magnitude, no retraining");
        var smallest = Math.Min(Sensitivity.Ladder.Min(), report.Sensitivity.SelectMany(c => c.Points).Min(p => p.KeptFraction));
        var ticks = new[] { 1.0 }.Concat(Sensitivity.Ladder).Where(t => t >= smallest).ToList();
        var axis = XAxis.Log(1, smallest, ticks, "kept share of the layer's weights (log scale)", "0.###");
        var series = report.Sensitivity
            .Select(c => ($"{c.Layer} ({c.Total})", c.Points.Select(p => (p.KeptFraction, 100 * p.Top1)).ToList()))
            .ToList();
        JobReportSvg.Panel(svg, top,
            $"Validation top-1 (%) on {report.ValidationSamples} held-out samples; {100 * report.ValidationTop1Before:0.##}% before pruning",
            axis, 100, series, markers: true);
        svg.Append("</svg>");
        return svg.ToString();
    }
}
