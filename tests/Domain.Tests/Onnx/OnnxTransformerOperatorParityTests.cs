using Xunit.Abstractions;

namespace SurgeryService.Domain.Tests.Onnx;

/// <summary>
/// The operators that transformer, LayerNorm/GELU and attention exports use, against ONNX Runtime: broadcasting,
/// negative axes and the opset versions whose semantics differ.
/// </summary>
public class OnnxTransformerOperatorParityTests(ITestOutputHelper output)
{
    private void Check(OnnxGraphBuilder g, string result, params long[] inputShape)
    {
        var diff = OnnxParity.AssertMatches(g.Bytes(result), inputShape);
        output.WriteLine($"opset {g.Opset}: max abs diff {diff:g3}");
    }

    [Theory]
    [InlineData(-1, true)]
    [InlineData(-2, false)]
    [InlineData(1, true)]
    public void LayerNormalizationOverTrailingAxesWithBroadcastScaleMatchesOnnxRuntime(long axis, bool withBias)
    {
        var g = new OnnxGraphBuilder(17);
        var x = g.Input("x", 2, 3, 4);
        long[] normalized = axis is -2 or 1 ? [3, 4] : [4];
        long[] scaleShape = axis == -2 ? [1, 4] : normalized; // a scale that broadcasts over the normalised block
        string[] inputs = withBias ? [x, g.Init("scale", scaleShape), g.Init("bias", normalized)] : [x, g.Init("scale", scaleShape)];
        Check(g, g.Node("LayerNormalization", inputs, ("axis", axis), ("epsilon", 1e-3f)), 2, 3, 4);
    }

    [Theory]
    [InlineData(-1)]
    [InlineData(1)]
    public void LayerNormalizationsMeanAndInverseStandardDeviationOutputsMatchOnnxRuntime(long axis)
    {
        var g = new OnnxGraphBuilder(17);
        var x = g.Input("x", 2, 3, 4);
        long[] normalized = axis == 1 ? [3, 4] : [4];
        var outputs = g.NodeWithOutputs("LayerNormalization", [x, g.Init("scale", normalized), g.Init("bias", normalized)], 3, "ln",
            ("axis", axis), ("epsilon", 1e-3f));
        // Y plus Mean times InvStdDev, each kept as [2, 1, 1] or [2, 3, 1]: every output reaches the result.
        Check(g, g.Node("Add", [outputs[0], g.Node("Mul", [outputs[1], outputs[2]])]), 2, 3, 4);
    }

    [Fact]
    public void InstanceNormalizationMatchesOnnxRuntime()
    {
        var g = new OnnxGraphBuilder(13);
        var x = g.Input("x", 2, 3, 4, 5);
        Check(g, g.Node("InstanceNormalization", [x, g.Init("scale", [3]), g.Init("bias", [3])], ("epsilon", 1e-4f)), 2, 3, 4, 5);
    }

    [Theory]
    [InlineData(11)]
    [InlineData(13)]
    [InlineData(17)]
    [InlineData(18)]
    public void ReductionsWithAxesKeepdimsAndNegativeAxesMatchOnnxRuntime(int opset)
    {
        var g = new OnnxGraphBuilder(opset);
        var x = g.Input("x", 2, 3, 4);
        var positive = g.Node("Add", [g.Node("Abs", [x]), g.Init("one", [], [0.5f])]);
        var counter = 0;
        string Reduce(string op, string input, long[]? axes, long keepdims)
        {
            var axesFromInput = op == "ReduceSum" ? opset >= 13 : opset >= 18;
            var attributes = new List<(string, object)> { ("keepdims", keepdims) };
            if (axes is null) return g.Node(op, [input], attributes.ToArray());
            if (axesFromInput) return g.Node(op, [input, g.Longs($"axes{counter++}", axes)], attributes.ToArray());
            attributes.Add(("axes", axes));
            return g.Node(op, [input], attributes.ToArray());
        }
        // Each reduction leaves [2, 1, 4] or [2, 4]; all are brought to [2, 4] and added.
        var parts = new[]
        {
            Reduce("ReduceMean", x, [-2], 0),
            Reduce("ReduceSum", x, [1], 0),
            Reduce("ReduceMax", x, [-2], 0),
            Reduce("ReduceMin", x, [1], 0),
            Reduce("ReduceProd", positive, [1], 0),
            Reduce("ReduceL2", x, [-2], 0),
            Reduce("ReduceL1", x, [1], 0),
            Reduce("ReduceSumSquare", x, [1], 0),
        };
        var keep = Reduce("ReduceMean", x, [0, -1], 1);   // [1, 3, 1]
        var all = Reduce("ReduceMax", x, null, 1);         // [1, 1, 1]: no axes reduces everything
        var sum = parts.Aggregate((l, r) => g.Node("Add", [l, r]));
        var unsqueezed = opset >= 13 ? g.Node("Unsqueeze", [sum, g.Longs("u", 1)]) : g.Node("Unsqueeze", [sum], ("axes", new long[] { 1 }));
        var result = g.Node("Add", [g.Node("Add", [unsqueezed, keep]), all]);
        Check(g, result, 2, 3, 4);
    }

    [Fact]
    public void ReduceWithEmptyAxesAndNoopReturnsTheInputLikeOnnxRuntime()
    {
        var g = new OnnxGraphBuilder(18);
        var x = g.Input("x", 2, 3);
        var noop = g.Node("ReduceMean", [x], ("noop_with_empty_axes", 1L));
        var sumNoop = g.Node("ReduceSum", [noop, g.Longs("empty")], ("noop_with_empty_axes", 1L));
        Check(g, sumNoop, 2, 3);
    }

    [Theory]
    [InlineData(13)]
    [InlineData(20)]
    public void ElementwiseMathWithBroadcastingMatchesOnnxRuntime(int opset)
    {
        var g = new OnnxGraphBuilder(opset);
        var x = g.Input("x", 2, 3, 4);
        var positive = g.Node("Add", [g.Node("Abs", [x]), g.Init("eps", [1], [0.1f])]);
        var pow = g.Node("Pow", [positive, g.Init("exponent", [4], [2f, 0.5f, 3f, -1f])]);
        var sqrt = g.Node("Sqrt", [positive]);
        var reciprocal = g.Node("Reciprocal", [positive]);
        var exp = g.Node("Exp", [x]);
        var log = g.Node("Log", [positive]);
        var neg = g.Node("Neg", [x]);
        var erf = g.Node("Erf", [x]);
        var softplus = g.Node("Softplus", [x]);
        var hardSigmoid = g.Node("HardSigmoid", [g.Node("Mul", [x, g.Init("three", [], [3f])])], ("alpha", 0.3f), ("beta", 0.4f));
        var hardSwish = opset >= 14 ? g.Node("HardSwish", [g.Node("Mul", [x, g.Init("four", [], [4f])])]) : x;
        var min = g.Node("Min", [x, g.Init("lo", [3, 1]), g.Init("lo2", [4])]);
        var max = g.Node("Max", [x, g.Init("hi", [1, 4])]);
        var terms = new List<string> { pow, sqrt, reciprocal, exp, log, neg, erf, softplus, hardSigmoid, hardSwish, min, max };
        if (opset >= 20)
        {
            terms.Add(g.Node("Gelu", [x]));
            terms.Add(g.Node("Gelu", [x], ("approximate", "tanh")));
        }
        var sum = g.Node("Concat", terms.ToArray(), ("axis", -1L));
        Check(g, sum, 2, 3, 4);
    }

    [Theory]
    [InlineData(13)]
    [InlineData(17)]
    public void ComparisonLogicAndWhereMatchOnnxRuntime(int opset)
    {
        var g = new OnnxGraphBuilder(opset);
        var x = g.Input("x", 3, 4);
        var less = g.Node("Less", [x, g.Init("t", [4], [0f, 0.5f, -0.5f, 0.2f])]);
        var greater = g.Node("Greater", [x, g.Init("u", [3, 1], [0.1f, -0.1f, 0.3f])]);
        var integers = g.Node("Cast", [g.Node("Mul", [x, g.Init("two", [], [2f])])], ("to", 7L));
        var equal = g.Node("Equal", [integers, g.Node("Cast", [g.Init("zero", [], [0f])], ("to", 7L))]);
        var condition = g.Node("Or", [g.Node("And", [less, g.Node("Not", [greater])]), equal]);
        var picked = g.Node("Where", [condition, x, g.Init("fill", [1, 4])]);
        var parts = new[] { picked, g.Node("Cast", [condition], ("to", 1L)), g.Node("Cast", [g.Node("LessOrEqual", [x, g.Init("w", [1], [0f])])], ("to", 1L)) };
        Check(g, g.Node("Concat", parts, ("axis", 1L)), 3, 4);
    }

    [Fact]
    public void ExpandBroadcastsBothWaysLikeOnnxRuntime()
    {
        var g = new OnnxGraphBuilder(13);
        var x = g.Input("x", 3, 1);
        var shape = g.Node("Concat", [g.Longs("lead", 2), g.Node("Shape", [x]), g.Longs("last", 4)], ("axis", 0L)); // [2, 3, 1, 4]
        var expanded = g.Node("Expand", [x, shape]);                                                   // [2, 3, 3, 4]
        var token = g.Node("Expand", [g.Init("cls", [1, 1, 4]), g.Longs("to", 3, 1, 1)]);              // [3, 1, 4]: the ViT class-token form
        Check(g, g.Node("Add", [expanded, token]), 3, 1);
    }

    [Theory]
    [InlineData(11)]
    [InlineData(13)]
    [InlineData(18)]
    public void SplitByAttributeInputAndEqualPartsMatchesOnnxRuntime(int opset)
    {
        var g = new OnnxGraphBuilder(opset);
        var x = g.Input("x", 2, 7, 3);
        var sized = opset >= 13
            ? g.NodeWithOutputs("Split", [x, g.Longs("split", 2, 4, 1)], 3, null, ("axis", -2L))
            : g.NodeWithOutputs("Split", [x], 3, null, ("axis", -2L), ("split", new long[] { 2, 4, 1 }));
        var equal = opset >= 18
            ? g.NodeWithOutputs("Split", [x], 3, null, ("axis", 1L), ("num_outputs", 3L)) // 3, 3, 1
            : g.NodeWithOutputs("Split", [x], 3, null, ("axis", 2L));
        var joined = g.Node("Concat", [sized[2], sized[0], sized[1]], ("axis", 1L));
        var other = g.Node("Concat", [equal[1], equal[0], equal[2]], ("axis", opset >= 18 ? 1L : 2L));
        Check(g, g.Node("Concat", [g.Node("Flatten", [joined]), g.Node("Flatten", [other])], ("axis", 1L)), 2, 7, 3);
    }

    [Fact]
    public void TileRangeAndTriluMatchOnnxRuntime()
    {
        var g = new OnnxGraphBuilder(14);
        var x = g.Input("x", 2, 4, 4);
        var tiled = g.Node("Tile", [x, g.Longs("repeats", 1, 2, 1)]);                                   // [2, 8, 4]
        var upper = g.Node("Trilu", [tiled, g.Longs("k", 1)]);
        var lower = g.Node("Trilu", [tiled, g.Longs("k2", -2)], ("upper", 0L));
        var plain = g.Node("Trilu", [tiled]);
        var floats = g.Node("Range", [g.Init("start", [], [0.5f]), g.Init("limit", [], [2.5f]), g.Init("delta", [], [0.5f])]); // 4 values
        var count = g.Node("Gather", [g.Node("Shape", [x]), g.Longs("one", 1)], ("axis", 0L)); // a scalar-like [1]
        var integers = g.Node("Cast", [g.Node("Range", [Scalar(g, "s", 0), g.Node("Squeeze", [count, g.Longs("ax", 0)]), Scalar(g, "d", 1)])], ("to", 1L));
        var sum = g.Node("Add", [g.Node("Add", [g.Node("Add", [upper, lower]), plain]), g.Node("Mul", [floats, integers])]);
        Check(g, sum, 2, 4, 4);
    }

    [Fact]
    public void EinsumInTheFormsAttentionUsesMatchesOnnxRuntime()
    {
        var g = new OnnxGraphBuilder(13);
        var x = g.Input("x", 2, 3, 5, 4);                                                    // [batch, heads, tokens, dim]
        var scores = g.Node("Einsum", [x, x], ("equation", "bhid,bhjd->bhij"));             // [2, 3, 5, 5]
        var weights = g.Node("Softmax", [scores], ("axis", -1L));
        var context = g.Node("Einsum", [weights, x], ("equation", "bhij, bhjd -> bhid"));  // [2, 3, 5, 4]
        var projected = g.Node("Einsum", [context, g.Init("w", [4, 6])], ("equation", "...d,de->...e"));
        var merged = g.Node("Einsum", [projected], ("equation", "bhte->bthe"));
        Check(g, merged, 2, 3, 5, 4);
    }

    private static string Scalar(OnnxGraphBuilder g, string name, long value) =>
        g.AddInitializer(new Domain.Onnx.Proto.TensorProto { Name = name, DataType = (int)Domain.Onnx.OnnxDataType.Int64, Int64Data = { value } });
}
