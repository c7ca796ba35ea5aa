using SurgeryService.Domain.Onnx;
using SurgeryService.Domain.Surgery;
using Xunit.Abstractions;

namespace SurgeryService.Domain.Tests.Onnx;

/// <summary>Graph shapes real exporters produce: how weights and biases are found, and run-time shape arithmetic.</summary>
public class OnnxGraphShapeTests(ITestOutputHelper output)
{
    [Fact]
    public void WeightReachingMatMulThroughTransposeIsPrunableWithItsSeparateAddBias()
    {
        var g = new OnnxGraphBuilder(13);
        var x = g.Input("x", -1, 6);
        var wt = g.Node("Transpose", [g.Init("fc.weight", [4, 6])], ("perm", new long[] { 1, 0 }));
        var y = g.Named("/fc/MatMul", "MatMul", [x, wt]);
        var z = g.Node("Add", [y, g.Init("fc.bias", [4])]);
        var bytes = g.Bytes(z);

        var model = OnnxModel.Load(bytes);
        var layer = Assert.Single(model.PrunableLayers);
        Assert.Equal(new PrunableLayer("/fc/MatMul", LayerKind.FullyConnected, "fc_weight", "fc_bias"), layer);
        Assert.Equal("fc.weight", model.InitializerOf("fc_weight"));
        output.WriteLine($"max abs diff {OnnxParity.AssertMatches(bytes, [3, 6]):g3}");
    }

    [Fact]
    public void ConvWeightReachedThroughReshapeAndCastWithBiasAddedAsC11IsPrunable()
    {
        var g = new OnnxGraphBuilder(13);
        var x = g.Input("x", -1, 2, 7, 7);
        var w = g.Node("Cast", [g.Node("Reshape", [g.Init("conv/kernel:0", [3 * 2 * 3 * 3]), g.Longs("kshape", 3, 2, 3, 3)])], ("to", 1L));
        var y = g.Named("conv", "Conv", [x, w]);
        var z = g.Node("Add", [y, g.Init("conv/bias:0", [3, 1, 1])]);
        var bytes = g.Bytes(z);

        var model = OnnxModel.Load(bytes);
        var layer = Assert.Single(model.PrunableLayers);
        Assert.Equal(new PrunableLayer("conv", LayerKind.Convolution, "conv_kernel_0", "conv_bias_0"), layer);
        output.WriteLine($"max abs diff {OnnxParity.AssertMatches(bytes, [2, 2, 7, 7]):g3}");
    }

    [Fact]
    public void GemmWithTransposedWeightHasItsCInputAsBias()
    {
        var g = new OnnxGraphBuilder(9);
        var x = g.Input("x", 1, 5);
        var y = g.Named("fc1", "Gemm", [x, g.Init("fc1.weight", [3, 5]), g.Init("fc1.bias", [3])], ("transB", 1L));
        var model = OnnxModel.Load(g.Bytes(y));
        Assert.Equal(new PrunableLayer("fc1", LayerKind.FullyConnected, "fc1_weight", "fc1_bias"), Assert.Single(model.PrunableLayers));
    }

    [Fact]
    public void LayerListNamesEveryParameterHolderWithShapeCountAndPrunability()
    {
        var g = new OnnxGraphBuilder(13);
        var x = g.Input("x", -1, 1, 6, 6);
        var c = g.Named("conv1", "Conv", [x, g.Init("conv1.weight", [4, 1, 3, 3]), g.Init("conv1.bias", [4])]);
        var bn = g.Named("bn1", "BatchNormalization", [c, g.Init("bn1.weight", [4]), g.Init("bn1.bias", [4]), g.Init("bn1.running_mean", [4]), g.Init("bn1.running_var", [4], [1, 1, 1, 1])]);
        var f = g.Node("Flatten", [bn]);
        var y = g.Named("fc", "Gemm", [f, g.Init("fc.weight", [3, 64]), g.Init("fc.bias", [3])], ("transB", 1L));
        var model = OnnxModel.Load(g.Bytes(g.Node("Softmax", [y])));

        Assert.Collection(model.Layers,
            l => Assert.Equal(("conv1", "Conv", 40L, true), (l.Name, l.Op, l.ParameterCount, l.Prunable)),
            l =>
            {
                Assert.Equal(("fc", "Gemm", 195L, true), (l.Name, l.Op, l.ParameterCount, l.Prunable));
                Assert.Equal([3, 64], l.Shape);
            },
            l => Assert.Equal(("bn1", "BatchNormalization", 8L, false), (l.Name, l.Op, l.ParameterCount, l.Prunable)));
        Assert.Equal(["bn1.running_mean", "bn1.running_var"], model.StatisticInitializers.Order());
        Assert.DoesNotContain("bn1.running_mean", model.ParameterInitializers);
    }

    [Fact]
    public void RunTimeFlattenWorksForAnyBatchSizeWhenTheDeclaredBatchIsFixed()
    {
        var g = new OnnxGraphBuilder(11);
        var x = g.Input("x", 1, 2, 4, 4);
        var c = g.Node("Conv", [x, g.Init("w", [3, 2, 3, 3])]);
        var shape = g.Node("Shape", [c]);
        var batch = g.Node("Gather", [shape, g.AddInitializer(new() { Name = "zero", DataType = 7, Int64Data = { 0 } })], ("axis", 0L));
        var dims = g.Node("Concat", [g.Node("Unsqueeze", [batch], ("axes", new long[] { 0 })), g.Longs("minus_one", -1)], ("axis", 0L));
        var flat = g.Node("Reshape", [c, dims]);
        var y = g.Node("Gemm", [flat, g.Init("fc", [5, 12]), g.Init("fcb", [5])], ("transB", 1L));
        AssertBatchesMatchPerSample(g.Bytes(y), [2, 4, 4], batch: 5);
    }

    [Fact]
    public void ConstantReshapeWithTheDeclaredBatchBakedInFollowsTheActualBatch()
    {
        // A PyTorch export without dynamic axes folds x.view(x.size(0), -1) into the constant shape [1, 12].
        var g = new OnnxGraphBuilder(13);
        var x = g.Input("x", 1, 2, 4, 4);
        var c = g.Node("Conv", [x, g.Init("w", [3, 2, 3, 3])]);
        var flat = g.Node("Reshape", [c, g.Longs("shape", 1, 12)]);
        var y = g.Node("MatMul", [flat, g.Init("fc", [12, 5])]);
        AssertBatchesMatchPerSample(g.Bytes(y), [2, 4, 4], batch: 6);
    }

    [Fact]
    public void LeNet5GraphAsPyTorchExportsItMatchesOnnxRuntime()
    {
        var bytes = OnnxLeNet5SurgeryTests.LeNet5Graph();
        output.WriteLine($"LeNet-5 graph: max abs diff {OnnxParity.AssertMatches(bytes, [4, 1, 28, 28]):g3}");
        var model = OnnxModel.Load(bytes);
        Assert.Equal(["conv1", "conv2", "fc1", "fc2"], model.PrunableLayers.Select(l => l.Name));
        Assert.Equal(["conv1_bias", "conv2_bias", "fc1_bias", "fc2_bias"], model.PrunableLayers.Select(l => l.BiasParameter));
        Assert.Equal(431080, model.Layers.Sum(l => l.ParameterCount));
    }

    [Fact]
    public void OutputLogitsSkipsTheFinalSoftmaxOnlyWhenAsked()
    {
        var g = new OnnxGraphBuilder(13);
        var x = g.Input("x", -1, 4);
        var y = g.Node("Gemm", [x, g.Init("w", [4, 3])]);
        var bytes = g.Bytes(g.Node("Identity", [g.Node("Softmax", [y])]));
        var model = OnnxModel.Load(bytes);
        using var full = OnnxModule.Create(model);
        using var logits = OnnxModule.Create(model, outputLogits: true);
        var input = OnnxParity.RandomInput([2, 4]);
        var probabilities = OnnxParity.RunTorch(full, input, [2, 4], out _);
        var scores = OnnxParity.RunTorch(logits, input, [2, 4], out _);
        Assert.False(full.OutputsLogits);
        Assert.True(logits.OutputsLogits);
        Assert.Equal(1.0, probabilities[0] + probabilities[1] + probabilities[2], 5);
        var expSum = Math.Exp(scores[0]) + Math.Exp(scores[1]) + Math.Exp(scores[2]);
        Assert.Equal(probabilities[0], Math.Exp(scores[0]) / expSum, 5);
    }

    [Fact]
    public void ExternalDataBesideTheModelIsRead()
    {
        var directory = Directory.CreateTempSubdirectory("onnx-external");
        try
        {
            var g = new OnnxGraphBuilder(13);
            var x = g.Input("x", -1, 3);
            var y = g.Node("MatMul", [x, g.Init("w", [3, 2])]);
            var model = g.Build(y);
            var weight = model.Graph.Initializer[0];
            var data = new byte[16].Concat(weight.RawData.ToByteArray()).ToArray();
            File.WriteAllBytes(Path.Combine(directory.FullName, "weights.bin"), data);
            weight.ClearRawData();
            weight.DataLocation = 1;
            weight.ExternalData.Add(new Domain.Onnx.Proto.StringStringEntryProto { Key = "location", Value = "weights.bin" });
            weight.ExternalData.Add(new Domain.Onnx.Proto.StringStringEntryProto { Key = "offset", Value = "16" });
            weight.ExternalData.Add(new Domain.Onnx.Proto.StringStringEntryProto { Key = "length", Value = "24" });
            var path = Path.Combine(directory.FullName, "model.onnx");
            File.WriteAllBytes(path, Google.Protobuf.MessageExtensions.ToByteArray(model));

            using var session = new Microsoft.ML.OnnxRuntime.InferenceSession(path);
            var input = OnnxParity.RandomInput([2, 3]);
            var (expected, _) = OnnxRuntimeRunner.Run(session, input, [2, 3]);
            using var module = OnnxModule.Create(OnnxModel.Load(path));
            Assert.True(OnnxParity.MaxAbsDiff(expected, OnnxParity.RunTorch(module, input, [2, 3], out _)) <= OnnxParity.Tolerance);
        }
        finally
        {
            directory.Delete(recursive: true);
        }
    }

    private void AssertBatchesMatchPerSample(byte[] bytes, long[] sample, int batch)
    {
        using var module = OnnxModule.Create(OnnxModel.Load(bytes));
        var perSample = sample.Aggregate(1L, (p, d) => p * d);
        var input = OnnxParity.RandomInput([batch, .. sample]);
        var actual = OnnxParity.RunTorch(module, input, [batch, .. sample], out var shape);
        Assert.Equal(batch, shape[0]);
        var width = actual.Length / batch;
        double max = 0;
        for (var i = 0; i < batch; i++)
        {
            var (expected, _) = OnnxRuntimeRunner.Run(bytes, input.Skip((int)(i * perSample)).Take((int)perSample).ToArray(), [1, .. sample]);
            max = Math.Max(max, OnnxParity.MaxAbsDiff(expected, actual.Skip(i * width).Take(width).ToArray()));
        }
        Assert.True(max <= OnnxParity.Tolerance, $"max abs difference {max:g3}");
        output.WriteLine($"batch {batch} against ONNX Runtime per sample: max abs diff {max:g3}");
    }
}
