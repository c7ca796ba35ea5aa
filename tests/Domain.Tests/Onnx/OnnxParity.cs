using SurgeryService.Domain.Onnx;
using TorchSharp;
using static TorchSharp.torch;

namespace SurgeryService.Domain.Tests.Onnx;

/// <summary>Runs a model in ONNX Runtime and as an <see cref="OnnxModule"/> on the same inputs and compares.</summary>
internal static class OnnxParity
{
    public const double Tolerance = 1e-4;

    public static float[] RandomInput(long[] shape, int seed = 7, double scale = 1)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, (int)shape.Aggregate(1L, (p, d) => p * d)).Select(_ => (float)((random.NextDouble() * 2 - 1) * scale)).ToArray();
    }

    public static float[] RunTorch(OnnxModule module, float[] input, long[] shape, out long[] outputShape)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        module.eval();
        var output = module.forward(torch.tensor(input).reshape(shape));
        outputShape = output.shape;
        return output.to_type(ScalarType.Float32).contiguous().data<float>().ToArray();
    }

    /// <summary>The largest absolute difference between the two executions; asserts shapes match and it is within 1e-4.</summary>
    public static double AssertMatches(byte[] model, long[] inputShape, int seed = 7) => AssertMatches(model, model, inputShape, seed);

    /// <summary>As above, with ONNX Runtime running <paramref name="reference"/>: an equivalent graph in a form it supports.</summary>
    public static double AssertMatches(byte[] reference, byte[] model, long[] inputShape, int seed = 7)
    {
        var input = RandomInput(inputShape, seed);
        var (expected, expectedShape) = OnnxRuntimeRunner.Run(reference, input, inputShape);
        using var module = OnnxModule.Create(OnnxModel.Load(model));
        var actual = RunTorch(module, input, inputShape, out var actualShape);
        Assert.Equal(expectedShape, actualShape);
        var diff = MaxAbsDiff(expected, actual);
        Assert.True(diff <= Tolerance, $"max abs difference {diff:g3} exceeds {Tolerance}");
        return diff;
    }

    public static double MaxAbsDiff(float[] a, float[] b)
    {
        Assert.Equal(a.Length, b.Length);
        double max = 0;
        for (var i = 0; i < a.Length; i++) max = Math.Max(max, Math.Abs((double)a[i] - b[i]));
        return max;
    }
}
