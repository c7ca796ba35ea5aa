using System.Runtime.InteropServices;
using System.Text.Json;
using Google.Protobuf;
using SurgeryService.Domain.Onnx;
using SurgeryService.Domain.Onnx.Proto;

namespace SurgeryService.Domain.Deployment;

/// <summary>
/// The element type of quantized activations. Weights are always symmetric int8. ONNX Runtime's quantization guide
/// names S8S8 in QDQ form its default, and U8S8 the form its x64 kernels were first tuned for; both are exact for a
/// pruned zero and for ReLU's clamp (the zero point sits at the type's minimum for a range that starts at 0).
/// </summary>
public enum ActivationType
{
    Int8,
    UInt8,
}

/// <summary>An activation's observed range on the calibration samples.</summary>
public sealed record TensorRange(float Min, float Max);

/// <summary>How a quantized model was made, written into its metadata (<see cref="Int8Quantizer.MetadataKey"/>).</summary>
public sealed record QuantizationInfo(string Format, string Weights, string Activations, string Calibration, int CalibrationSamples);

/// <summary>One quantized weight: its initializer, the channel axis of its scales, and how many of its values are zero.</summary>
public sealed record QuantizedWeight(string Initializer, int Axis, int Channels, long Count, long Zeros);

/// <summary>
/// The quantized model: <see cref="Dense"/> with every initializer in place, <see cref="Sparse"/> with the int8 weights
/// that are smaller as ONNX sparse initializers (int8 values, int64 linear indices) moved to graph.sparse_initializer.
/// </summary>
public sealed record Int8Model(byte[] Dense, byte[] Sparse, IReadOnlyList<QuantizedWeight> Weights, IReadOnlyList<string> SparseInitializers);

/// <summary>
/// A float model prepared for quantization: constant Transposes of weights folded (so that MatMul sees its weight as an
/// initializer), the activations whose ranges calibration must observe, and <see cref="CalibrationModel"/>, the same
/// graph with those activations added as graph outputs so that one run of a runtime reports them all.
/// </summary>
public sealed class Int8Plan
{
    internal Int8Plan(ModelProto prepared, IReadOnlyList<string> calibrated)
    {
        Prepared = prepared;
        CalibratedTensors = calibrated;
    }

    internal ModelProto Prepared { get; }

    /// <summary>Activation tensors to calibrate, in graph order; the model's input first when it is quantized.</summary>
    public IReadOnlyList<string> CalibratedTensors { get; }

    public byte[] CalibrationModel()
    {
        var proto = Prepared.Clone();
        var present = proto.Graph.Output.Select(o => o.Name).ToHashSet(StringComparer.Ordinal);
        foreach (var name in CalibratedTensors.Where(n => !present.Contains(n)))
        {
            proto.Graph.Output.Add(new ValueInfoProto
            {
                Name = name,
                Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)OnnxDataType.Float } },
            });
        }
        return proto.ToByteArray();
    }
}

/// <summary>
/// Static int8 quantization of a float ONNX model into QDQ form, the representation ONNX Runtime's CPU provider fuses
/// into integer kernels (QLinearConv, QGemm, QLinearMatMul): QuantizeLinear/DequantizeLinear pairs on the activations
/// around Conv, MatMul and Gemm, and DequantizeLinear on their int8 weights.
/// <list type="bullet">
/// <item>Weights: symmetric int8 in [-127, 127], one scale per output channel (DequantizeLinear's axis, opset 13), zero
/// point 0, so a pruned weight is exactly 0 in the file and after dequantization.</item>
/// <item>Biases of Conv and Gemm: int32 with scale input_scale × weight_scale[c] and zero point 0, the form ONNX
/// Runtime's QDQ selectors require to fuse the node (a float bias leaves the node in float).</item>
/// <item>Activations: asymmetric, from calibrated min/max ranges widened to include 0 so that 0 is exact. A Conv, Gemm
/// or MatMul output read only by a Relu is quantized with the Relu's range (minimum 0) and the Relu is dropped: the
/// QuantizeLinear clamps at the zero point, which is ReLU. Tensors that pass through MaxPool, Reshape, Flatten,
/// Transpose, Squeeze, Unsqueeze or Identity share the scale of their input, so the runtime runs those in int8.</item>
/// </list>
/// </summary>
public static class Int8Quantizer
{
    public const string MetadataKey = "surgery.quantization";
    public const int MinOpset = 13;

    private static readonly HashSet<string> PassThrough = new(StringComparer.Ordinal)
    {
        "MaxPool", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Identity",
    };

    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    /// <summary>Prepares <paramref name="model"/> (a float ONNX model, dense or with sparse initializers) for calibration.</summary>
    public static Int8Plan Plan(byte[] model)
    {
        ModelProto proto;
        try
        {
            proto = ModelProto.Parser.ParseFrom(model);
        }
        catch (InvalidProtocolBufferException)
        {
            throw new SurgeryException("Not an ONNX model", "the model to quantize is not an ONNX model");
        }
        var opset = proto.OpsetImport.Where(o => !o.HasDomain || o.Domain is "" or "ai.onnx").Select(o => o.Version).FirstOrDefault();
        if (opset < MinOpset)
        {
            throw new SurgeryException("Opset too old for int8",
                $"per-channel int8 weights need ONNX opset {MinOpset} or later (DequantizeLinear's axis); the model uses opset {opset}: " +
                $"re-export it with opset_version={MinOpset} or later", ErrorKind.Unsupported);
        }
        Densify(proto.Graph);
        FoldWeightTransposes(proto.Graph);
        var layout = Layout.Of(proto.Graph);
        return new Int8Plan(proto, layout.Roots);
    }

    /// <summary>
    /// The QDQ model, from a plan and the ranges observed for <see cref="Int8Plan.CalibratedTensors"/>.
    /// <paramref name="info"/> is written into the model's metadata.
    /// </summary>
    public static Int8Model Quantize(Int8Plan plan, IReadOnlyDictionary<string, TensorRange> ranges, ActivationType activations,
        QuantizationInfo info)
    {
        var proto = plan.Prepared.Clone();
        var graph = proto.Graph;
        var layout = Layout.Of(graph);
        foreach (var root in layout.Roots)
        {
            if (!ranges.ContainsKey(root))
            {
                throw new ArgumentException($"no calibrated range for '{root}'", nameof(ranges));
            }
        }

        var initializers = graph.Initializer.ToDictionary(i => i.Name, StringComparer.Ordinal);
        var activationParams = new Dictionary<string, (float Scale, int ZeroPoint)>(StringComparer.Ordinal);
        foreach (var (tensor, root) in layout.Shared)
        {
            var range = ranges[root];
            var min = layout.Relu.Contains(root) ? 0f : Math.Min(range.Min, 0f);
            var max = Math.Max(range.Max, 0f);
            activationParams[tensor] = ActivationParams(min, max, activations);
        }

        // Relu folded into the quantization of its producer's output.
        foreach (var (producer, relu) in layout.FusedRelu)
        {
            producer.Output[0] = relu.Output[0];
            graph.Node.Remove(relu);
        }

        var added = new List<TensorProto>();
        var weights = new List<QuantizedWeight>();
        var weightCache = new Dictionary<string, (string Name, float[] Scales)>(StringComparer.Ordinal);
        var prefix = new List<NodeProto>();
        var afterProducer = new Dictionary<string, List<NodeProto>>(StringComparer.Ordinal);
        var rewired = new Dictionary<string, string>(StringComparer.Ordinal);

        foreach (var (tensor, (scale, zeroPoint)) in activationParams)
        {
            var type = activations == ActivationType.UInt8 ? OnnxDataType.UInt8 : OnnxDataType.Int8;
            var scaleName = tensor + "_scale";
            var zeroName = tensor + "_zero_point";
            added.Add(OnnxTensors.FromFloats(scaleName, [], [scale]));
            added.Add(new TensorProto
            {
                Name = zeroName, DataType = (int)type,
                RawData = ByteString.CopyFrom([type == OnnxDataType.UInt8 ? (byte)zeroPoint : unchecked((byte)(sbyte)zeroPoint)]),
            });
            var q = new NodeProto { Name = tensor + "_QuantizeLinear", OpType = "QuantizeLinear", Input = { tensor, scaleName, zeroName }, Output = { tensor + "_quantized" } };
            var dq = new NodeProto { Name = tensor + "_DequantizeLinear", OpType = "DequantizeLinear", Input = { tensor + "_quantized", scaleName, zeroName }, Output = { tensor + "_dequantized" } };
            rewired[tensor] = tensor + "_dequantized";
            if (layout.Producers.ContainsKey(tensor))
            {
                if (!afterProducer.TryGetValue(tensor, out var list)) afterProducer[tensor] = list = [];
                list.Add(q);
                list.Add(dq);
            }
            else
            {
                prefix.Add(q);
                prefix.Add(dq);
            }
        }

        foreach (var node in layout.Quantized)
        {
            var weightName = node.Input[1];
            if (!weightCache.TryGetValue(weightName, out var quantized))
            {
                var weight = initializers[weightName];
                var axis = WeightAxis(node, weight);
                var (values, scales, zeros) = QuantizeWeight(OnnxTensors.Floats(weight, null), weight.Dims.ToArray(), axis);
                var name = weightName + "_quantized";
                added.Add(new TensorProto { Name = name, DataType = (int)OnnxDataType.Int8, Dims = { weight.Dims }, RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(values.AsSpan())) });
                added.Add(OnnxTensors.FromFloats(weightName + "_scale", [scales.Length], scales));
                added.Add(new TensorProto { Name = weightName + "_zero_point", DataType = (int)OnnxDataType.Int8, Dims = { scales.Length }, RawData = ByteString.CopyFrom(new byte[scales.Length]) });
                prefix.Add(new NodeProto
                {
                    Name = weightName + "_DequantizeLinear", OpType = "DequantizeLinear",
                    Input = { name, weightName + "_scale", weightName + "_zero_point" }, Output = { weightName + "_dequantized" },
                    Attribute = { new AttributeProto { Name = "axis", Type = AttributeProto.Types.AttributeType.Int, I = axis } },
                });
                weights.Add(new QuantizedWeight(weightName, axis, scales.Length, values.LongLength, zeros));
                weightCache[weightName] = quantized = (weightName + "_dequantized", scales);
            }

            if (node.OpType is "Conv" or "Gemm" && node.Input.Count > 2 && initializers.TryGetValue(node.Input[2], out var bias)
                && bias.DataType == (int)OnnxDataType.Float && bias.Dims.Count == 1 && bias.Dims[0] == quantized.Scales.Length
                && activationParams.TryGetValue(node.Input[0], out var input))
            {
                var biasName = node.Input[2] + "_" + node.Name + "_quantized";
                var biasScales = quantized.Scales.Select(s => input.Scale * s).ToArray();
                var biasValues = OnnxTensors.Floats(bias, null)
                    .Select((b, c) => (int)Math.Clamp(Math.Round(b / biasScales[c], MidpointRounding.ToEven), int.MinValue + 1, int.MaxValue)).ToArray();
                added.Add(new TensorProto { Name = biasName, DataType = (int)OnnxDataType.Int32, Dims = { biasValues.Length }, RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(biasValues.AsSpan())) });
                added.Add(OnnxTensors.FromFloats(biasName + "_scale", [biasScales.Length], biasScales));
                added.Add(new TensorProto { Name = biasName + "_zero_point", DataType = (int)OnnxDataType.Int32, Dims = { biasValues.Length }, RawData = ByteString.CopyFrom(new byte[4 * biasValues.Length]) });
                prefix.Add(new NodeProto
                {
                    Name = biasName + "_DequantizeLinear", OpType = "DequantizeLinear",
                    Input = { biasName, biasName + "_scale", biasName + "_zero_point" }, Output = { biasName + "_dequantized" },
                    Attribute = { new AttributeProto { Name = "axis", Type = AttributeProto.Types.AttributeType.Int, I = 0 } },
                });
                node.Input[2] = biasName + "_dequantized";
            }
            node.Input[1] = quantized.Name;
        }

        // Every reader of a quantized activation reads its dequantized form; nodes are re-laid out in topological order.
        var nodes = new List<NodeProto>(prefix);
        foreach (var node in graph.Node)
        {
            for (var i = 0; i < node.Input.Count; i++)
            {
                if (rewired.TryGetValue(node.Input[i], out var to)) node.Input[i] = to;
            }
        }
        foreach (var node in graph.Node)
        {
            nodes.Add(node);
            foreach (var output in node.Output)
            {
                if (afterProducer.TryGetValue(output, out var list)) nodes.AddRange(list);
            }
        }
        graph.Node.Clear();
        graph.Node.Add(nodes);

        var used = graph.Node.SelectMany(n => n.Input).ToHashSet(StringComparer.Ordinal);
        foreach (var unused in graph.Initializer.Where(i => !used.Contains(i.Name)).ToList()) graph.Initializer.Remove(unused);
        graph.Initializer.Add(added);
        var names = graph.Node.SelectMany(n => n.Output).Concat(graph.Input.Select(i => i.Name)).ToHashSet(StringComparer.Ordinal);
        foreach (var stale in graph.ValueInfo.Where(v => !names.Contains(v.Name)).ToList()) graph.ValueInfo.Remove(stale);
        foreach (var entry in proto.MetadataProps.Where(p => p.Key == MetadataKey).ToList()) proto.MetadataProps.Remove(entry);
        proto.MetadataProps.Add(new StringStringEntryProto { Key = MetadataKey, Value = JsonSerializer.Serialize(info, Json) });

        var dense = proto.ToByteArray();
        var (sparse, moved) = SparseInt8(proto, weights.Select(w => w.Initializer + "_quantized"));
        return new Int8Model(dense, sparse.ToByteArray(), weights, moved);
    }

    /// <summary>Scale and zero point of an asymmetric 8-bit activation over [min, max] (min ≤ 0 ≤ max).</summary>
    public static (float Scale, int ZeroPoint) ActivationParams(float min, float max, ActivationType type)
    {
        var (qmin, qmax) = type == ActivationType.UInt8 ? (0, 255) : (-128, 127);
        if (max - min <= 0) return (1f, 0);
        var scale = (max - min) / (qmax - qmin);
        var zeroPoint = (int)Math.Clamp(Math.Round(qmin - min / scale, MidpointRounding.ToEven), qmin, qmax);
        return (scale, zeroPoint);
    }

    /// <summary>
    /// Symmetric per-channel int8: scale[c] = max|w[c]| / 127, q = round(w / scale[c]) in [-127, 127], so 0 stays 0.
    /// A channel with no weight left keeps scale 1.
    /// </summary>
    internal static (sbyte[] Values, float[] Scales, long Zeros) QuantizeWeight(float[] weight, long[] dims, int axis)
    {
        var channels = (int)dims[axis];
        var inner = dims.Skip(axis + 1).Aggregate(1L, (p, d) => p * d);
        var scales = new float[channels];
        for (var i = 0L; i < weight.LongLength; i++)
        {
            var c = (int)(i / inner % channels);
            scales[c] = Math.Max(scales[c], Math.Abs(weight[i]));
        }
        for (var c = 0; c < channels; c++) scales[c] = scales[c] > 0 ? scales[c] / 127f : 1f;
        var values = new sbyte[weight.LongLength];
        long zeros = 0;
        for (var i = 0L; i < weight.LongLength; i++)
        {
            var c = (int)(i / inner % channels);
            values[i] = (sbyte)Math.Clamp(Math.Round(weight[i] / scales[c], MidpointRounding.ToEven), -127, 127);
            if (values[i] == 0) zeros++;
        }
        return (values, scales, zeros);
    }

    /// <summary>The output-channel axis: Conv's weight [M, C, ...] axis 0; Gemm's B axis 0 with transB, else 1; MatMul's B its last.</summary>
    private static int WeightAxis(NodeProto node, TensorProto weight) => node.OpType switch
    {
        "Conv" => 0,
        "Gemm" => new OnnxAttributes(node).Int("transB", 0) != 0 ? 0 : 1,
        _ => weight.Dims.Count - 1,
    };

    private static void Densify(GraphProto graph)
    {
        foreach (var sparse in graph.SparseInitializer.ToList())
        {
            graph.Initializer.Add(OnnxTensors.Densify(sparse, null));
        }
        graph.SparseInitializer.Clear();
    }

    /// <summary>Transpose nodes of a 2-D float initializer become a transposed initializer (exporters write MatMul weights so).</summary>
    private static void FoldWeightTransposes(GraphProto graph)
    {
        var initializers = graph.Initializer.ToDictionary(i => i.Name, StringComparer.Ordinal);
        foreach (var node in graph.Node.Where(n => n.OpType == "Transpose").ToList())
        {
            if (!initializers.TryGetValue(node.Input[0], out var source) || source.DataType != (int)OnnxDataType.Float || source.Dims.Count != 2) continue;
            var perm = new OnnxAttributes(node).Ints("perm");
            if (perm is not null && !(perm[0] == 1 && perm[1] == 0)) continue;
            var (rows, columns) = ((int)source.Dims[0], (int)source.Dims[1]);
            var values = OnnxTensors.Floats(source, null);
            var transposed = new float[values.Length];
            for (var r = 0; r < rows; r++)
            {
                for (var c = 0; c < columns; c++) transposed[c * rows + r] = values[r * columns + c];
            }
            var folded = OnnxTensors.FromFloats(node.Output[0], [columns, rows], transposed);
            graph.Node.Remove(node);
            graph.Initializer.Add(folded);
            initializers[folded.Name] = folded;
            if (!graph.Node.Any(n => n.Input.Contains(source.Name)) && !graph.Output.Any(o => o.Name == source.Name))
            {
                graph.Initializer.Remove(source);
            }
        }
    }

    private static (ModelProto Model, IReadOnlyList<string> Moved) SparseInt8(ModelProto dense, IEnumerable<string> names)
    {
        var proto = dense.Clone();
        var moved = new List<string>();
        foreach (var name in names)
        {
            var tensor = proto.Graph.Initializer.First(i => i.Name == name);
            var values = tensor.RawData.Span;
            var indices = new List<long>();
            var kept = new List<byte>();
            for (var i = 0; i < values.Length; i++)
            {
                if (values[i] == 0) continue;
                indices.Add(i);
                kept.Add(values[i]);
            }
            var sparse = new SparseTensorProto
            {
                Values = new TensorProto { Name = name, DataType = (int)OnnxDataType.Int8, Dims = { kept.Count }, RawData = ByteString.CopyFrom(kept.ToArray()) },
                Indices = OnnxTensors.FromLongs(name + "_indices", [indices.Count], indices.ToArray()),
                Dims = { tensor.Dims },
            };
            if (sparse.CalculateSize() >= tensor.CalculateSize()) continue;
            proto.Graph.Initializer.Remove(tensor);
            proto.Graph.SparseInitializer.Add(sparse);
            moved.Add(name);
        }
        if (moved.Count > 0 && proto.IrVersion < 6) proto.IrVersion = 6;
        return (proto, moved);
    }

    /// <summary>Which nodes are quantized and which activations get a QDQ pair, sharing whose range.</summary>
    private sealed class Layout
    {
        public required List<NodeProto> Quantized { get; init; }
        public required List<string> Roots { get; init; }

        /// <summary>Each quantized activation with the calibrated tensor whose range it uses.</summary>
        public required Dictionary<string, string> Shared { get; init; }

        /// <summary>Roots that are a dropped Relu's output (their range starts at 0).</summary>
        public required HashSet<string> Relu { get; init; }

        public required List<(NodeProto Producer, NodeProto Relu)> FusedRelu { get; init; }
        public required Dictionary<string, NodeProto> Producers { get; init; }

        public static Layout Of(GraphProto graph)
        {
            var initializers = graph.Initializer.Select(i => i.Name).ToHashSet(StringComparer.Ordinal);
            var floats = graph.Initializer.Where(i => i.DataType == (int)OnnxDataType.Float).Select(i => i.Name).ToHashSet(StringComparer.Ordinal);
            var outputs = graph.Output.Select(o => o.Name).ToHashSet(StringComparer.Ordinal);
            var producers = new Dictionary<string, NodeProto>(StringComparer.Ordinal);
            var consumers = new Dictionary<string, List<NodeProto>>(StringComparer.Ordinal);
            foreach (var node in graph.Node)
            {
                foreach (var o in node.Output) producers[o] = node;
                foreach (var i in node.Input.Distinct())
                {
                    if (!consumers.TryGetValue(i, out var list)) consumers[i] = list = [];
                    list.Add(node);
                }
            }

            var quantized = graph.Node.Where(n => n.OpType is "Conv" or "MatMul" or "Gemm" && (!n.HasDomain || n.Domain is "" or "ai.onnx")
                && n.Input.Count >= 2 && floats.Contains(n.Input[1]) && !initializers.Contains(n.Input[0])
                && (n.OpType != "Gemm" || new OnnxAttributes(n).Int("transA", 0) == 0)
                && (n.OpType != "MatMul" || graph.Initializer.First(i => i.Name == n.Input[1]).Dims.Count == 2)).ToList();

            var wanted = new List<string>();
            var relu = new HashSet<string>(StringComparer.Ordinal);
            var fused = new List<(NodeProto, NodeProto)>();
            foreach (var node in quantized)
            {
                wanted.Add(node.Input[0]);
                var output = node.Output[0];
                if (outputs.Contains(output)) continue;
                var readers = consumers.GetValueOrDefault(output) ?? [];
                if (readers is [{ OpType: "Relu" } r] && !outputs.Contains(output) && r.Output.Count == 1)
                {
                    fused.Add((node, r));
                    relu.Add(r.Output[0]);
                    wanted.Add(r.Output[0]);
                }
                else
                {
                    wanted.Add(output);
                }
            }

            // A tensor made by a pass-through op from another activation shares that activation's range, up to a root.
            var shared = new Dictionary<string, string>(StringComparer.Ordinal);
            string RootOf(string tensor)
            {
                if (shared.TryGetValue(tensor, out var known)) return known;
                var root = tensor;
                if (!relu.Contains(tensor) && producers.TryGetValue(tensor, out var p) && PassThrough.Contains(p.OpType)
                    && p.Input.Count > 0 && !initializers.Contains(p.Input[0]) && !outputs.Contains(p.Input[0]))
                {
                    root = RootOf(p.Input[0]);
                }
                shared[tensor] = root;
                return root;
            }
            foreach (var tensor in wanted.Distinct()) RootOf(tensor);

            // Tensors rewritten away by a fused Relu never get a pair of their own.
            foreach (var (producer, _) in fused) shared.Remove(producer.Output[0]);
            var roots = shared.Values.Distinct().ToList();
            var order = graph.Input.Select(i => i.Name).Concat(graph.Node.SelectMany(n => n.Output)).Select((n, i) => (n, i))
                .ToDictionary(p => p.n, p => p.i, StringComparer.Ordinal);
            roots.Sort((a, b) => order.GetValueOrDefault(a).CompareTo(order.GetValueOrDefault(b)));

            // After Relu fusion the pair of a dropped Relu's output follows the fused producer.
            var effectiveProducers = new Dictionary<string, NodeProto>(producers, StringComparer.Ordinal);
            foreach (var (producer, r) in fused) effectiveProducers[r.Output[0]] = producer;
            return new Layout
            {
                Quantized = quantized, Roots = roots, Shared = shared, Relu = relu, FusedRelu = fused, Producers = effectiveProducers,
            };
        }
    }
}
