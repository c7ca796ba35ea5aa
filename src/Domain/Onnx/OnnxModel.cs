using Google.Protobuf;
using SurgeryService.Domain.Onnx.Proto;
using SurgeryService.Domain.Surgery;

namespace SurgeryService.Domain.Onnx;

/// <summary>
/// An ONNX model read and checked: every operator supported, one float input, weights of float type. Holds the
/// original <see cref="ModelProto"/> (for writing back) and what can be known without running anything: the layer
/// list, the prunable layers and the parameter names an <see cref="OnnxModule"/> built from it will use.
/// </summary>
public sealed class OnnxModel
{
    public const int MinOpset = 7;
    public const int MaxOpset = 20;

    /// <summary>Operator types an <see cref="OnnxModule"/> executes (default ONNX domain).</summary>
    public static readonly IReadOnlySet<string> SupportedOperators = new HashSet<string>(StringComparer.Ordinal)
    {
        "Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Relu", "LeakyRelu", "Sigmoid", "Tanh",
        "Softmax", "LogSoftmax", "MaxPool", "AveragePool", "GlobalAveragePool", "BatchNormalization", "Dropout",
        "Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Concat", "Shape", "Gather", "Slice", "Constant",
        "ConstantOfShape", "Identity", "Cast", "Clip", "Pad",
        "LayerNormalization", "InstanceNormalization",
        "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceSumSquare",
        "Pow", "Sqrt", "Reciprocal", "Exp", "Log", "Neg", "Abs", "Erf", "Gelu", "Softplus", "HardSigmoid", "HardSwish",
        "Min", "Max", "Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual", "Not", "And", "Or", "Xor", "Where",
        "Expand", "Split", "Tile", "Range", "Trilu", "Einsum", "LSTM", "GRU", "RNN",
    };

    private static readonly HashSet<string> WeightOps = ["Conv", "ConvTranspose", "Gemm", "MatMul"];
    private static readonly HashSet<string> WeightPathOps = ["Reshape", "Transpose", "Identity", "Cast"];

    /// <summary>Inputs (by position) that carry shapes, indices or scalar settings rather than trainable data.</summary>
    private static readonly Dictionary<string, int[]> SettingInputs = new()
    {
        ["Reshape"] = [1], ["Slice"] = [1, 2, 3, 4], ["Squeeze"] = [1], ["Unsqueeze"] = [1], ["Pad"] = [1, 2, 3],
        ["Clip"] = [1, 2], ["Dropout"] = [1, 2], ["Gather"] = [1], ["ConstantOfShape"] = [0],
        ["ReduceMean"] = [1], ["ReduceSum"] = [1], ["ReduceMax"] = [1], ["ReduceMin"] = [1], ["ReduceProd"] = [1],
        ["ReduceL1"] = [1], ["ReduceL2"] = [1], ["ReduceSumSquare"] = [1], ["Pow"] = [1], ["Expand"] = [1],
        ["Split"] = [1], ["Tile"] = [1], ["Range"] = [0, 1, 2], ["Trilu"] = [1], ["Where"] = [0],
        // A comparison has no gradient: a float initializer read only by comparisons is a threshold, not a weight.
        ["Equal"] = [0, 1], ["Less"] = [0, 1], ["LessOrEqual"] = [0, 1], ["Greater"] = [0, 1], ["GreaterOrEqual"] = [0, 1],
    };

    private readonly Dictionary<string, TensorProto> _initializers;
    private readonly Dictionary<string, string> _memberNames = new(StringComparer.Ordinal);

    private readonly IReadOnlyDictionary<TensorProto, OmittedTensorData> _omitted;

    private OnnxModel(ModelProto proto, string? directory, int opset, byte[]? bytes,
        IReadOnlyDictionary<TensorProto, OmittedTensorData>? omitted = null)
    {
        Proto = proto;
        OriginalBytes = bytes;
        _omitted = omitted ?? new Dictionary<TensorProto, OmittedTensorData>();
        Directory = directory;
        Opset = opset;
        var graph = proto.Graph;
        foreach (var sparse in graph.SparseInitializer)
        {
            graph.Initializer.Add(OnnxTensors.Densify(sparse, directory));
        }
        graph.SparseInitializer.Clear();
        _initializers = new Dictionary<string, TensorProto>(StringComparer.Ordinal);
        foreach (var initializer in graph.Initializer)
        {
            _initializers[initializer.Name] = initializer;
        }

        foreach (var initializer in graph.Initializer)
        {
            // Reads every tensor once so a truncated or corrupt one is refused now, not inside a job.
            OnnxTensors.CheckData(initializer, directory, _omitted.GetValueOrDefault(initializer));
        }

        var dataInputs = graph.Input.Where(i => !_initializers.ContainsKey(i.Name)).ToList();
        if (dataInputs.Count != 1)
        {
            throw new SurgeryException("Unsupported ONNX model",
                $"the model has {dataInputs.Count} inputs ({string.Join(", ", dataInputs.Select(i => i.Name))}); only models with one input can be trained", ErrorKind.Unsupported);
        }
        var input = dataInputs[0];
        var elemType = input.Type?.TensorType?.ElemType ?? 0;
        if (elemType is not ((int)OnnxDataType.Float or (int)OnnxDataType.Int64 or (int)OnnxDataType.Int32))
        {
            throw new SurgeryException("Unsupported ONNX model",
                $"the model's input '{input.Name}' has element type {OnnxDataTypes.Describe(elemType)}; only FLOAT inputs, and INT64 or INT32 " +
                "inputs (token ids), are supported", ErrorKind.Unsupported);
        }
        InputName = input.Name;
        InputElementType = (OnnxDataType)elemType;
        InputShape = input.Type!.TensorType.Shape?.Dim.Select(d => d.HasDimValue ? d.DimValue : -1).ToArray() ?? [];
        if (input.Type.TensorType.Shape?.Dim.FirstOrDefault(d => d.HasDimValue && d.DimValue <= 0) is { } bad)
        {
            throw new SurgeryException("Unsupported ONNX model",
                $"the model's input '{input.Name}' has the dimension {bad.DimValue}; a fixed dimension must be at least 1", ErrorKind.BadInput);
        }
        var sampleValues = OnnxTensors.ElementCount(InputSampleShape.Where(d => d > 0), input.Name);
        if (sampleValues > MaxSampleValues)
        {
            throw new SurgeryException("Unsupported ONNX model",
                $"the model's input '{input.Name}' declares [{string.Join(", ", InputShape.Select(d => d > 0 ? d.ToString(System.Globalization.CultureInfo.InvariantCulture) : "?"))}]: " +
                $"{sampleValues} values per sample, more than the {MaxSampleValues} a sample may have", ErrorKind.BadInput);
        }
        if (graph.Output.Count == 0)
        {
            throw new SurgeryException("Not an ONNX model", "the graph has no output");
        }
        OutputName = graph.Output[0].Name;
        var outputDims = graph.Output[0].Type?.TensorType?.Shape?.Dim;
        ClassCount = outputDims is { Count: 2 } && outputDims[1].HasDimValue && outputDims[1].DimValue is > 0 and <= int.MaxValue
            ? (int)outputDims[1].DimValue
            : null;

        CheckGraph(graph);
        CheckOperators(graph);
        ClassifyInitializers(graph);
        (Layers, PrunableLayers) = DiscoverLayers(graph);
    }

    /// <summary>
    /// The model as read; sparse initializers are turned into dense ones here, external data stays external. In a model
    /// read by <see cref="Inspect"/>, the initializers that <see cref="HasData"/> denies hold no values.
    /// </summary>
    public ModelProto Proto { get; }

    /// <summary>The file as uploaded; null for a model read by <see cref="Inspect"/>, which keeps no copy of it.</summary>
    public byte[]? OriginalBytes { get; }

    /// <summary>Whether every initializer holds its values (false only for a model read by <see cref="Inspect"/> with large weights).</summary>
    public bool HasAllData => _omitted.Count == 0;

    /// <summary>Whether the initializer holds its values; one that does not has its name, shape and type only.</summary>
    public bool HasData(TensorProto initializer) => !_omitted.ContainsKey(initializer);

    /// <summary>Where files named by external-data tensors are looked up, or null for a model read from bytes alone.</summary>
    public string? Directory { get; }

    /// <summary>The default-domain opset the graph was exported with.</summary>
    public int Opset { get; }

    public string InputName { get; }

    /// <summary>The declared input shape with -1 for symbolic dimensions (the first is the batch dimension).</summary>
    public IReadOnlyList<long> InputShape { get; }

    /// <summary>
    /// FLOAT, or INT64/INT32 for a model that reads token ids (e.g. into an embedding table): the engine casts the data
    /// set's samples, which it holds as floats, to this type before the graph reads them.
    /// </summary>
    public OnnxDataType InputElementType { get; }

    /// <summary>The declared shape of one sample (without the batch dimension), -1 where symbolic.</summary>
    public long[] InputSampleShape => InputShape.Skip(1).ToArray();

    public string OutputName { get; }

    /// <summary>The classes the model scores: the second dimension of an output declared as [batch, classes]; null when the graph does not say.</summary>
    public int? ClassCount { get; }

    /// <summary>Most values one input sample may have (64 MiB of float32): far above any image or sequence model's.</summary>
    public const long MaxSampleValues = 1L << 24;

    /// <summary>Every node holding trainable parameters, prunable or not.</summary>
    public IReadOnlyList<OnnxLayer> Layers { get; }

    /// <summary>The layers the engine prunes, named by the module's parameter names.</summary>
    public IReadOnlyList<PrunableLayer> PrunableLayers { get; }

    /// <summary>Float initializers that become trainable parameters.</summary>
    public IReadOnlySet<string> ParameterInitializers => _parameters;

    /// <summary>Float initializers that are running statistics of a BatchNormalization (buffers, updated in training).</summary>
    public IReadOnlySet<string> StatisticInitializers => _statistics;

    private readonly HashSet<string> _parameters = new(StringComparer.Ordinal);
    private readonly HashSet<string> _statistics = new(StringComparer.Ordinal);

    public IReadOnlyDictionary<string, TensorProto> Initializers => _initializers;

    /// <summary>The module member (parameter or buffer) name an initializer or constant is registered under.</summary>
    public string MemberName(string initializer) => _memberNames[initializer];

    /// <summary>The initializer behind a module parameter name (the inverse of <see cref="MemberName"/>).</summary>
    public string InitializerOf(string memberName) => _memberNames.First(p => p.Value == memberName).Key;

    public static OnnxModel Load(string path) => Load(File.ReadAllBytes(path), Path.GetDirectoryName(Path.GetFullPath(path)));

    /// <summary>Initializer data fields up to this size (1 MiB) are read by <see cref="Inspect"/>: shapes, axes, small biases.</summary>
    public const long InspectKeepsDataUpTo = 1L << 20;

    /// <summary>
    /// Reads and checks a model from <paramref name="stream"/> for inspection, without holding its weights: an
    /// initializer whose data exceeds <paramref name="keepDataUpTo"/> bytes keeps its name, shape and type, and its data
    /// is skipped on the stream after its length is checked against the shape. Everything <see cref="Load(byte[], string?)"/>
    /// checks and refuses, this checks and refuses the same way, and the layers, shapes and operators are the same. The
    /// model cannot be trained or exported: <see cref="OnnxModule.CreateForMeasuring"/> builds a module from it whose
    /// omitted tensors are zero stand-ins of their shape, to measure activations.
    /// </summary>
    public static OnnxModel Inspect(Stream stream, long keepDataUpTo = InspectKeepsDataUpTo)
    {
        if (!stream.CanSeek) throw new ArgumentException("the model is read from a seekable stream", nameof(stream));
        var length = stream.Length - stream.Position;
        return Parse(() => OnnxShapeReader.Read(stream, keepDataUpTo), length,
            (proto, opset, omitted) => new OnnxModel(proto, null, opset, null, omitted));
    }

    /// <summary>
    /// Parses and checks a model; <paramref name="directory"/> is where external-data files sit. Every refusal is a
    /// <see cref="SurgeryException"/> that says what is wrong.
    /// </summary>
    public static OnnxModel Load(byte[] bytes, string? directory = null) =>
        Parse(() => (ModelProto.Parser.ParseFrom(bytes), null), bytes.Length,
            (proto, opset, _) => new OnnxModel(proto, directory, opset, bytes));

    private static OnnxModel Parse(
        Func<(ModelProto, IReadOnlyDictionary<TensorProto, OmittedTensorData>?)> read, long length,
        Func<ModelProto, int, IReadOnlyDictionary<TensorProto, OmittedTensorData>?, OnnxModel> create)
    {
        ModelProto proto;
        IReadOnlyDictionary<TensorProto, OmittedTensorData>? omitted;
        try
        {
            (proto, omitted) = read();
        }
        catch (InvalidProtocolBufferException e) when (e.Message.Contains("ended unexpectedly", StringComparison.Ordinal)
            || e.Message.Contains("truncated", StringComparison.OrdinalIgnoreCase))
        {
            throw new SurgeryException("Truncated ONNX file",
                $"the file ends in the middle of the model after {length} bytes; it was probably cut off during upload or export");
        }
        catch (MalformedProtobufException e) when (e.Truncated)
        {
            throw new SurgeryException("Truncated ONNX file",
                $"the file ends in the middle of the model after {length} bytes; it was probably cut off during upload or export");
        }
        catch (Exception e) when (e is InvalidProtocolBufferException or MalformedProtobufException)
        {
            throw new SurgeryException("Not an ONNX model", "the file is not an ONNX model (it is not a valid ONNX protobuf message)");
        }
        if (proto.Graph is null || proto.Graph.Node.Count == 0 || proto.IrVersion <= 0)
        {
            throw new SurgeryException("Not an ONNX model",
                "the file is not an ONNX model: it has no IR version or no graph with nodes");
        }
        var opset = proto.OpsetImport.Where(o => !o.HasDomain || o.Domain is "" or "ai.onnx").Select(o => (long?)o.Version).FirstOrDefault()
            ?? (proto.IrVersion < 3 ? 1 : throw new SurgeryException("Not an ONNX model", "the model imports no ONNX operator set"));
        if (opset is < MinOpset or > MaxOpset)
        {
            throw new SurgeryException("Unsupported ONNX opset",
                $"the model uses ONNX opset {opset}; opsets {MinOpset} to {MaxOpset} are supported (re-export it with one of them)", ErrorKind.Unsupported);
        }
        return create(proto, (int)opset, omitted);
    }

    /// <summary>
    /// The graph is one the module can run node by node: ONNX requires nodes in topological order, so every input a
    /// node reads is the graph's input, an initializer or the output of an earlier node, and every tensor has one writer.
    /// A cycle or a self-loop shows as a node reading what it or a later node writes.
    /// </summary>
    private void CheckGraph(GraphProto graph)
    {
        var written = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var input in graph.Input) written.TryAdd(input.Name, $"the graph's input '{input.Name}'");
        foreach (var initializer in graph.Initializer) written.TryAdd(initializer.Name, $"the initializer '{initializer.Name}'");
        var laterWriters = new Dictionary<string, NodeProto>(StringComparer.Ordinal);
        foreach (var node in graph.Node)
        {
            foreach (var output in node.Output.Where(o => o != "")) laterWriters.TryAdd(output, node);
        }

        foreach (var node in graph.Node)
        {
            foreach (var input in node.Input.Where(i => i != ""))
            {
                if (written.ContainsKey(input)) continue;
                var problem = !laterWriters.TryGetValue(input, out var writer)
                    ? $"reads '{Printable(input)}', which no node, initializer or graph input provides"
                    : ReferenceEquals(writer, node)
                        ? $"reads its own output '{Printable(input)}' (a self-loop)"
                        : $"reads '{Printable(input)}' before node {NodeLabel(writer)} writes it (a cycle, or nodes out of topological order)";
                throw new SurgeryException("Broken ONNX graph", $"node {NodeLabel(node)} {problem}", ErrorKind.BadInput);
            }
            foreach (var output in node.Output.Where(o => o != ""))
            {
                if (!written.TryAdd(output, $"node {NodeLabel(node)}"))
                {
                    throw new SurgeryException("Broken ONNX graph",
                        $"node {NodeLabel(node)} writes '{Printable(output)}', which {written[output]} already writes: a tensor has one writer", ErrorKind.BadInput);
                }
            }
        }
        foreach (var output in graph.Output.Where(o => !written.ContainsKey(o.Name)))
        {
            throw new SurgeryException("Broken ONNX graph", $"the graph's output '{Printable(output.Name)}' is written by no node", ErrorKind.BadInput);
        }
    }

    /// <summary>A name as a message may show it: at most 80 characters, control characters as '?'.</summary>
    private static string Printable(string name) =>
        new(StoredText.Truncate(name, 80).Select(c => char.IsControl(c) || char.IsSurrogate(c) ? '?' : c).ToArray());

    private void CheckOperators(GraphProto graph)
    {
        var unsupported = graph.Node
            .Where(n => (n.HasDomain && n.Domain is not ("" or "ai.onnx")) || !SupportedOperators.Contains(n.OpType))
            .GroupBy(n => n.HasDomain && n.Domain is not ("" or "ai.onnx") ? $"{n.Domain}:{n.OpType}" : n.OpType)
            .ToList();
        if (unsupported.Count > 0)
        {
            var list = string.Join("; ", unsupported.Select(g =>
                $"{g.Key} (nodes: {string.Join(", ", g.Take(3).Select(NodeLabel))}{(g.Count() > 3 ? $" and {g.Count() - 3} more" : "")})"));
            throw new SurgeryException("Unsupported ONNX operators",
                $"the model uses {unsupported.Count} operator type(s) the service cannot run: {list}", ErrorKind.Unsupported);
        }

        var consumed = graph.Node.SelectMany(n => n.Input).Concat(graph.Output.Select(o => o.Name)).ToHashSet(StringComparer.Ordinal);
        var problems = new List<string>();
        foreach (var node in graph.Node)
        {
            var attributes = new OnnxAttributes(node);
            switch (node.OpType)
            {
                case "MaxPool" when node.Output.Count > 1 && node.Output[1] != "" && consumed.Contains(node.Output[1]):
                    problems.Add($"{NodeLabel(node)}: MaxPool's indices output is not supported");
                    break;
                case "Dropout" when node.Output.Count > 1 && node.Output[1] != "" && consumed.Contains(node.Output[1]):
                    problems.Add($"{NodeLabel(node)}: Dropout's mask output is not supported");
                    break;
                case "Pad" when attributes.String("mode", "constant") is not ("constant" or "reflect" or "edge"):
                    problems.Add($"{NodeLabel(node)}: Pad mode '{attributes.String("mode", "")}' is not supported");
                    break;
                case "Conv" or "ConvTranspose" or "MaxPool" or "AveragePool"
                    when attributes.Ints("kernel_shape") is { Length: > 3 }:
                    problems.Add($"{NodeLabel(node)}: {node.OpType} over more than 3 spatial dimensions is not supported");
                    break;
                case "Constant" when !attributes.Has("value") && !attributes.Has("value_float") && !attributes.Has("value_floats")
                    && !attributes.Has("value_int") && !attributes.Has("value_ints"):
                    problems.Add($"{NodeLabel(node)}: only numeric Constant values are supported");
                    break;
                case "BatchNormalization" when node.Output.Skip(1).Any(o => o != "" && consumed.Contains(o)):
                    problems.Add($"{NodeLabel(node)}: {node.OpType}'s statistics outputs are not supported");
                    break;
                case "AveragePool" when attributes.Ints("dilations") is { } dilations && dilations.Any(d => d != 1):
                    problems.Add($"{NodeLabel(node)}: AveragePool with dilations is not supported");
                    break;
                case "LayerNormalization" when attributes.Int("stash_type", 1) != 1:
                    problems.Add($"{NodeLabel(node)}: LayerNormalization with stash_type {attributes.Int("stash_type", 1)} is not supported (only 1, float32)");
                    break;
                case "Gelu" when attributes.String("approximate", "none") is not ("none" or "tanh"):
                    problems.Add($"{NodeLabel(node)}: Gelu approximation '{attributes.String("approximate", "")}' is not supported");
                    break;
                case "LSTM" or "GRU" or "RNN" when RecurrentProblem(node, attributes) is { } problem:
                    problems.Add($"{NodeLabel(node)}: {problem}");
                    break;
            }
        }
        if (problems.Count > 0)
        {
            throw new SurgeryException("Unsupported ONNX operator usage", string.Join("; ", problems), ErrorKind.Unsupported);
        }
    }

    /// <summary>What a recurrent node asks for that <see cref="OnnxModule"/> does not implement, or null.</summary>
    private static string? RecurrentProblem(NodeProto node, OnnxAttributes attributes)
    {
        string[] defaults = node.OpType switch { "LSTM" => ["Sigmoid", "Tanh", "Tanh"], "GRU" => ["Sigmoid", "Tanh"], _ => ["Tanh"] };
        if (node.Input.Count > 4 && node.Input[4] != "")
        {
            return $"{node.OpType} with sequence_lens (sequences of different lengths in one batch) is not supported";
        }
        if (attributes.Has("activations"))
        {
            var given = node.Attribute.First(a => a.Name == "activations").Strings.Select(s => s.ToStringUtf8()).ToArray();
            var expected = attributes.String("direction", "forward") == "bidirectional" ? defaults.Concat(defaults).ToArray() : defaults;
            if (!given.SequenceEqual(expected, StringComparer.OrdinalIgnoreCase))
            {
                return $"{node.OpType} activations {string.Join(", ", given)} are not supported (only {string.Join(", ", defaults)})";
            }
        }
        if (node.OpType == "LSTM" && attributes.Int("input_forget", 0) != 0)
        {
            return "LSTM with input_forget is not supported";
        }
        if (attributes.String("direction", "forward") is not ("forward" or "reverse" or "bidirectional"))
        {
            return $"{node.OpType} direction '{attributes.String("direction", "")}' is not supported";
        }
        return null;
    }

    internal static string NodeLabel(NodeProto node) =>
        string.IsNullOrEmpty(node.Name) ? $"'{node.OpType}' producing '{node.Output.FirstOrDefault()}'" : $"'{node.Name}'";

    private void ClassifyInitializers(GraphProto graph)
    {
        foreach (var node in graph.Node)
        {
            var settings = SettingInputs.GetValueOrDefault(node.OpType) ?? [];
            for (var i = 0; i < node.Input.Count; i++)
            {
                if (!_initializers.TryGetValue(node.Input[i], out var init) || init.DataType != (int)OnnxDataType.Float)
                {
                    continue;
                }
                if (node.OpType == "BatchNormalization" && i >= 3)
                {
                    _statistics.Add(init.Name);
                }
                else if (!settings.Contains(i))
                {
                    _parameters.Add(init.Name);
                }
            }
        }
        _statistics.ExceptWith(_parameters);

        var used = new HashSet<string>(StringComparer.Ordinal);
        string Unique(string raw)
        {
            var name = new string(raw.Select(c => char.IsAsciiLetterOrDigit(c) || c == '_' ? c : '_').ToArray());
            if (name.Length == 0 || char.IsAsciiDigit(name[0])) name = "p_" + name;
            var candidate = name;
            for (var k = 2; !used.Add(candidate); k++) candidate = $"{name}_{k}";
            return candidate;
        }
        foreach (var initializer in graph.Initializer)
        {
            _memberNames.TryAdd(initializer.Name, Unique(initializer.Name));
        }
        foreach (var node in graph.Node.Where(n => n.OpType == "Constant"))
        {
            _memberNames.TryAdd(node.Output[0], Unique("const_" + node.Output[0]));
        }
    }

    private (IReadOnlyList<OnnxLayer>, IReadOnlyList<PrunableLayer>) DiscoverLayers(GraphProto graph)
    {
        var producers = new Dictionary<string, NodeProto>(StringComparer.Ordinal);
        var consumers = new Dictionary<string, List<NodeProto>>(StringComparer.Ordinal);
        foreach (var node in graph.Node)
        {
            foreach (var output in node.Output) producers[output] = node;
            foreach (var input in node.Input)
            {
                if (!consumers.TryGetValue(input, out var list)) consumers[input] = list = [];
                list.Add(node);
            }
        }

        string? TraceInitializer(string value)
        {
            for (var hops = 0; hops < 16; hops++)
            {
                if (_initializers.ContainsKey(value)) return value;
                if (!producers.TryGetValue(value, out var producer) || !WeightPathOps.Contains(producer.OpType)) return null;
                value = producer.Input[0];
            }
            return null;
        }

        var layers = new List<OnnxLayer>();
        var prunable = new List<PrunableLayer>();
        var claimed = new HashSet<string>(StringComparer.Ordinal);
        var names = new HashSet<string>(StringComparer.Ordinal);
        // A layer's name, made unique among the layers listed so far with a _2, _3, ... suffix.
        string UniqueName(string preferred)
        {
            var name = preferred;
            for (var k = 2; !names.Add(name); k++) name = $"{preferred}_{k}";
            return name;
        }
        var badWeights = new List<string>();
        foreach (var node in graph.Node.Where(n => WeightOps.Contains(n.OpType)))
        {
            if (node.Input.Count < 2) continue;
            var weight = TraceInitializer(node.Input[1]);
            if (weight is null) continue;
            var init = _initializers[weight];
            if (init.DataType != (int)OnnxDataType.Float)
            {
                badWeights.Add($"'{weight}' (weight of {NodeLabel(node)}, {node.OpType}) has element type {OnnxDataTypes.Describe(init.DataType)}");
                continue;
            }
            if (!claimed.Add(weight)) continue;

            string? bias = null;
            if (node.OpType is "Conv" or "ConvTranspose" or "Gemm" && node.Input.Count > 2 && node.Input[2] != "")
            {
                bias = _initializers.ContainsKey(node.Input[2]) ? node.Input[2] : null;
            }
            else if (consumers.TryGetValue(node.Output[0], out var next) && next.Count == 1 && next[0].OpType == "Add"
                && !graph.Output.Any(o => o.Name == node.Output[0]))
            {
                var add = next[0];
                var other = add.Input[0] == node.Output[0] ? add.Input[1] : add.Input[0];
                if (_initializers.TryGetValue(other, out var b) && IsBiasShape(node.OpType, init, b)) bias = other;
            }
            if (bias is not null && (_initializers[bias].DataType != (int)OnnxDataType.Float || !claimed.Add(bias)))
            {
                bias = null;
            }

            var name = UniqueName(string.IsNullOrEmpty(node.Name) ? weight : node.Name);
            var count = OnnxTensors.ElementCount(init.Dims) + (bias is null ? 0 : OnnxTensors.ElementCount(_initializers[bias].Dims));
            layers.Add(new OnnxLayer(name, node.OpType, init.Dims.ToArray(), count, true, weight, bias));
            prunable.Add(new PrunableLayer(name,
                node.OpType is "Conv" or "ConvTranspose" ? LayerKind.Convolution : LayerKind.FullyConnected,
                _memberNames[weight], bias is null ? null : _memberNames[bias]));
        }
        // A Gather over a stored float table along its first axis is an embedding lookup: the table is a layer, pruned only
        // when the settings ask for it (PrunableLayer.Embedding).
        foreach (var node in graph.Node.Where(n => n.OpType == "Gather" && n.Input.Count == 2))
        {
            if (TraceInitializer(node.Input[0]) is not { } table || !_parameters.Contains(table) || claimed.Contains(table)) continue;
            var init = _initializers[table];
            var axis = node.Attribute.FirstOrDefault(a => a.Name == "axis")?.I ?? 0;
            if (init.Dims.Count != 2 || axis is not (0 or -2)) continue;
            claimed.Add(table);
            var name = UniqueName(string.IsNullOrEmpty(node.Name) ? table : node.Name);
            layers.Add(new OnnxLayer(name, node.OpType, init.Dims.ToArray(), OnnxTensors.ElementCount(init.Dims), true, table, null));
            prunable.Add(new PrunableLayer(name, LayerKind.FullyConnected, _memberNames[table], null, Embedding: true));
        }
        // A recurrent node's input weights W and recurrent weights R are pruned gate by gate: each gate of each direction
        // is a layer of its own (a block of the weight, with its own thresholds), since gates differ in scale and in how
        // much they tolerate. The bias B, which holds the biases of W and R, goes unpruned with W's first block.
        foreach (var node in graph.Node.Where(n => n.OpType is "LSTM" or "GRU" or "RNN"))
        {
            foreach (var (index, suffix) in new[] { (1, "W"), (2, "R") })
            {
                if (node.Input.Count <= index || TraceInitializer(node.Input[index]) is not { } weight) continue;
                var init = _initializers[weight];
                if (init.DataType != (int)OnnxDataType.Float)
                {
                    badWeights.Add($"'{weight}' ({suffix} of {NodeLabel(node)}, {node.OpType}) has element type {OnnxDataTypes.Describe(init.DataType)}");
                    continue;
                }
                if (!claimed.Add(weight)) continue;
                string? bias = null;
                if (index == 1 && node.Input.Count > 3 && _initializers.TryGetValue(node.Input[3], out var b)
                    && b.DataType == (int)OnnxDataType.Float && claimed.Add(b.Name))
                {
                    bias = b.Name;
                }
                var baseName = $"{(string.IsNullOrEmpty(node.Name) ? weight : node.Name)}/{suffix}";
                foreach (var (block, slice) in RecurrentBlocks(node, init.Dims))
                {
                    var name = UniqueName(block.Length == 0 ? baseName : $"{baseName}/{block}");
                    var shape = slice is null ? init.Dims.ToArray() : [slice.Rows, init.Dims[2]];
                    var count = OnnxTensors.ElementCount(shape) + (bias is null ? 0 : OnnxTensors.ElementCount(_initializers[bias].Dims));
                    layers.Add(new OnnxLayer(name, node.OpType, shape, count, true, weight, bias));
                    prunable.Add(new PrunableLayer(name, LayerKind.FullyConnected, _memberNames[weight], bias is null ? null : _memberNames[bias], slice));
                    bias = null;
                }
            }
        }
        if (badWeights.Count > 0)
        {
            throw new SurgeryException("Unsupported ONNX weights",
                $"only FLOAT (float32) weights can be trained; weight initializer(s) {string.Join("; ", badWeights)}", ErrorKind.Unsupported);
        }

        foreach (var node in graph.Node)
        {
            var held = node.Input.Where(i => _parameters.Contains(i) && !claimed.Contains(i)).Distinct().ToList();
            if (held.Count == 0) continue;
            claimed.UnionWith(held);
            var name = UniqueName(string.IsNullOrEmpty(node.Name) ? held[0] : node.Name);
            layers.Add(new OnnxLayer(name, node.OpType, _initializers[held[0]].Dims.ToArray(),
                held.Sum(h => OnnxTensors.ElementCount(_initializers[h].Dims)), false, held[0], held.Count > 1 ? held[1] : null));
        }
        return (layers, prunable);
    }

    /// <summary>
    /// The gates of a recurrent weight <c>[directions, gates * hidden, columns]</c> in ONNX's order (LSTM: i, o, f, c;
    /// GRU: z, r, h; RNN: one), per direction when there are two: each named ("forward/i", "z", ...) with its block.
    /// A weight of one direction and one gate is one block, the whole weight (an empty name, no slice).
    /// </summary>
    private static IEnumerable<(string Name, WeightSlice? Slice)> RecurrentBlocks(NodeProto node, IList<long> dims)
    {
        string[] gates = node.OpType switch { "LSTM" => ["i", "o", "f", "c"], "GRU" => ["z", "r", "h"], _ => [""] };
        if (dims.Count != 3 || dims[1] % gates.Length != 0)
        {
            yield return ("", null); // a shape the operator refuses at run time; listed whole
            yield break;
        }
        var directions = dims[0];
        if (directions == 1 && gates.Length == 1)
        {
            yield return ("", null);
            yield break;
        }
        var rows = dims[1] / gates.Length;
        for (var d = 0L; d < directions; d++)
        {
            var direction = directions == 1 ? "" : (d == 0 ? "forward" : "reverse");
            for (var g = 0; g < gates.Length; g++)
            {
                var name = string.Join("/", new[] { direction, gates[g] }.Where(p => p.Length > 0));
                yield return (name, new WeightSlice(d, g * rows, rows));
            }
        }
    }

    /// <summary>
    /// Whether an initializer added right after a layer is that layer's bias: one value per output channel laid out
    /// to broadcast over the channel axis ([C,1,1] or [1,C,1,1] after a 2-D convolution, [N] or [1,N] after a matrix
    /// product). The weight's own dimensions may be hidden behind a Reshape, so only the layout is checked for Conv.
    /// </summary>
    private static bool IsBiasShape(string op, TensorProto weight, TensorProto bias)
    {
        var b = bias.Dims.ToArray();
        if (op is "Conv" or "ConvTranspose")
        {
            var lead = b.Length > 0 && b[0] == 1 && b.Length >= 3 ? 1 : 0;
            return b.Length - lead >= 2 && b[lead] > 1 && b.Skip(lead + 1).All(d => d == 1);
        }
        var n = b.Length == 2 && b[0] == 1 ? b[1] : b.Length == 1 ? b[0] : -1;
        return n > 0 && (n == weight.Dims[^1] || n == weight.Dims[0]);
    }
}
