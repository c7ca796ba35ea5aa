using System.Runtime.InteropServices;
using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using SurgeryService.Api.Tests.Infrastructure;
using SurgeryService.Domain.Datasets;
using SurgeryService.Domain.Deployment;
using SurgeryService.Domain.Onnx;
using SurgeryService.Domain.Onnx.Proto;
using SurgeryService.Infrastructure.Deployment;
using static TorchSharp.torch;

namespace SurgeryService.Api.Tests.Deployment;

/// <summary>
/// Int8 QDQ quantization of a pruned ONNX MLP, calibrated and run in ONNX Runtime (no database): the exact zeros of
/// pruning, the graph ONNX Runtime loads, and the budget that decides whether int8 is delivered.
/// </summary>
public sealed class Int8QuantizationTests : IDisposable
{
    private const int Samples = 300;
    private readonly TensorDataset _samples = MnistSamples();

    public void Dispose() => _samples.Dispose();

    [Fact]
    public void PrunedZerosStayExactZerosInTheInt8WeightsAndInTheirSparseStorage()
    {
        // 95% zeros: int8 values with int64 indices take 9 bytes per kept weight, so sparse storage pays off past 8/9 zeros.
        var pruned = Pruned(OnnxMlp.Create(hidden: 32), keepEvery: 20);
        var fp32 = ModelProto.Parser.ParseFrom(pruned).Graph.Initializer.ToDictionary(i => i.Name);

        var int8 = Int8Calibration.Quantize(pruned, _samples, samples: 100);

        var quantized = ModelProto.Parser.ParseFrom(int8.Dense).Graph.Initializer.ToDictionary(i => i.Name);
        Assert.Equal(["fc1.weight", "fc2.weight"], int8.Weights.Select(w => w.Initializer));
        foreach (var weight in int8.Weights)
        {
            var before = MemoryMarshal.Cast<byte, float>(fp32[weight.Initializer].RawData.Span).ToArray();
            var after = MemoryMarshal.Cast<byte, sbyte>(quantized[weight.Initializer + "_quantized"].RawData.Span).ToArray();
            Assert.Equal((int)OnnxDataType.Int8, quantized[weight.Initializer + "_quantized"].DataType);
            Assert.Equal(before.Length, after.Length);
            var prunedZeros = Enumerable.Range(0, before.Length).Where(i => before[i] == 0).ToList();
            Assert.True(prunedZeros.Count >= before.Length * 9 / 10, $"{weight.Initializer}: {prunedZeros.Count} zeros");
            Assert.All(prunedZeros, i => Assert.Equal(0, after[i]));
            Assert.Equal(after.LongCount(v => v == 0), weight.Zeros);
            Assert.All(MemoryMarshal.Cast<byte, sbyte>(quantized[weight.Initializer + "_zero_point"].RawData.Span).ToArray(), z => Assert.Equal(0, z));
        }

        // The sparse int8 file stores exactly the nonzero int8 values, and ONNX Runtime computes the same with it.
        var sparse = ModelProto.Parser.ParseFrom(int8.Sparse).Graph.SparseInitializer.ToDictionary(s => s.Values.Name);
        Assert.Equal(["fc1.weight_quantized", "fc2.weight_quantized"], int8.SparseInitializers);
        foreach (var weight in int8.Weights)
        {
            Assert.Equal(weight.Count - weight.Zeros, sparse[weight.Initializer + "_quantized"].Values.Dims[0]);
        }
        Assert.True(int8.Sparse.Length < int8.Dense.Length);
        Assert.Equal(Scores(int8.Dense), Scores(int8.Sparse));
    }

    [Fact]
    public void TheQdqModelLoadsInOnnxRuntimeWithQuantizeAndDequantizeAroundEveryGemmAndKeepsItsAccuracy()
    {
        var pruned = Pruned(OnnxMlp.Create(hidden: 32), keepEvery: 2);

        var int8 = Int8Calibration.Quantize(pruned, _samples, samples: 100);

        var graph = ModelProto.Parser.ParseFrom(int8.Dense).Graph;
        var produced = graph.Node.SelectMany(n => n.Output.Select(o => (Output: o, Node: n))).ToDictionary(p => p.Output, p => p.Node);
        foreach (var gemm in graph.Node.Where(n => n.OpType == "Gemm"))
        {
            Assert.Equal("DequantizeLinear", produced[gemm.Input[0]].OpType);
            Assert.Equal("QuantizeLinear", produced[produced[gemm.Input[0]].Input[0]].OpType);
            Assert.Equal("DequantizeLinear", produced[gemm.Input[1]].OpType);
            Assert.Equal("DequantizeLinear", produced[gemm.Input[2]].OpType); // int32 bias, so the runtime fuses the node
        }
        Assert.DoesNotContain(graph.Node, n => n.OpType == "Relu"); // folded into the quantization of fc1's output
        var info = ModelProto.Parser.ParseFrom(int8.Dense).MetadataProps.Single(p => p.Key == Int8Quantizer.MetadataKey).Value;
        Assert.Contains("\"calibration\":\"minmax\"", info);
        Assert.Contains("\"calibrationSamples\":100", info);

        using var fp32Session = new InferenceSession(pruned);
        using var int8Session = new InferenceSession(int8.Dense);
        var fp32Top1 = DeploymentMeasurement.Top1(fp32Session, _samples);
        var int8Top1 = DeploymentMeasurement.Top1(int8Session, _samples);
        Assert.InRange(int8Top1, fp32Top1 - 0.03, fp32Top1 + 0.03);
    }

    [Fact]
    public void Int8BelowTheBudgetsFloorIsNotDeliveredAndTheReasonSaysWhy()
    {
        var original = OnnxMlp.Create(hidden: 32);
        var pruned = Pruned(original, keepEvery: 2);
        using var session = new InferenceSession(pruned);
        var fp32Top1 = DeploymentMeasurement.Top1(session, _samples);
        var lines = new List<string>();
        var latency = new LatencySettings(1, 1, 3);

        // A starting model 10 points better than the pruned one and a budget of 1 point: the floor is out of int8's reach.
        var broken = Int8Delivery.Run(original, pruned, pruned, _samples, 100,
            new Int8Budget("validation", _samples, fp32Top1 + 0.10, 1.0), _samples, latency, lines.Add);

        Assert.Null(broken.Int8);
        var quantization = broken.Deployment.Quantization;
        Assert.Equal("fp32", quantization.Delivered);
        Assert.Equal(fp32Top1 + 0.09, quantization.Floor!.Value, 9);
        Assert.StartsWith("int8 validation top-1 ", quantization.FallbackReason);
        Assert.Contains("is below the budget's floor", quantization.FallbackReason);
        Assert.EndsWith("the float32 model is delivered", quantization.FallbackReason);
        Assert.Equal("int8 not delivered: " + quantization.FallbackReason, lines[0]);
        Assert.Equal(["original", "pruned-fp32", "pruned-int8"], broken.Deployment.Report!.Models.Select(m => m.Name));

        var kept = Int8Delivery.Run(original, pruned, pruned, _samples, 100,
            new Int8Budget("test", _samples, null, 5.0), _samples, latency, _ => { });

        Assert.NotNull(kept.Int8);
        Assert.Equal("int8", kept.Deployment.Quantization.Delivered);
        Assert.Null(kept.Deployment.Quantization.FallbackReason);
        Assert.Equal(("minmax", 100), (kept.Deployment.Quantization.CalibrationMethod, kept.Deployment.Quantization.CalibrationSamples));
    }

    [Fact]
    public void AModelBelowOpset13IsNotQuantizedAndTheReasonNamesTheOpset()
    {
        var proto = ModelProto.Parser.ParseFrom(OnnxMlp.Create(hidden: 16));
        proto.OpsetImport[0].Version = 11;
        var old = proto.ToByteArray();

        var result = Int8Delivery.Run(old, old, old, _samples, 100, new Int8Budget("test", _samples, null, 0.5), _samples,
            new LatencySettings(1, 0, 2), _ => { });

        Assert.Null(result.Int8);
        Assert.Contains("opset 13", result.Deployment.Quantization.FallbackReason);
        Assert.Equal(["original", "pruned-fp32"], result.Deployment.Report!.Models.Select(m => m.Name));
    }

    [Fact]
    public void AModelThatReadsTokenIdsIsNotQuantizedButIsMeasuredWithIdsInOnnxRuntime()
    {
        // The MLP behind a Cast from an INT64 input: a model whose input is ids, as text models' are.
        var proto = ModelProto.Parser.ParseFrom(OnnxMlp.Create(hidden: 16));
        var input = proto.Graph.Input[0];
        input.Name = "ids";
        input.Type.TensorType.ElemType = (int)OnnxDataType.Int64;
        proto.Graph.Node.Insert(0, new NodeProto
        {
            OpType = "Cast", Name = "ids_to_float", Input = { "ids" }, Output = { "x" },
            Attribute = { new AttributeProto { Name = "to", I = (int)OnnxDataType.Float, Type = AttributeProto.Types.AttributeType.Int } },
        });
        var ids = proto.ToByteArray();

        var result = Int8Delivery.Run(ids, ids, ids, _samples, 100, new Int8Budget("test", _samples, null, 0.5), _samples,
            new LatencySettings(1, 0, 2), _ => { });

        Assert.Null(result.Int8);
        Assert.Equal("int8 quantization covers models with a FLOAT input; this model reads token ids (Int64), so the float32 model is delivered",
            result.Deployment.Quantization.FallbackReason);
        Assert.Equal(["original", "pruned-fp32"], result.Deployment.Report!.Models.Select(m => m.Name));
        Assert.All(result.Deployment.Report.Models, m => Assert.InRange(m.Top1, 0, 1));
    }

    /// <summary>The model with all but every <paramref name="keepEvery"/>-th weight of each Gemm set to exactly 0.</summary>
    private static byte[] Pruned(byte[] model, int keepEvery)
    {
        var proto = ModelProto.Parser.ParseFrom(model);
        foreach (var weight in proto.Graph.Initializer.Where(i => i.Name.EndsWith(".weight", StringComparison.Ordinal)))
        {
            var values = MemoryMarshal.Cast<byte, float>(weight.RawData.Span).ToArray();
            for (var i = 0; i < values.Length; i++) if (i % keepEvery != 0) values[i] = 0;
            weight.RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(values.AsSpan()));
        }
        return proto.ToByteArray();
    }

    private float[] Scores(byte[] model)
    {
        using var session = new InferenceSession(model);
        using var scope = NewDisposeScope();
        var input = _samples.Inputs.narrow(0, 0, 20).contiguous().data<float>().ToArray();
        using var value = OrtValue.CreateTensorValueFromMemory(input, [20, 784]);
        using var runOptions = new RunOptions();
        using var outputs = session.Run(runOptions, [session.InputMetadata.Keys.First()], [value], [session.OutputMetadata.Keys.First()]);
        return outputs[0].GetTensorDataAsSpan<float>().ToArray();
    }

    /// <summary>MNIST training images scaled to [0, 1] as [N, 784], the MLP's input.</summary>
    private static TensorDataset MnistSamples()
    {
        var (images, labels, _, _) = TestData.MnistSubset(Samples, 1);
        var x = tensor(images.Select(b => b / 255f).ToArray()).reshape(Samples, 784);
        var y = tensor(labels.Select(b => (long)b).ToArray());
        return new TensorDataset(x, y, 10);
    }
}
