using Xunit.Abstractions;

namespace SurgeryService.Domain.Tests.Onnx;

/// <summary>LSTM, GRU and RNN against ONNX Runtime: every direction, initial states, layout, peepholes, both GRU resets.</summary>
public class OnnxRecurrentParityTests(ITestOutputHelper output)
{
    private const long Steps = 5, Batch = 2, Features = 3, Hidden = 4;

    /// <summary>
    /// A graph with one recurrent node whose outputs (Y, Y_h and for LSTM Y_c) are flattened side by side, so the one
    /// compared output covers all of them. The initial states are computed from the input, as exporters slice them.
    /// A batch-first <paramref name="reference"/> graph computes the same with layout 0 between Transposes (ONNX Runtime
    /// runs recurrent nodes only in layout 0).
    /// </summary>
    private static byte[] Graph(string op, string direction, bool initialStates, bool batchFirst, (string, object)[]? extra = null, bool reference = false)
    {
        extra ??= [];
        var g = new OnnxGraphBuilder(batchFirst ? 14 : 13);
        var input = g.Input("x", batchFirst ? [Batch, Steps, Features] : [Steps, Batch, Features]);
        var layout = batchFirst && !reference;
        var x = batchFirst && reference ? g.Node("Transpose", [input], ("perm", new long[] { 1, 0, 2 })) : input;
        var directions = direction == "bidirectional" ? 2 : 1;
        var gates = op switch { "LSTM" => 4, "GRU" => 3, _ => 1 };
        var inputs = new List<string> { x, g.Init("W", [directions, gates * Hidden, Features]), g.Init("R", [directions, gates * Hidden, Hidden]), g.Init("B", [directions, 2 * gates * Hidden]) };
        if (initialStates)
        {
            // [directions, batch, hidden] (or [batch, directions, hidden]) from a projection of the first step.
            long[] stateShape = layout ? [Batch, directions, Hidden] : [directions, Batch, Hidden];
            var first = g.Node("ReduceMean", [x], ("axes", new long[] { layout ? 1 : 0 }), ("keepdims", 0L)); // [batch, features]
            var state = g.Node("Tanh", [g.Node("MatMul", [first, g.Init("Hp", [Features, directions * Hidden])])]);
            var h0 = g.Node("Reshape", [layout ? state : g.Node("Transpose", [g.Node("Reshape", [state, g.Longs("s0", Batch, directions, Hidden)])], ("perm", new long[] { 1, 0, 2 })), g.Longs("hs", stateShape)]);
            inputs.AddRange(["", h0]);
            if (op == "LSTM") inputs.Add(g.Node("Mul", [h0, g.Init("c_scale", [Hidden])]));
        }
        if (op == "LSTM" && extra.Any(e => e.Item1 == "peepholes"))
        {
            while (inputs.Count < 7) inputs.Add("");
            inputs.Add(g.Init("P", [directions, 3 * Hidden]));
            extra = extra.Where(e => e.Item1 != "peepholes").ToArray();
        }
        var attributes = new List<(string, object)> { ("hidden_size", Hidden), ("direction", direction) };
        if (layout) attributes.Add(("layout", 1L));
        attributes.AddRange(extra);
        var outputs = g.NodeWithOutputs(op, inputs.ToArray(), op == "LSTM" ? 3 : 2, "rnn", attributes.ToArray());
        if (batchFirst && reference)
        {
            outputs = outputs.Select((o, i) => g.Node("Transpose", [o], ("perm", i == 0 ? new long[] { 2, 0, 1, 3 } : [1, 0, 2]))).ToArray();
        }
        var flat = outputs.Select(o => g.Node("Reshape", [o, g.Longs($"flat_{o}", 1, -1)])).ToArray();
        return g.Bytes(g.Node("Concat", flat, ("axis", 1L)));
    }

    [Theory]
    [InlineData("LSTM", "forward", false, false)]
    [InlineData("LSTM", "reverse", true, false)]
    [InlineData("LSTM", "bidirectional", true, true)]
    [InlineData("GRU", "forward", true, false)]
    [InlineData("GRU", "reverse", false, false)]
    [InlineData("GRU", "bidirectional", false, true)]
    [InlineData("RNN", "forward", false, true)]
    [InlineData("RNN", "reverse", true, false)]
    [InlineData("RNN", "bidirectional", true, false)]
    public void RecurrentNodesMatchOnnxRuntime(string op, string direction, bool initialStates, bool batchFirst)
    {
        long[] shape = batchFirst ? [Batch, Steps, Features] : [Steps, Batch, Features];
        var reference = Graph(op, direction, initialStates, batchFirst, reference: true);
        output.WriteLine($"max abs diff {OnnxParity.AssertMatches(reference, Graph(op, direction, initialStates, batchFirst), shape):g3}");
    }

    [Fact]
    public void GruWithResetAfterTheLinearMapAsPyTorchExportsItMatchesOnnxRuntime()
    {
        var bytes = Graph("GRU", "bidirectional", true, false, [("linear_before_reset", 1L)]);
        output.WriteLine($"max abs diff {OnnxParity.AssertMatches(bytes, [Steps, Batch, Features]):g3}");
    }

    [Fact]
    public void LstmWithPeepholesMatchesOnnxRuntime()
    {
        var bytes = Graph("LSTM", "bidirectional", true, false, [("peepholes", 1L)]);
        output.WriteLine($"max abs diff {OnnxParity.AssertMatches(bytes, [Steps, Batch, Features]):g3}");
    }

    [Theory]
    [InlineData("LSTM")]
    [InlineData("GRU")]
    [InlineData("RNN")]
    public void GradientsOfRecurrentNodesMatchFiniteDifferences(string op) =>
        OnnxGradients.AssertMatchFiniteDifferences(Graph(op, "bidirectional", true, false, op == "GRU" ? [("linear_before_reset", 1L)] : []), [Steps, Batch, Features], output);
}
