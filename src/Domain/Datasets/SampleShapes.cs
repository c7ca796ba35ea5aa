using System.Globalization;

namespace SurgeryService.Domain.Datasets;

/// <summary>
/// Whether a data set's samples can feed a model's input, and how: the one check that both the Api (when a job is
/// submitted) and the worker (when it prepares the inputs) use, so a job the Api accepts does not fail on its shapes.
/// A model dimension of 0 or less is symbolic (any size).
/// </summary>
public static class SampleShapes
{
    /// <summary>The sample shape after <paramref name="layout"/> (the data sets' own layout is channels first).</summary>
    public static long[] LaidOut(IReadOnlyList<long> sampleShape, InputLayout layout) =>
        layout == InputLayout.Nhwc && sampleShape.Count >= 2 ? [.. sampleShape.Skip(1), sampleShape[0]] : [.. sampleShape];

    /// <summary>
    /// The sample shape the model gets: the samples' own when they match <paramref name="modelShape"/> (symbolic
    /// dimensions match any size), else the model's shape with at most one symbolic dimension resolved when the value
    /// counts agree; null when the samples cannot fit. A model that states no shape takes the samples as they are.
    /// </summary>
    public static long[]? Target(IReadOnlyList<long> sampleShape, IReadOnlyList<long> modelShape)
    {
        if (modelShape.Count == 0) return [.. sampleShape];
        if (sampleShape.Count == modelShape.Count && sampleShape.Zip(modelShape).All(p => p.Second <= 0 || p.First == p.Second))
        {
            return [.. sampleShape];
        }
        var values = sampleShape.Aggregate(1L, (p, d) => p * d);
        var known = modelShape.Where(d => d > 0).Aggregate(1L, (p, d) => p * d);
        return modelShape.Count(d => d <= 0) switch
        {
            0 when known == values => [.. modelShape],
            1 when values % known == 0 => [.. modelShape.Select(d => d <= 0 ? values / known : d)],
            _ => null,
        };
    }

    /// <summary>Why samples of <paramref name="sampleShape"/> (in <paramref name="layout"/>) cannot feed the model, or null when they can.</summary>
    public static string? Problem(IReadOnlyList<long> sampleShape, InputLayout layout, IReadOnlyList<long> modelShape) =>
        Target(LaidOut(sampleShape, layout), modelShape) is null ? Describe(sampleShape, layout, modelShape) : null;

    internal static string Describe(IReadOnlyList<long> sampleShape, InputLayout layout, IReadOnlyList<long> modelShape) =>
        $"the data set's samples have shape [{string.Join(", ", sampleShape)}]" +
        (layout == InputLayout.Nhwc ? $" ([{string.Join(", ", LaidOut(sampleShape, layout))}] channels last)" : "") +
        $" ({sampleShape.Aggregate(1L, (p, d) => p * d)} values) but the model's input takes " +
        $"[{string.Join(", ", modelShape.Select(d => d > 0 ? d.ToString(CultureInfo.InvariantCulture) : "?"))}]";
}
