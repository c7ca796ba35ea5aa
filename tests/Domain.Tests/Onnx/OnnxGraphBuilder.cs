using System.Text;
using Google.Protobuf;
using SurgeryService.Domain.Onnx;
using SurgeryService.Domain.Onnx.Proto;

namespace SurgeryService.Domain.Tests.Onnx;

/// <summary>Builds ONNX models in code, the way exporters lay them out, for tests.</summary>
internal sealed class OnnxGraphBuilder(int opset = 13)
{
    private readonly GraphProto _graph = new() { Name = "test" };
    private readonly Random _random = new(42);
    private int _counter;

    public int Opset { get; } = opset;

    /// <summary>IR version that exporters pair with the opset (ONNX's versioning table).</summary>
    public long IrVersion => Opset switch { <= 8 => 3, 9 => 4, 10 => 5, 11 => 6, <= 14 => 7, <= 18 => 8, _ => 9 };

    /// <summary>A float graph input; -1 dimensions become the symbolic dimension "N".</summary>
    public string Input(string name, params long[] dims)
    {
        var shape = new TensorShapeProto();
        foreach (var d in dims)
        {
            shape.Dim.Add(d < 0 ? new TensorShapeProto.Types.Dimension { DimParam = "N" } : new TensorShapeProto.Types.Dimension { DimValue = d });
        }
        _graph.Input.Add(new ValueInfoProto
        {
            Name = name,
            Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)OnnxDataType.Float, Shape = shape } },
        });
        return name;
    }

    public void Output(string name) => _graph.Output.Add(new ValueInfoProto
    {
        Name = name,
        Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)OnnxDataType.Float } },
    });

    public float[] RandomValues(long count, double scale = 0.5) =>
        Enumerable.Range(0, (int)count).Select(_ => (float)((_random.NextDouble() * 2 - 1) * scale)).ToArray();

    /// <summary>A float initializer, random unless values are given; stored in raw_data or float_data like exporters do.</summary>
    public string Init(string name, long[] dims, float[]? values = null, bool raw = true, double scale = 0.5)
    {
        values ??= RandomValues(dims.Aggregate(1L, (p, d) => p * d), scale);
        var tensor = new TensorProto { Name = name, DataType = (int)OnnxDataType.Float, Dims = { dims } };
        if (raw) tensor.RawData = ByteString.CopyFrom(System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()));
        else tensor.FloatData.AddRange(values);
        return AddInitializer(tensor);
    }

    public string Longs(string name, params long[] values) =>
        AddInitializer(new TensorProto { Name = name, DataType = (int)OnnxDataType.Int64, Dims = { values.Length }, Int64Data = { values } });

    public string AddInitializer(TensorProto tensor)
    {
        _graph.Initializer.Add(tensor);
        if (IrVersion < 4)
        {
            // Before IR 4 every initializer had to be listed among the graph inputs as well.
            _graph.Input.Add(new ValueInfoProto
            {
                Name = tensor.Name,
                Type = new TypeProto
                {
                    TensorType = new TypeProto.Types.Tensor
                    {
                        ElemType = tensor.DataType,
                        Shape = new TensorShapeProto { Dim = { tensor.Dims.Select(d => new TensorShapeProto.Types.Dimension { DimValue = d }) } },
                    },
                },
            });
        }
        return tensor.Name;
    }

    /// <summary>Adds a node and returns its (first) output's name.</summary>
    public string Node(string op, string[] inputs, params (string Name, object Value)[] attributes) =>
        NodeWithOutputs(op, inputs, 1, null, attributes)[0];

    public string Named(string name, string op, string[] inputs, params (string Name, object Value)[] attributes) =>
        NodeWithOutputs(op, inputs, 1, name, attributes)[0];

    public string[] NodeWithOutputs(string op, string[] inputs, int outputs, string? name, params (string Name, object Value)[] attributes)
    {
        var node = new NodeProto { OpType = op, Name = name ?? $"{op}_{_counter}" };
        node.Input.AddRange(inputs);
        for (var i = 0; i < outputs; i++) node.Output.Add($"{op.ToLowerInvariant()}_{_counter}_out{i}");
        _counter++;
        foreach (var (attrName, value) in attributes)
        {
            var attribute = new AttributeProto { Name = attrName };
            switch (value)
            {
                case int v: attribute.I = v; attribute.Type = AttributeProto.Types.AttributeType.Int; break;
                case long v: attribute.I = v; attribute.Type = AttributeProto.Types.AttributeType.Int; break;
                case float v: attribute.F = v; attribute.Type = AttributeProto.Types.AttributeType.Float; break;
                case string v: attribute.S = ByteString.CopyFrom(Encoding.UTF8.GetBytes(v)); attribute.Type = AttributeProto.Types.AttributeType.String; break;
                case long[] v: attribute.Ints.AddRange(v); attribute.Type = AttributeProto.Types.AttributeType.Ints; break;
                case float[] v: attribute.Floats.AddRange(v); attribute.Type = AttributeProto.Types.AttributeType.Floats; break;
                case TensorProto v: attribute.T = v; attribute.Type = AttributeProto.Types.AttributeType.Tensor; break;
                default: throw new ArgumentException($"attribute type {value.GetType()}");
            }
            node.Attribute.Add(attribute);
        }
        _graph.Node.Add(node);
        return node.Output.ToArray();
    }

    public ModelProto Build(string? outputName = null)
    {
        if (outputName is not null) Output(outputName);
        return new ModelProto
        {
            IrVersion = IrVersion,
            ProducerName = "surgery-tests",
            ProducerVersion = "1",
            Graph = _graph.Clone(),
            OpsetImport = { new OperatorSetIdProto { Domain = "", Version = Opset } },
            MetadataProps = { new StringStringEntryProto { Key = "origin", Value = "hand-built" } },
        };
    }

    public byte[] Bytes(string? outputName = null) => Build(outputName).ToByteArray();
}
