using SurgeryService.Domain.Onnx.Proto;
using Xunit.Abstractions;

namespace SurgeryService.Domain.Tests.Onnx;

/// <summary>Every supported operator, in the opset versions whose semantics differ, against ONNX Runtime.</summary>
public class OnnxOperatorParityTests(ITestOutputHelper output)
{
    private void Check(OnnxGraphBuilder g, string result, params long[] inputShape)
    {
        var diff = OnnxParity.AssertMatches(g.Bytes(result), inputShape);
        output.WriteLine($"opset {g.Opset}: max abs diff {diff:g3}");
    }

    [Theory]
    [InlineData("NOTSET", 7)]
    [InlineData("NOTSET", 18)]
    [InlineData("SAME_UPPER", 11)]
    [InlineData("SAME_LOWER", 13)]
    [InlineData("VALID", 9)]
    public void ConvWithGroupsStridesDilationsAndPaddingMatchesOnnxRuntime(string autoPad, int opset)
    {
        var g = new OnnxGraphBuilder(opset);
        var x = g.Input("x", 2, 4, 11, 10);
        var attributes = new List<(string, object)> { ("group", 2L), ("strides", new long[] { 2, 1 }), ("dilations", new long[] { 1, 2 }), ("kernel_shape", new long[] { 3, 3 }) };
        if (autoPad == "NOTSET") attributes.Add(("pads", new long[] { 1, 0, 2, 1 }));
        else attributes.Add(("auto_pad", autoPad));
        if (autoPad is "SAME_UPPER" or "SAME_LOWER") attributes.RemoveAt(2); // ONNX Runtime's SAME padding assumes dilation 1
        var y = g.Node("Conv", [x, g.Init("w", [6, 2, 3, 3]), g.Init("b", [6])], attributes.ToArray());
        Check(g, y, 2, 4, 11, 10);
    }

    [Fact]
    public void Conv1dAndConv3dMatchOnnxRuntime()
    {
        var g = new OnnxGraphBuilder(13);
        var x = g.Input("x", 2, 3, 9);
        var y = g.Node("Conv", [x, g.Init("w", [4, 3, 3])], ("pads", new long[] { 1, 1 }));
        Check(g, y, 2, 3, 9);

        var g3 = new OnnxGraphBuilder(13);
        var x3 = g3.Input("x", 1, 2, 5, 5, 5);
        var y3 = g3.Node("Conv", [x3, g3.Init("w", [3, 2, 2, 2, 2]), g3.Init("b", [3])], ("strides", new long[] { 2, 1, 1 }));
        Check(g3, y3, 1, 2, 5, 5, 5);
    }

    [Theory]
    [InlineData(false, 9)]
    [InlineData(true, 13)]
    public void ConvTransposeWithStridesPadsAndOutputPaddingMatchesOnnxRuntime(bool outputShape, int opset)
    {
        var g = new OnnxGraphBuilder(opset);
        var x = g.Input("x", 2, 4, 5, 6);
        (string, object)[] attributes = outputShape
            ? [("strides", new long[] { 2, 2 }), ("output_shape", new long[] { 10, 12 }), ("group", 2L)]
            : [("strides", new long[] { 2, 3 }), ("pads", new long[] { 1, 0, 0, 2 }), ("output_padding", new long[] { 1, 1 }), ("dilations", new long[] { 1, 2 })];
        var weight = outputShape ? g.Init("w", [4, 3, 3, 3]) : g.Init("w", [4, 3, 3, 3]);
        var y = g.Node("ConvTranspose", [x, weight, g.Init("b", [outputShape ? 6 : 3])], attributes);
        Check(g, y, 2, 4, 5, 6);
    }

    [Fact]
    public void ConvTransposeWithSameUpperAutoPadMatchesOnnxRuntime()
    {
        var g = new OnnxGraphBuilder(11);
        var x = g.Input("x", 1, 2, 4, 5);
        var y = g.Node("ConvTranspose", [x, g.Init("w", [2, 3, 3, 3])], ("strides", new long[] { 2, 2 }), ("auto_pad", "SAME_UPPER"));
        Check(g, y, 1, 2, 4, 5);
    }

    [Theory]
    [InlineData(0, 0, 1f, 1f)]
    [InlineData(0, 1, 1f, 1f)]
    [InlineData(1, 1, 0.5f, 2f)]
    [InlineData(1, 0, 2f, 0f)]
    public void GemmWithAlphaBetaAndTranspositionsMatchesOnnxRuntime(int transA, int transB, float alpha, float beta)
    {
        var g = new OnnxGraphBuilder(11);
        var x = g.Input("x", transA == 1 ? 5 : 3, transA == 1 ? 3 : 5);
        var b = g.Init("b", transB == 1 ? [4, 5] : [5, 4]);
        var y = g.Node("Gemm", [x, b, g.Init("c", [4])], ("transA", (long)transA), ("transB", (long)transB), ("alpha", alpha), ("beta", beta));
        Check(g, y, transA == 1 ? 5 : 3, transA == 1 ? 3 : 5);
    }

    [Fact]
    public void MatMulAndBroadcastingArithmeticMatchOnnxRuntime()
    {
        var g = new OnnxGraphBuilder(13);
        var x = g.Input("x", 2, 3, 6);
        var m = g.Node("MatMul", [x, g.Init("w", [6, 4])]);
        var a = g.Node("Add", [m, g.Init("b", [4])]);
        var s = g.Node("Sub", [a, g.Init("s", [3, 1])]);
        var p = g.Node("Mul", [s, g.Init("p", [1, 3, 4])]);
        var d = g.Node("Div", [p, g.Init("d", [4], [1.5f, -2f, 4f, 0.5f])]);
        Check(g, d, 2, 3, 6);
    }

    [Theory]
    [InlineData(7)]
    [InlineData(11)]
    [InlineData(13)]
    public void ActivationsAndClipMatchOnnxRuntime(int opset)
    {
        var g = new OnnxGraphBuilder(opset);
        var x = g.Input("x", 3, 8);
        var r = g.Node("Relu", [x]);
        var l = g.Node("LeakyRelu", [x], ("alpha", 0.2f));
        var s = g.Node("Sigmoid", [l]);
        var t = g.Node("Tanh", [x]);
        var c = opset >= 11
            ? g.Node("Clip", [t, g.Init("lo", [], [-0.3f]), g.Init("hi", [], [0.4f])])
            : g.Node("Clip", [t], ("min", -0.3f), ("max", 0.4f));
        var sum = g.Node("Add", [g.Node("Add", [r, s]), c]);
        Check(g, sum, 3, 8);
    }

    [Theory]
    [InlineData(9, "Softmax")]
    [InlineData(11, "LogSoftmax")]
    [InlineData(13, "Softmax")]
    [InlineData(18, "LogSoftmax")]
    public void SoftmaxFollowsTheAxisSemanticsOfItsOpset(int opset, string op)
    {
        // Before opset 13 axis 1 of a [2,3,4] input normalises over 12 values; from 13 over the 3 of dimension 1.
        var g = new OnnxGraphBuilder(opset);
        var x = g.Input("x", 2, 3, 4);
        Check(g, g.Node(op, [x], ("axis", 1L)), 2, 3, 4);
        var h = new OnnxGraphBuilder(opset);
        var hx = h.Input("x", 2, 3, 4);
        Check(h, h.Node(op, [hx]), 2, 3, 4);
    }

    [Theory]
    [InlineData(10, false)]
    [InlineData(12, true)]
    public void MaxPoolWithPadsStridesCeilAndDilationsMatchesOnnxRuntime(int opset, bool ceil)
    {
        var g = new OnnxGraphBuilder(opset);
        var x = g.Input("x", 2, 3, 9, 10);
        var a = g.Node("MaxPool", [x], ("kernel_shape", new long[] { 3, 2 }), ("strides", new long[] { 2, 2 }), ("pads", new long[] { 1, 0, 1, 1 }), ("ceil_mode", ceil ? 1L : 0L));
        var b = g.Node("MaxPool", [x], ("kernel_shape", new long[] { 2, 2 }), ("auto_pad", "SAME_UPPER"));
        var c = opset >= 12 ? g.Node("MaxPool", [x], ("kernel_shape", new long[] { 2, 2 }), ("dilations", new long[] { 2, 1 })) : b;
        var y = g.Node("Concat", [g.Node("Flatten", [a]), g.Node("Flatten", [b]), g.Node("Flatten", [c])], ("axis", 1L));
        Check(g, y, 2, 3, 9, 10);
    }

    [Theory]
    [InlineData(7, 0)]
    [InlineData(11, 1)]
    [InlineData(11, 0)]
    public void AveragePoolAndGlobalAveragePoolMatchOnnxRuntime(int opset, int countIncludePad)
    {
        var g = new OnnxGraphBuilder(opset);
        var x = g.Input("x", 2, 3, 8, 7);
        var a = g.Node("AveragePool", [x], ("kernel_shape", new long[] { 3, 3 }), ("strides", new long[] { 2, 2 }), ("pads", new long[] { 1, 1, 1, 1 }), ("count_include_pad", (long)countIncludePad));
        var b = g.Node("AveragePool", [x], ("kernel_shape", new long[] { 2, 3 }), ("pads", new long[] { 0, 2, 1, 0 }), ("count_include_pad", (long)countIncludePad));
        var c = g.Node("GlobalAveragePool", [x]);
        var y = g.Node("Concat", [g.Node("Flatten", [a]), g.Node("Flatten", [b]), g.Node("Flatten", [c])], ("axis", 1L));
        Check(g, y, 2, 3, 8, 7);
    }

    [Theory]
    [InlineData(7)]
    [InlineData(9)]
    [InlineData(15)]
    public void BatchNormalizationAndDropoutMatchOnnxRuntimeInEvaluation(int opset)
    {
        var g = new OnnxGraphBuilder(opset);
        var x = g.Input("x", 2, 4, 3, 3);
        var variance = g.Init("var", [4], [0.5f, 1.5f, 2f, 0.25f]);
        var bn = g.Node("BatchNormalization", [x, g.Init("scale", [4]), g.Init("bias", [4]), g.Init("mean", [4]), variance], ("epsilon", 1e-3f));
        var d = opset >= 12 ? g.Node("Dropout", [bn, g.Init("ratio", [], [0.3f])]) : g.Node("Dropout", [bn], ("ratio", 0.3f));
        Check(g, d, 2, 4, 3, 3);
    }

    [Theory]
    [InlineData(9)]
    [InlineData(11)]
    [InlineData(13)]
    [InlineData(18)]
    public void ShapeOperatorsMatchOnnxRuntime(int opset)
    {
        var g = new OnnxGraphBuilder(opset);
        var x = g.Input("x", 2, 3, 4, 5);
        var f = g.Node("Flatten", [x], ("axis", 2L));                                  // [6, 20]
        var r = g.Node("Reshape", [f, g.Longs("shape", 0, -1, 5)]);                      // [6, 4, 5]
        var t = g.Node("Transpose", [r], ("perm", new long[] { 2, 0, 1 }));             // [5, 6, 4]
        var u = opset >= 13 ? g.Node("Unsqueeze", [t, g.Longs("uaxes", 0, -1)]) : g.Node("Unsqueeze", [t], ("axes", new long[] { 0, 4 })); // [1,5,6,4,1]
        var s = opset >= 13 ? g.Node("Squeeze", [u, g.Longs("saxes", 0)]) : g.Node("Squeeze", [u], ("axes", new long[] { 0 }));          // [5,6,4,1]
        var s2 = g.Node("Squeeze", [s]);                                                  // [5,6,4]
        var sl = opset >= 10
            ? g.Node("Slice", [s2, g.Longs("starts", 1, -1), g.Longs("ends", 100, -7), g.Longs("axes", 0, 1), g.Longs("steps", 2, -2)])
            : g.Node("Slice", [s2], ("starts", new long[] { 1, 0 }), ("ends", new long[] { 100, 3 }), ("axes", new long[] { 0, 1 })); // [2,3,4]
        var gathered = g.Node("Gather", [sl, g.Longs("idx", 2, 0, -1)], ("axis", 2L));   // [2,3,3]
        var cat = g.Node("Concat", [gathered, g.Node("Identity", [gathered])], ("axis", -1L)); // [2,3,6]
        var constant = g.Node("Constant", [], ("value", new TensorProto { DataType = 1, Dims = { 1, 1, 6 }, FloatData = { 1, 2, 3, 4, 5, 6 } }));
        var shape = g.Node("Shape", [cat]);
        var ones = g.Node("ConstantOfShape", [shape], ("value", new TensorProto { DataType = 1, Dims = { 1 }, FloatData = { 0.5f } }));
        var mixed = g.Node("Add", [g.Node("Mul", [cat, constant]), ones]);
        var casted = g.Node("Cast", [g.Node("Cast", [mixed], ("to", 7L))], ("to", 1L));  // truncation towards zero
        var padded = opset >= 11
            ? g.Node("Pad", [casted, g.Longs("pads", 0, 1, 2, 0, 0, 1), g.Init("pv", [], [-1f])])
            : g.Node("Pad", [casted], ("pads", new long[] { 0, 1, 2, 0, 0, 1 }), ("value", -1f));
        var reflect = opset >= 11
            ? g.Node("Pad", [padded, g.Longs("rpads", 0, 0, 1, 0, 0, 2)], ("mode", "reflect"))
            : g.Node("Pad", [padded], ("pads", new long[] { 0, 0, 1, 0, 0, 2 }), ("mode", "reflect"));
        var edge = opset >= 11
            ? g.Node("Pad", [reflect, g.Longs("epads", 0, 2, 0, 0, 1, -1)], ("mode", "edge"))
            : g.Node("Pad", [reflect], ("pads", new long[] { 0, 2, 0, 0, 1, 0 }), ("mode", "edge"));
        Check(g, edge, 2, 3, 4, 5);
    }

    [Fact]
    public void ShapeWithStartAndEndAndPadWithAxesMatchOnnxRuntime()
    {
        var g = new OnnxGraphBuilder(18);
        var x = g.Input("x", 2, 3, 4);
        var shape = g.Node("Shape", [x], ("start", 1L), ("end", -1L));  // [3]
        var filled = g.Node("ConstantOfShape", [shape]);                  // zeros [3]
        var added = g.Node("Add", [x, g.Node("Unsqueeze", [filled, g.Longs("a", 1)])]);
        var padded = g.Node("Pad", [added, g.Longs("pads", 1, 2), g.Init("value", [], [3f]), g.Longs("axes", -1)]);
        Check(g, padded, 2, 3, 4);
    }
}
