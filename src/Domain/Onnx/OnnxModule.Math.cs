using SurgeryService.Domain.Onnx.Proto;
using SurgeryService.Domain.Surgery;
using SurgeryService.Domain.Torch;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace SurgeryService.Domain.Onnx;

// Normalisation, reductions, elementwise arithmetic, comparisons and the shape operators that transformer exports use,
// following the ONNX operator specification.
public sealed partial class OnnxModule
{
    private Tensor? ExecuteMath(NodeProto node, OnnxAttributes a, Tensor?[] x)
    {
        Tensor In(int i) => i < x.Length && x[i] is { } t ? t
            : throw new SurgeryException("Bad ONNX graph", $"node {OnnxModel.NodeLabel(node)} lacks its input {i}", ErrorKind.BadInput);
        Tensor? Opt(int i) => i < x.Length ? x[i] : null;

        switch (node.OpType)
        {
            case "LayerNormalization": return LayerNormalization(In(0), In(1), Opt(2), a);
            case "InstanceNormalization":
            {
                var input = In(0);
                var dims = Enumerable.Range(2, (int)input.dim() - 2).Select(d => (long)d).ToArray();
                var mean = input.mean(dims, keepdim: true);
                var variance = (input - mean).Squared().mean(dims, keepdim: true);
                var channel = new long[] { -1 }.Concat(Repeat(1, dims.Length)).ToArray();
                return ((input - mean) / variance.Plus(a.Float("epsilon", 1e-5f)).sqrt() * In(1).reshape(channel)).Plus(In(2).reshape(channel));
            }
            case "ReduceMean" or "ReduceSum" or "ReduceMax" or "ReduceMin" or "ReduceProd" or "ReduceL2" or "ReduceL1" or "ReduceSumSquare":
                return Reduce(node.OpType, In(0), Opt(1), a);
            case "Pow":
                // ONNX Pow keeps the base's type, where torch would promote an integer base with a float exponent.
                return torch.pow(In(0), In(1).dtype == In(0).dtype ? In(1) : In(1).to_type(In(0).dtype));
            case "Sqrt": return In(0).sqrt();
            case "Reciprocal": return In(0).reciprocal();
            case "Exp": return In(0).exp();
            case "Log": return In(0).log();
            case "Neg": return In(0).neg();
            case "Abs": return In(0).abs();
            case "Erf": return In(0).erf();
            case "Gelu":
            {
                var input = In(0);
                return a.String("approximate", "none") == "tanh"
                    ? input.Times(0.5) * torch.tanh(input.Plus(input.Power(3).Times(0.044715)).Times(Math.Sqrt(2 / Math.PI))).Plus(1)
                    : input.Times(0.5) * input.Times(1 / Math.Sqrt(2)).erf().Plus(1);
            }
            // log(1 + e^x) as max(x, 0) + log(1 + e^-|x|): no overflow, and a finite gradient everywhere.
            case "Softplus": return F.relu(In(0)).Plus(In(0).abs().neg().exp().log1p());
            case "HardSigmoid": return In(0).Times(a.Float("alpha", 0.2f)).Plus(a.Float("beta", 0.5f)).Clamped(0.0, 1.0);
            case "HardSwish": return In(0) * In(0).Over(6).Plus(0.5).Clamped(0.0, 1.0);
            case "Min": return x.Select(t => t!).Aggregate(torch.minimum);
            case "Max": return x.Select(t => t!).Aggregate(torch.maximum);
            case "Equal": return In(0).eq(In(1));
            case "Less": return In(0).lt(In(1));
            case "LessOrEqual": return In(0).le(In(1));
            case "Greater": return In(0).gt(In(1));
            case "GreaterOrEqual": return In(0).ge(In(1));
            case "Not": return In(0).logical_not();
            case "And": return In(0).logical_and(In(1));
            case "Or": return In(0).logical_or(In(1));
            case "Xor": return In(0).logical_xor(In(1));
            case "Where": return torch.where(In(0).to_type(ScalarType.Bool), In(1), In(2));
            case "Expand": return Expand(In(0), Longs(In(1)));
            case "Tile": return In(0).repeat(Longs(In(1)));
            case "Range":
            {
                var start = In(0);
                var type = start.dtype;
                if (torch.is_floating_point(start))
                {
                    using var from = DoubleValue(start).ToScalar();
                    using var to = DoubleValue(In(1)).ToScalar();
                    using var step = DoubleValue(In(2)).ToScalar();
                    return torch.arange(from, to, step, type, start.device);
                }
                using var first = Longs(start)[0].ToScalar();
                using var end = Longs(In(1))[0].ToScalar();
                using var delta = Longs(In(2))[0].ToScalar();
                return torch.arange(first, end, delta, type, start.device);
            }
            case "Trilu":
            {
                var k = Opt(1) is { } kt ? Longs(kt)[0] : 0;
                return a.Int("upper", 1) != 0 ? In(0).triu(k) : In(0).tril(k);
            }
            case "Einsum":
                return torch.einsum(a.String("equation", "").Replace(" ", "", StringComparison.Ordinal), x.Select(t => t!).ToArray());
            default:
                return null;
        }
    }

    private static double DoubleValue(Tensor t)
    {
        using var cpu = t.cpu().to_type(ScalarType.Float64);
        return cpu.reshape(-1)[0].item<double>();
    }

    /// <summary>
    /// LayerNormalization with its optional outputs: Y, Mean and InvStdDev (the statistics over the normalised axes, kept
    /// as dimensions of size 1), computed in float32 (stash_type 1, the only type the importer reads).
    /// </summary>
    private static Tensor[] LayerNormalizationWithStatistics(Tensor input, Tensor scale, Tensor? bias, OnnxAttributes a)
    {
        var axis = Axis(a.Int("axis", -1), input.dim());
        var dims = Enumerable.Range((int)axis, (int)(input.dim() - axis)).Select(d => (long)d).ToArray();
        var mean = input.mean(dims, keepdim: true);
        var centered = input - mean;
        var inverse = centered.Squared().mean(dims, keepdim: true).Plus(a.Float("epsilon", 1e-5f)).rsqrt();
        var y = centered * inverse * scale;
        return [bias is null ? y : y.Plus(bias), mean, inverse];
    }

    private static Tensor LayerNormalization(Tensor input, Tensor scale, Tensor? bias, OnnxAttributes a)
    {
        var axis = Axis(a.Int("axis", -1), input.dim());
        var normalized = input.shape[(int)axis..];
        var y = F.layer_norm(input, normalized, null, null, a.Float("epsilon", 1e-5f));
        y = y * scale;
        return bias is null ? y : y.Plus(bias);
    }

    /// <summary>
    /// The Reduce* operators: axes from the attribute (opsets before 18, before 13 for ReduceSum) or the second input;
    /// no axes reduces everything unless noop_with_empty_axes says to return the input.
    /// </summary>
    private Tensor Reduce(string op, Tensor input, Tensor? axesInput, OnnxAttributes a)
    {
        var axesFromInput = op == "ReduceSum" ? _opset >= 13 : _opset >= 18;
        var axes = axesFromInput ? (axesInput is null ? null : Longs(axesInput)) : a.Ints("axes");
        var keep = a.Int("keepdims", 1) != 0;
        if (axes is null or { Length: 0 })
        {
            if (a.Int("noop_with_empty_axes", 0) != 0) return input.alias();
            axes = Enumerable.Range(0, (int)input.dim()).Select(d => (long)d).ToArray();
        }
        var dims = axes.Select(ax => Axis(ax, input.dim())).Distinct().OrderDescending().ToArray();
        if (dims.Length == 0) return input.alias(); // a scalar input
        switch (op)
        {
            case "ReduceMean": return input.mean(dims, keep);
            case "ReduceSum": return input.sum(dims, keep);
            case "ReduceMax": return input.amax(dims, keep);
            case "ReduceMin": return input.amin(dims, keep);
            case "ReduceL1": return input.abs().sum(dims, keep);
            case "ReduceL2": return input.Squared().sum(dims, keep).sqrt();
            case "ReduceSumSquare": return input.Squared().sum(dims, keep);
            default:
            {
                // prod reduces one dimension at a time; from the last so the earlier indices stay valid.
                var result = input;
                foreach (var d in dims) result = result.prod(d, keep);
                return result;
            }
        }
    }

    /// <summary>ONNX Expand broadcasts both ways: a target dimension of 1 keeps the input's size there.</summary>
    private static Tensor Expand(Tensor input, long[] target)
    {
        var rank = Math.Max(input.dim(), target.Length);
        var inputShape = Repeat(1, (int)(rank - input.dim())).Concat(input.shape).ToArray();
        var targetShape = Repeat(1, (int)(rank - target.Length)).Concat(target).ToArray();
        var shape = new long[rank];
        for (var i = 0; i < rank; i++)
        {
            var (s, t) = (inputShape[i], targetShape[i]);
            shape[i] = s == 1 ? t : t == 1 || t == s ? s
                : throw new SurgeryException("Bad ONNX graph",
                    $"Expand cannot broadcast the shape [{string.Join(", ", input.shape)}] to [{string.Join(", ", target)}]", ErrorKind.BadInput);
        }
        return input.reshape(inputShape).expand(shape);
    }

    private Tensor[] Split(NodeProto node, OnnxAttributes a, Tensor input, Tensor? splitInput)
    {
        var axis = Axis(a.Int("axis", 0), input.dim());
        var size = input.shape[axis];
        var sizes = _opset >= 13 ? (splitInput is null ? null : Longs(splitInput)) : a.Ints("split");
        if (sizes is null or { Length: 0 })
        {
            // Equal parts, one per output (or num_outputs from opset 18; the last part may be smaller).
            var parts = a.Has("num_outputs") ? a.Int("num_outputs", 1) : node.Output.Count;
            var each = (size + parts - 1) / parts;
            sizes = Enumerable.Range(0, (int)parts).Select(i => Math.Max(0, Math.Min(each, size - i * each))).ToArray();
        }
        return input.split(sizes, axis);
    }
}
