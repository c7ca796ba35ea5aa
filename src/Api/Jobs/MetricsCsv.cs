using System.Globalization;
using System.Text;

namespace SurgeryService.Api.Jobs;

/// <summary>The metrics series as CSV: one row per iteration, one <c>kept_LAYER</c> column per prunable layer.</summary>
public static class MetricsCsv
{
    public static string Write(IReadOnlyList<string> layers, IReadOnlyList<MetricPoint> points)
    {
        var csv = new StringBuilder("iteration,loss,learning_rate,kept,total,sparsity");
        foreach (var layer in layers) csv.Append(",kept_").Append(layer.Replace(',', '_'));
        csv.Append('\n');
        foreach (var p in points)
        {
            csv.Append(CultureInfo.InvariantCulture, $"{p.Iteration},{p.Loss:R},{p.LearningRate:R},{p.Kept},{p.Total},{p.Sparsity:R}");
            foreach (var kept in p.LayerKept) csv.Append(',').Append(kept);
            csv.Append('\n');
        }
        return csv.ToString();
    }
}
