using Xunit.Abstractions;

namespace SurgeryService.Domain.Tests.Onnx;

/// <summary>The operators that carry gradients train: autograd through each agrees with finite differences.</summary>
public class OnnxOperatorGradientTests(ITestOutputHelper output)
{
    [Fact]
    public void NormalisationGradientsMatchFiniteDifferences()
    {
        var g = new OnnxGraphBuilder(17);
        var x = g.Input("x", 2, 3, 4);
        var layer = g.Node("LayerNormalization", [x, g.Init("scale", [4]), g.Init("bias", [4])], ("axis", -1L));
        var instance = g.Node("InstanceNormalization", [g.Node("Mul", [layer, g.Init("s", [3, 1])]), g.Init("gamma", [3]), g.Init("beta", [3])]);
        OnnxGradients.AssertMatchFiniteDifferences(g.Bytes(g.Node("Transpose", [instance], ("perm", new long[] { 1, 0, 2 }))), [2, 3, 4], output);
    }

    [Fact]
    public void LayerNormalizationStatisticsOutputsCarryGradients()
    {
        var g = new OnnxGraphBuilder(17);
        var x = g.Input("x", 2, 3, 4);
        var outputs = g.NodeWithOutputs("LayerNormalization", [g.Node("Mul", [x, g.Init("w", [4])]), g.Init("scale", [4])], 3, "ln", ("axis", -1L));
        OnnxGradients.AssertMatchFiniteDifferences(g.Bytes(g.Node("Add", [outputs[0], g.Node("Mul", [outputs[1], outputs[2]])])), [2, 3, 4], output);
    }

    [Fact]
    public void ReductionGradientsMatchFiniteDifferences()
    {
        var g = new OnnxGraphBuilder(18);
        var x = g.Input("x", 2, 3, 4);
        var w = g.Node("Mul", [x, g.Init("w", [4])]);
        var positive = g.Node("Add", [g.Node("Mul", [w, w]), g.Init("one", [], [0.5f])]);
        string Reduce(string op, string input, long axis) => g.Node(op, [input, g.Longs($"a{op}{input}", axis)], ("keepdims", 0L));
        var parts = new[] { Reduce("ReduceMean", w, -1), Reduce("ReduceSum", w, 2), Reduce("ReduceMax", w, -1), Reduce("ReduceMin", w, 2),
            Reduce("ReduceProd", positive, -1), Reduce("ReduceL2", w, 2), Reduce("ReduceSumSquare", w, -1) };
        OnnxGradients.AssertMatchFiniteDifferences(g.Bytes(g.Node("Concat", parts, ("axis", 1L))), [2, 3, 4], output);
    }

    [Fact]
    public void ElementwiseGradientsMatchFiniteDifferences()
    {
        var g = new OnnxGraphBuilder(20);
        var x = g.Input("x", 3, 4);
        var w = g.Node("Mul", [x, g.Init("w", [4])]);
        var positive = g.Node("Add", [g.Node("Abs", [w]), g.Init("eps", [], [0.5f])]);
        var terms = new[]
        {
            g.Node("Pow", [positive, g.Init("p", [4], [2f, 0.5f, 3f, -1f])]), g.Node("Sqrt", [positive]), g.Node("Reciprocal", [positive]),
            g.Node("Exp", [w]), g.Node("Log", [positive]), g.Node("Neg", [w]), g.Node("Erf", [w]), g.Node("Gelu", [w]),
            g.Node("Gelu", [w], ("approximate", "tanh")), g.Node("Softplus", [w]), g.Node("HardSigmoid", [w]), g.Node("HardSwish", [w]),
            g.Node("Min", [w, g.Init("lo", [3, 1])]), g.Node("Max", [w, g.Init("hi", [4])]),
            g.Node("Where", [g.Node("Greater", [w, g.Init("t", [], [0f])]), w, g.Node("Mul", [w, g.Init("slope", [4])])]),
        };
        OnnxGradients.AssertMatchFiniteDifferences(g.Bytes(g.Node("Concat", terms, ("axis", -1L))), [3, 4], output);
    }

    [Fact]
    public void ShapeAndEinsumGradientsMatchFiniteDifferences()
    {
        var g = new OnnxGraphBuilder(18);
        var x = g.Input("x", 2, 6);
        var parts = g.NodeWithOutputs("Split", [x, g.Longs("split", 2, 4)], 2, null, ("axis", -1L));
        var expanded = g.Node("Expand", [g.Node("Unsqueeze", [parts[0], g.Longs("u", 1)]), g.Longs("shape", 1, 3, 1)]); // [2, 3, 2]
        var tiled = g.Node("Tile", [expanded, g.Longs("r", 1, 1, 2)]);                                                  // [2, 3, 4]
        var keys = g.Node("Einsum", [tiled, g.Init("k", [4, 4])], ("equation", "btd,de->bte"));
        var scores = g.Node("Einsum", [tiled, keys], ("equation", "bid,bjd->bij"));
        var masked = g.Node("Add", [scores, g.Node("Trilu", [g.Init("bias", [3, 3])], ("upper", 1L))]);
        var attention = g.Node("Einsum", [g.Node("Softmax", [masked], ("axis", -1L)), g.Node("Unsqueeze", [parts[1], g.Longs("u2", 1)])], ("equation", "bij,bkd->bid"));
        OnnxGradients.AssertMatchFiniteDifferences(g.Bytes(attention), [2, 6], output);
    }
}
