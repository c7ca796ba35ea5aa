using System.Diagnostics;
using Microsoft.ML.OnnxRuntime;
using SurgeryService.Domain.Datasets;
using SurgeryService.Domain.Onnx;
using SurgeryService.Domain.Onnx.Proto;
using SurgeryService.Domain.Surgery;
using SurgeryService.Tests.Shared;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace SurgeryService.Domain.Tests.Onnx;

/// <summary>
/// The whole path on MNIST: an ONNX LeNet-5 (Caffe variant) built in code, trained dense in TorchSharp with the engine
/// and written by our writer (there is no PyTorch here, so this stands in for "a model through an exporter"), read
/// back, pruned with DNS, written again and checked through ONNX Runtime.
/// </summary>
public class OnnxLeNet5SurgeryTests(ITestOutputHelper output)
{
    private const int TrainSamples = 12000;
    private const int TestSamples = 10000;

    /// <summary>About two minutes: excluded by <c>--filter "Category!=Slow"</c> while iterating; CI runs it (.ci/run runs every test).</summary>
    [Fact]
    [Trait("Category", "Slow")]
    public void SurgeryOnOnnxLeNet5CompressesTwentyfoldWithoutLosingAccuracyInOnnxRuntime()
    {
        var clock = Stopwatch.StartNew();
        var (rawTrain, rawTest) = Mnist.Load(TestMnist.Directory);
        using var fullTrain = rawTrain;
        using var fullTest = rawTest;
        var preprocessing = new InputPreprocessing { Scale = 1.0 / 255 };

        // 1. Dense training of the hand-built graph, then our writer produces the "exported" dense model.
        var untrained = LeNet5Graph();
        var untrainedModel = OnnxModel.Load(untrained);
        using var train = preprocessing.Apply(Subset(fullTrain, TrainSamples), untrainedModel.InputSampleShape);
        using var test = preprocessing.Apply(Subset(fullTest, TestSamples), untrainedModel.InputSampleShape);
        manual_seed(1);
        byte[] exported;
        using (var denseModule = OnnxModule.Create(untrainedModel, outputLogits: true))
        {
            var denseSettings = new SurgerySettings
            {
                Iterations = 600, LearningRate = 0.03, LrPolicy = LearningRatePolicy.Inv, EvalInterval = 100000, Seed = 1,
            };
            using var denseTrainer = new SurgeryTrainer(denseModule, [], denseSettings);
            var dense = denseTrainer.Run(train, test, new Surgery.Fixtures.RecordingObserver());
            exported = OnnxWriter.Export(denseModule, denseSettings, dense).Dense;
            output.WriteLine($"dense training: engine top-1 {dense.After!.Top1:P2} after {clock.Elapsed.TotalSeconds:F0} s");
        }
        var denseError = 1 - OnnxRuntimeAccuracy(exported, test);

        // 2. Surgery on the uploaded ONNX model, whose execution in TorchSharp first matches ONNX Runtime's.
        var model = OnnxModel.Load(exported);
        Assert.Equal(4, model.PrunableLayers.Count);
        using (var full = OnnxModule.Create(model))
        using (var scope = NewDisposeScope())
        {
            var images = test.Inputs.narrow(0, 0, 64).contiguous();
            var input = images.data<float>().ToArray();
            var (expected, _) = OnnxRuntimeRunner.Run(exported, input, images.shape);
            var diff = OnnxParity.MaxAbsDiff(expected, OnnxParity.RunTorch(full, input, images.shape, out _));
            output.WriteLine($"trained LeNet-5 before surgery, TorchSharp vs ONNX Runtime on 64 test images: max abs diff {diff:g3}");
            Assert.True(diff <= OnnxParity.Tolerance);
        }
        var settings = new SurgerySettings
        {
            Iterations = 1000,
            LearningRate = 0.01,
            LrPolicy = LearningRatePolicy.Inv,
            Gamma = 1e-4,
            ConvIterStop = 700,
            FcIterStop = 700,
            EvalInterval = 100000,
            Seed = 1,
            Layers =
            [
                new LayerSettings { Pattern = "conv1", CRate = 0.3 },
                new LayerSettings { Pattern = "conv2", CRate = 1.2 },
                new LayerSettings { Pattern = "fc1", CRate = 2.2 },
                new LayerSettings { Pattern = "fc2", CRate = 1.2 },
            ],
        };
        using var module = OnnxModule.Create(model, outputLogits: true);
        using var trainer = new SurgeryTrainer(module, model.PrunableLayers, settings);
        var outcome = trainer.Run(train, test, new Surgery.Fixtures.RecordingObserver());
        var export = OnnxWriter.Export(module, settings, outcome);

        // 3. Checked through ONNX Runtime.
        var prunedAccuracy = OnnxRuntimeAccuracy(export.Dense, test);
        var prunedError = 1 - prunedAccuracy;
        var written = ModelProto.Parser.ParseFrom(export.Dense);
        var zeros = model.Layers.Where(l => l.Prunable).Sum(l =>
            OnnxTensors.Floats(written.Graph.Initializer.Single(i => i.Name == l.WeightInitializer), null).LongCount(v => v == 0f));
        var sizes = export.MeasureSizes();
        output.WriteLine($"layers: {string.Join(", ", outcome.Layers.Select(l => $"{l.Layer} {l.RemainingPercent:F2}%"))}");
        output.WriteLine($"compression {outcome.Compression:F1}x ({outcome.Kept} of {outcome.Total} kept), zeros in exported weights {zeros}");
        output.WriteLine($"test error (ONNX Runtime, {TestSamples} MNIST test images): dense {denseError:P2} -> pruned {prunedError:P2}; engine's own: {1 - outcome.After!.Top1:P2}");
        output.WriteLine($"sizes: original {sizes.OriginalBytes} B (gzip {sizes.OriginalGzipBytes}), dense-pruned {sizes.DenseBytes} B (gzip {sizes.DenseGzipBytes}), sparse {sizes.SparseBytes} B (gzip {sizes.SparseGzipBytes}); sparse initializers: {string.Join(", ", export.SparseInitializers)}");
        output.WriteLine($"total {clock.Elapsed.TotalSeconds:F0} s");

        Assert.Equal(outcome.Total - outcome.Kept, zeros);
        Assert.True(outcome.Compression >= 20, $"compression {outcome.Compression:F1}x");
        Assert.True(prunedError - denseError <= 0.003, $"error grew from {denseError:P2} to {prunedError:P2}");
        Assert.InRange(prunedAccuracy - outcome.After.Top1, -0.0005, 0.0005);
        Assert.True(sizes.SparseBytes < sizes.DenseBytes / 5, "sparse form is not much smaller");
        Assert.Equal(OnnxRuntimeAccuracy(export.Sparse, test), prunedAccuracy);
        Assert.Equal(written.Graph.Node, ModelProto.Parser.ParseFrom(exported).Graph.Node);
    }

    /// <summary>LeNet-5 as PyTorch exports it: Conv/MaxPool twice, a run-time flatten, Gemm with transB, a MatMul on a transposed weight plus a separate bias Add, Softmax.</summary>
    internal static byte[] LeNet5Graph()
    {
        var g = new OnnxGraphBuilder(13);
        var random = new Random(5);
        float[] Xavier(long fanIn, long count)
        {
            var limit = Math.Sqrt(3.0 / fanIn);
            return Enumerable.Range(0, (int)count).Select(_ => (float)((random.NextDouble() * 2 - 1) * limit)).ToArray();
        }
        var x = g.Input("input", -1, 1, 28, 28);
        var c1 = g.Named("conv1", "Conv", [x, g.Init("conv1.weight", [20, 1, 5, 5], Xavier(25, 500)), g.Init("conv1.bias", [20], new float[20])], ("kernel_shape", new long[] { 5, 5 }));
        var p1 = g.Node("MaxPool", [c1], ("kernel_shape", new long[] { 2, 2 }), ("strides", new long[] { 2, 2 }));
        var c2 = g.Named("conv2", "Conv", [p1, g.Init("conv2.weight", [50, 20, 5, 5], Xavier(500, 25000)), g.Init("conv2.bias", [50], new float[50])], ("kernel_shape", new long[] { 5, 5 }));
        var p2 = g.Node("MaxPool", [c2], ("kernel_shape", new long[] { 2, 2 }), ("strides", new long[] { 2, 2 }));
        var shape = g.Node("Shape", [p2]);
        var batch = g.Node("Gather", [shape, g.AddInitializer(new TensorProto { Name = "zero", DataType = 7, Int64Data = { 0 } })], ("axis", 0L));
        var dims = g.Node("Concat", [g.Node("Unsqueeze", [batch, g.Longs("axes0", 0)]), g.Longs("minus_one", -1)], ("axis", 0L));
        var flat = g.Node("Reshape", [p2, dims]);
        var f1 = g.Named("fc1", "Gemm", [flat, g.Init("fc1.weight", [500, 800], Xavier(800, 400000)), g.Init("fc1.bias", [500], new float[500])], ("transB", 1L));
        var r1 = g.Node("Relu", [f1]);
        var w2 = g.Node("Transpose", [g.Init("fc2.weight", [10, 500], Xavier(500, 5000))], ("perm", new long[] { 1, 0 }));
        var f2 = g.Named("fc2", "MatMul", [r1, w2]);
        var logits = g.Node("Add", [f2, g.Init("fc2.bias", [10], new float[10])]);
        return g.Bytes(g.Named("prob", "Softmax", [logits]));
    }

    internal static double OnnxRuntimeAccuracy(byte[] model, TensorDataset test)
    {
        using var options = new SessionOptions { IntraOpNumThreads = 2 };
        using var session = new InferenceSession(model, options);
        long correct = 0;
        for (long start = 0; start < test.Count; start += 1000)
        {
            using var scope = NewDisposeScope();
            var length = Math.Min(1000, test.Count - start);
            var inputs = test.Inputs.narrow(0, start, length).contiguous();
            var (scores, shape) = OnnxRuntimeRunner.Run(session, inputs.data<float>().ToArray(), inputs.shape);
            var labels = test.Labels.narrow(0, start, length).data<long>().ToArray();
            var classes = (int)shape[1];
            for (var i = 0; i < length; i++)
            {
                var row = scores.AsSpan(i * classes, classes);
                var best = 0;
                for (var k = 1; k < classes; k++) if (row[k] > row[best]) best = k;
                if (best == labels[i]) correct++;
            }
        }
        return (double)correct / test.Count;
    }

    internal static TensorDataset Subset(TensorDataset full, int count)
    {
        using var scope = NewDisposeScope();
        var n = Math.Min(count, full.Count);
        return new TensorDataset(full.Inputs.narrow(0, 0, n).clone().MoveToOuterDisposeScope(),
            full.Labels.narrow(0, 0, n).clone().MoveToOuterDisposeScope(), full.ClassCount);
    }
}
