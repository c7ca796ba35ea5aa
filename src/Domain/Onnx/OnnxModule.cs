using SurgeryService.Domain.Onnx.Proto;
using TorchSharp;
using static TorchSharp.torch;

namespace SurgeryService.Domain.Onnx;

/// <summary>
/// Executes an ONNX graph in TorchSharp so it can be trained: every float initializer that feeds data into a node is a
/// trainable <see cref="TorchSharp.Modules.Parameter"/> (named by <see cref="OnnxModel.MemberName"/>), BatchNormalization
/// running statistics and constants are buffers. The graph is interpreted node by node on every forward pass, so
/// shapes computed at run time (Shape, Gather, Concat into Reshape) follow the actual batch size.
/// </summary>
public sealed partial class OnnxModule : nn.Module<Tensor, Tensor>
{
    private readonly NodeProto[] _nodes;
    private readonly OnnxAttributes[] _attributes;
    private readonly bool[] _severalOutputs;
    private readonly (string Value, string Member, bool IsParameter)[] _bindings;
    private readonly string _inputName;
    private readonly ScalarType? _inputType;
    private readonly string _outputName;
    private readonly int _opset;
    private readonly long _declaredBatch;

    private OnnxModule(OnnxModel model, bool outputLogits) : base("onnx")
    {
        Model = model;
        _opset = model.Opset;
        _inputName = model.InputName;
        _inputType = model.InputElementType switch
        {
            OnnxDataType.Int64 => ScalarType.Int64,
            OnnxDataType.Int32 => ScalarType.Int32,
            _ => null,
        };
        _declaredBatch = model.InputShape.Count > 0 ? model.InputShape[0] : -1;
        var graph = model.Proto.Graph;
        var nodes = graph.Node.ToList();
        _outputName = model.OutputName;
        if (outputLogits)
        {
            // The final Softmax/LogSoftmax, possibly followed by Identity nodes, is left out.
            var tail = new List<NodeProto>();
            var last = nodes.LastOrDefault(n => n.Output.Contains(_outputName));
            while (last is { OpType: "Identity" })
            {
                tail.Add(last);
                var input = last.Input[0];
                last = nodes.LastOrDefault(n => n.Output.Contains(input));
            }
            if (last is { OpType: "Softmax" or "LogSoftmax" })
            {
                _outputName = last.Input[0];
                nodes.Remove(last);
                tail.ForEach(n => nodes.Remove(n));
            }
        }
        var producer = nodes.LastOrDefault(n => n.Output.Contains(_outputName));
        while (producer is { OpType: "Identity" })
        {
            var input = producer.Input[0];
            producer = nodes.LastOrDefault(n => n.Output.Contains(input));
        }
        OutputsLogits = producer is not { OpType: "Softmax" or "LogSoftmax" };

        var bindings = new List<(string, string, bool)>();
        using (torch.no_grad())
        {
            foreach (var (name, proto) in model.Initializers)
            {
                var member = model.MemberName(name);
                var tensor = Initializer(model, proto);
                if (model.ParameterInitializers.Contains(name))
                {
                    register_parameter(member, new TorchSharp.Modules.Parameter(tensor, requires_grad: true));
                    bindings.Add((name, member, true));
                }
                else
                {
                    register_buffer(member, tensor, persistent: model.StatisticInitializers.Contains(name));
                    bindings.Add((name, member, false));
                }
            }
            foreach (var node in nodes.Where(n => n.OpType == "Constant"))
            {
                var member = model.MemberName(node.Output[0]);
                register_buffer(member, ConstantValue(new OnnxAttributes(node)), persistent: false);
                bindings.Add((node.Output[0], member, false));
            }
        }
        _bindings = bindings.ToArray();
        _nodes = nodes.Where(n => n.OpType != "Constant").ToArray();
        _attributes = _nodes.Select(n => new OnnxAttributes(n)).ToArray();
        // Nodes whose outputs other than the first are read: decided once, not on every forward pass.
        _severalOutputs = _nodes.Select(n => n.OpType is "Split" or "LSTM" or "GRU" or "RNN"
            || (n.OpType == "LayerNormalization" && n.Output.Skip(1).Any(o => o.Length > 0))).ToArray();
    }

    public OnnxModel Model { get; }

    /// <summary>
    /// The initializer as a tensor: its values, or for one read without its data (<see cref="OnnxModel.Inspect"/>) a
    /// stand-in of its shape and type that is zero everywhere, one value broadcast with zero strides, so it takes no
    /// memory. The weight operators compute one output channel for a weight that repeats along its output dimension
    /// (<see cref="RepeatsAlong"/>), so a forward pass gives every value its true shape without copying the stand-in.
    /// </summary>
    private static Tensor Initializer(OnnxModel model, TensorProto proto)
    {
        if (model.HasData(proto)) return OnnxTensors.ToTorch(proto, model.Directory);
        var type = OnnxDataTypes.ToScalarType(proto.DataType) ?? throw new SurgeryException("Unsupported ONNX tensor",
            $"tensor '{proto.Name}' has element type {OnnxDataTypes.Describe(proto.DataType)}, which the service cannot hold", ErrorKind.Unsupported);
        using var zero = torch.zeros([], type);
        return zero.expand(proto.Dims.ToArray());
    }

    /// <summary>Whether <see cref="forward"/> returns scores before any final Softmax/LogSoftmax (what the engine trains on).</summary>
    public bool OutputsLogits { get; }

    /// <summary>
    /// Builds the module. With <paramref name="outputLogits"/>, a Softmax or LogSoftmax that produces the graph's output
    /// is skipped, so the engine's cross-entropy sees logits; without it the module computes exactly the graph.
    /// </summary>
    public static OnnxModule Create(OnnxModel model, bool outputLogits = false)
    {
        if (!model.HasAllData)
        {
            throw new InvalidOperationException("a model read without its weights (OnnxModel.Inspect) is only measured: use CreateForMeasuring");
        }
        Torch.ConvolutionCheck.Ensure();
        return new(model, outputLogits);
    }

    /// <summary>
    /// <see cref="Create"/> for a model that may lack the data of its large initializers (<see cref="OnnxModel.Inspect"/>):
    /// those become zero tensors of their shape that hold no memory, so the module computes the shape of every value
    /// (what <see cref="ActivationBytes"/> counts), though not the values the real weights give. Not for training or export.
    /// </summary>
    public static OnnxModule CreateForMeasuring(OnnxModel model, bool outputLogits = false)
    {
        Torch.ConvolutionCheck.Ensure();
        return new(model, outputLogits);
    }

    /// <summary>The module's parameter for an initializer.</summary>
    public TorchSharp.Modules.Parameter ParameterOf(string initializer) =>
        get_parameter(Model.MemberName(initializer)) ?? throw new ArgumentException($"'{initializer}' is not a trainable initializer");

    /// <summary>Current values of every initializer the module trains or updates (parameters and running statistics).</summary>
    public IEnumerable<(string Initializer, Tensor Value)> TrainedInitializers() =>
        _bindings.Where(b => b.IsParameter || Model.StatisticInitializers.Contains(b.Value))
            .Select(b => (b.Value, b.IsParameter ? (Tensor)get_parameter(b.Member)! : get_buffer(b.Member)!));

    public override Tensor forward(Tensor input) => Run(input, produced: null);

    /// <summary>
    /// The bytes of the input and of every value the graph computes from <paramref name="input"/>, without gradients:
    /// about what a training step keeps for its backward pass, since the forward holds every value until it returns.
    /// Views (Reshape, Flatten) count as copies, so this errs high.
    /// </summary>
    public long ActivationBytes(Tensor input)
    {
        using var _ = no_grad();
        var bytes = input.NumberOfElements * input.ElementSize;
        using var output = Run(input, value => bytes += value.NumberOfElements * value.ElementSize);
        return bytes;
    }

    private Tensor Run(Tensor input, Action<Tensor>? produced)
    {
        using var scope = NewDisposeScope();
        var values = new Dictionary<string, Tensor>(_nodes.Length * 2 + _bindings.Length, StringComparer.Ordinal)
        {
            // Token ids arrive as the data set's float samples (exact up to 2^24).
            [_inputName] = _inputType is { } type && input.dtype != type ? input.to_type(type) : input,
        };
        foreach (var (value, member, isParameter) in _bindings)
        {
            values[value] = isParameter ? get_parameter(member)! : get_buffer(member)!;
        }
        var batch = input.shape.Length > 0 ? input.shape[0] : 1;
        for (var i = 0; i < _nodes.Length; i++)
        {
            var node = _nodes[i];
            var inputs = new Tensor?[node.Input.Count];
            for (var k = 0; k < inputs.Length; k++)
            {
                var name = node.Input[k];
                if (name.Length == 0) continue;
                if (!values.TryGetValue(name, out var value))
                {
                    throw new SurgeryException("Bad ONNX graph",
                        $"node {OnnxModel.NodeLabel(node)} reads '{name}', which no earlier node produces (the graph is not topologically sorted)", ErrorKind.BadInput);
                }
                inputs[k] = value;
            }
            if (_severalOutputs[i])
            {
                var outputs = node.OpType switch
                {
                    "Split" => Split(node, _attributes[i], inputs[0]!, inputs.Length > 1 ? inputs[1] : null),
                    "LayerNormalization" => LayerNormalizationWithStatistics(inputs[0]!, inputs[1]!, inputs.Length > 2 ? inputs[2] : null, _attributes[i]),
                    _ => Recurrent(node, _attributes[i], inputs),
                };
                for (var k = 0; k < node.Output.Count && k < outputs.Length; k++)
                {
                    if (node.Output[k].Length == 0) continue;
                    values[node.Output[k]] = outputs[k];
                    produced?.Invoke(outputs[k]);
                }
                continue;
            }
            var output = values[node.Output[0]] = Execute(node, _attributes[i], inputs, batch);
            produced?.Invoke(output);
        }
        // alias(): the output may be the input or a parameter, which must not leave this scope as the caller's to dispose.
        return values[_outputName].alias().MoveToOuterDisposeScope();
    }
}
