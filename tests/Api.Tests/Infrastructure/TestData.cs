using System.IO.Compression;
using System.Text;
using SurgeryService.Domain.Models;
using SurgeryService.Tests.Shared;
using static TorchSharp.torch;

namespace SurgeryService.Api.Tests.Infrastructure;

/// <summary>Small models and datasets for service tests: a few hundred MNIST samples, an untrained LeNet.</summary>
public static class TestData
{
    public static string MnistDirectory => TestMnist.Directory;

    /// <summary>The first samples of MNIST's train and test sets as raw IDX parts (images uint8 [N,28,28], labels uint8 [N]).</summary>
    public static (byte[] TrainImages, byte[] TrainLabels, byte[] TestImages, byte[] TestLabels) MnistSubset(int train, int test)
    {
        byte[] Slice(string file, int count, int sampleBytes, int header)
        {
            var all = File.ReadAllBytes(Path.Combine(MnistDirectory, file));
            return all.AsSpan(header, count * sampleBytes).ToArray();
        }
        return (Slice("train-images-idx3-ubyte", train, 784, 16), Slice("train-labels-idx1-ubyte", train, 1, 8),
            Slice("t10k-images-idx3-ubyte", test, 784, 16), Slice("t10k-labels-idx1-ubyte", test, 1, 8));
    }

    /// <summary>An .npz (deflated entries) with x uint8 [N,28,28] and y int64 [N].</summary>
    public static byte[] MnistNpz(int train, int test, CompressionLevel compression = CompressionLevel.Fastest)
    {
        var (xTrain, yTrain, xTest, yTest) = MnistSubset(train, test);
        return Npz(compression,
            ("x_train", "|u1", [train, 28, 28], xTrain),
            ("y_train", "<i8", [train], Int64(yTrain)),
            ("x_test", "|u1", [test, 28, 28], xTest),
            ("y_test", "<i8", [test], Int64(yTest)));
    }

    /// <summary>
    /// An .npz as <see cref="MnistNpz"/> with a validation split as well: x_val/y_val are the <paramref name="validation"/>
    /// training images after the first <paramref name="train"/>, which the training arrays do not hold.
    /// </summary>
    public static byte[] MnistNpzWithValidation(int train, int validation, int test)
    {
        var (xAll, yAll, xTest, yTest) = MnistSubset(train + validation, test);
        return Npz(CompressionLevel.Fastest,
            ("x_train", "|u1", [train, 28, 28], xAll[..(train * 784)]),
            ("y_train", "<i8", [train], Int64(yAll[..train])),
            ("x_test", "|u1", [test, 28, 28], xTest),
            ("y_test", "<i8", [test], Int64(yTest)),
            ("x_val", "|u1", [validation, 28, 28], xAll[(train * 784)..]),
            ("y_val", "<i8", [validation], Int64(yAll[train..])));
    }

    /// <summary>A zip of the four IDX files as MNIST names them.</summary>
    public static byte[] MnistIdxZip(int train, int test)
    {
        var (xTrain, yTrain, xTest, yTest) = MnistSubset(train, test);
        using var memory = new MemoryStream();
        using (var zip = new ZipArchive(memory, ZipArchiveMode.Create, leaveOpen: true))
        {
            Add(zip, "train-images-idx3-ubyte", Idx(0x08, [train, 28, 28], xTrain));
            Add(zip, "train-labels-idx1-ubyte", Idx(0x08, [train], yTrain));
            Add(zip, "t10k-images-idx3-ubyte", Idx(0x08, [test, 28, 28], xTest));
            Add(zip, "t10k-labels-idx1-ubyte", Idx(0x08, [test], yTest));
        }
        return memory.ToArray();
    }

    public static byte[] Npz(CompressionLevel compression, params (string Name, string DType, int[] Shape, byte[] Data)[] arrays)
    {
        using var memory = new MemoryStream();
        using (var zip = new ZipArchive(memory, ZipArchiveMode.Create, leaveOpen: true))
        {
            foreach (var (name, dtype, shape, data) in arrays)
            {
                var shapeText = shape.Length == 1 ? $"({shape[0]},)" : $"({string.Join(", ", shape)})";
                var header = $"{{'descr': '{dtype}', 'fortran_order': False, 'shape': {shapeText}, }}";
                var total = 10 + header.Length + 1;
                header = header.PadRight(header.Length + (64 - total % 64) % 64) + "\n";
                using var npy = new MemoryStream();
                npy.Write([0x93, .. "NUMPY"u8, 1, 0]);
                npy.Write(BitConverter.GetBytes((ushort)header.Length));
                npy.Write(Encoding.ASCII.GetBytes(header));
                npy.Write(data);
                var entry = zip.CreateEntry(name + ".npy", compression);
                using var stream = entry.Open();
                stream.Write(npy.ToArray());
            }
        }
        return memory.ToArray();
    }

    public static byte[] Int64(byte[] labels) => labels.SelectMany(l => BitConverter.GetBytes((long)l)).ToArray();

    public static byte[] Float32(byte[] values, float scale = 1) => values.SelectMany(v => BitConverter.GetBytes(v * scale)).ToArray();

    /// <summary>A freshly initialised (seeded) built-in architecture saved with Module.save.</summary>
    public static byte[] TorchSharpWeights(string architecture, int seed = 1)
    {
        random.manual_seed(seed);
        using var module = Architectures.Create(architecture);
        using var memory = new MemoryStream();
        using (var writer = new BinaryWriter(memory, Encoding.UTF8, leaveOpen: true))
        {
            module.save(writer);
        }
        return memory.ToArray();
    }

    private static void Add(ZipArchive zip, string name, byte[] data)
    {
        using var stream = zip.CreateEntry(name, CompressionLevel.Fastest).Open();
        stream.Write(data);
    }

    public static byte[] Idx(byte type, int[] shape, byte[] data)
    {
        using var memory = new MemoryStream();
        memory.Write([0, 0, type, (byte)shape.Length]);
        foreach (var d in shape) memory.Write(BitConverter.GetBytes(System.Buffers.Binary.BinaryPrimitives.ReverseEndianness(d)));
        memory.Write(data);
        return memory.ToArray();
    }
}

/// <summary>A small ONNX MLP as exporters write it: x [N, 784] -> Gemm -> Relu -> Gemm -> Softmax.</summary>
public static class OnnxMlp
{
    public static byte[] Create(int hidden = 64, int seed = 3)
    {
        var random = new Random(seed);
        SurgeryService.Domain.Onnx.Proto.TensorProto Init(string name, long[] dims, double scale)
        {
            var values = Enumerable.Range(0, (int)dims.Aggregate(1L, (a, b) => a * b))
                .Select(_ => (float)((random.NextDouble() * 2 - 1) * scale)).ToArray();
            return new SurgeryService.Domain.Onnx.Proto.TensorProto
            {
                Name = name,
                DataType = 1, // FLOAT
                Dims = { dims },
                RawData = Google.Protobuf.ByteString.CopyFrom(System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan())),
            };
        }
        SurgeryService.Domain.Onnx.Proto.NodeProto Node(string op, string name, string[] inputs, string output, long? transB = null)
        {
            var node = new SurgeryService.Domain.Onnx.Proto.NodeProto { OpType = op, Name = name, Input = { inputs }, Output = { output } };
            if (transB is { } t)
            {
                node.Attribute.Add(new SurgeryService.Domain.Onnx.Proto.AttributeProto
                {
                    Name = "transB", I = t, Type = SurgeryService.Domain.Onnx.Proto.AttributeProto.Types.AttributeType.Int,
                });
            }
            return node;
        }
        SurgeryService.Domain.Onnx.Proto.ValueInfoProto Value(string name, params long[] dims)
        {
            var shape = new SurgeryService.Domain.Onnx.Proto.TensorShapeProto();
            foreach (var d in dims)
            {
                shape.Dim.Add(d < 0
                    ? new SurgeryService.Domain.Onnx.Proto.TensorShapeProto.Types.Dimension { DimParam = "N" }
                    : new SurgeryService.Domain.Onnx.Proto.TensorShapeProto.Types.Dimension { DimValue = d });
            }
            return new SurgeryService.Domain.Onnx.Proto.ValueInfoProto
            {
                Name = name,
                Type = new SurgeryService.Domain.Onnx.Proto.TypeProto
                {
                    TensorType = new SurgeryService.Domain.Onnx.Proto.TypeProto.Types.Tensor { ElemType = 1, Shape = shape },
                },
            };
        }

        var graph = new SurgeryService.Domain.Onnx.Proto.GraphProto
        {
            Name = "mlp",
            Input = { Value("x", -1, 784) },
            Output = { Value("probabilities", -1, 10) },
            Initializer =
            {
                Init("fc1.weight", [hidden, 784], Math.Sqrt(6.0 / 784)), Init("fc1.bias", [hidden], 0.01),
                Init("fc2.weight", [10, hidden], Math.Sqrt(6.0 / hidden)), Init("fc2.bias", [10], 0.01),
            },
            Node =
            {
                Node("Gemm", "fc1", ["x", "fc1.weight", "fc1.bias"], "h", transB: 1),
                Node("Relu", "relu1", ["h"], "a"),
                Node("Gemm", "fc2", ["a", "fc2.weight", "fc2.bias"], "logits", transB: 1),
                Node("Softmax", "softmax", ["logits"], "probabilities"),
            },
        };
        var model = new SurgeryService.Domain.Onnx.Proto.ModelProto
        {
            IrVersion = 7,
            ProducerName = "surgery-service-tests",
            Graph = graph,
            OpsetImport = { new SurgeryService.Domain.Onnx.Proto.OperatorSetIdProto { Domain = "", Version = 13 } },
        };
        return Google.Protobuf.MessageExtensions.ToByteArray(model);
    }
}
