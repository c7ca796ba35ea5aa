using SurgeryService.Domain.Datasets;
using SurgeryService.Domain.Onnx;
using SurgeryService.Domain.Surgery;
using TorchSharp;
using static TorchSharp.torch;

namespace SurgeryService.Domain.Tests.Onnx;

/// <summary>What changes while an ONNX graph trains: BatchNormalization statistics, Dropout, the engine's run.</summary>
public class OnnxTrainingTests
{
    [Fact]
    public void BatchNormalizationUsesBatchStatisticsAndUpdatesRunningStatisticsWhileTraining()
    {
        var g = new OnnxGraphBuilder(15);
        var x = g.Input("x", -1, 2, 3, 3);
        var y = g.Node("BatchNormalization", [x, g.Init("scale", [2], [2f, 3f]), g.Init("bias", [2], [0.5f, -1f]),
            g.Init("mean", [2], [0f, 0f]), g.Init("var", [2], [1f, 1f])], ("momentum", 0.8f), ("epsilon", 1e-5f));
        using var module = OnnxModule.Create(OnnxModel.Load(g.Bytes(y)));
        using var scope = NewDisposeScope();
        var input = randn(16, 2, 3, 3) * 4 + 3;

        module.train();
        var output = module.forward(input);

        var channelMean = output.mean([0, 2, 3]);
        var channelStd = output.std([0, 2, 3], unbiased: false);
        Assert.Equal(0.5f, channelMean[0].item<float>(), 3);
        Assert.Equal(-1f, channelMean[1].item<float>(), 3);
        Assert.Equal(3f, channelStd[1].item<float>(), 2);
        var batchMean = input.mean([0, 2, 3]);
        var running = module.TrainedInitializers().Single(t => t.Initializer == "mean").Value;
        Assert.Equal(0.2f * batchMean[0].item<float>(), running[0].item<float>(), 4); // ONNX: running * momentum + batch * (1 - momentum)
    }

    [Fact]
    public void DropoutZeroesActivationsOnlyWhileTraining()
    {
        var g = new OnnxGraphBuilder(13);
        var x = g.Input("x", -1, 1000);
        using var module = OnnxModule.Create(OnnxModel.Load(g.Bytes(g.Node("Dropout", [x, g.Init("ratio", [], [0.5f])]))));
        using var scope = NewDisposeScope();
        var input = ones(4, 1000);

        module.train();
        var zeroed = module.forward(input).eq(0).sum().item<long>();
        module.eval();
        var unchanged = module.forward(input);

        Assert.InRange(zeroed, 1700, 2300);
        Assert.True(unchanged.eq(input).all().item<bool>());
        Assert.Empty(module.parameters()); // the ratio is a setting, not a trainable parameter
    }

    [Fact]
    public void EngineTrainsAnOnnxGraphWithoutLeakingTensors()
    {
        var g = new OnnxGraphBuilder(13);
        var x = g.Input("x", -1, 16);
        var h = g.Named("fc1", "Gemm", [x, g.Init("fc1.weight", [32, 16]), g.Init("fc1.bias", [32])], ("transB", 1L));
        var bn = g.Node("BatchNormalization", [g.Node("Unsqueeze", [h, g.Longs("axes", 2)]), g.Init("s", [32], Enumerable.Repeat(1f, 32).ToArray()),
            g.Init("b", [32], new float[32]), g.Init("m", [32], new float[32]), g.Init("v", [32], Enumerable.Repeat(1f, 32).ToArray())]);
        var r = g.Node("Dropout", [g.Node("Relu", [g.Node("Squeeze", [bn, g.Longs("axes2", 2)])])]);
        var y = g.Named("fc2", "MatMul", [r, g.Init("fc2.weight", [32, 3])]);
        var model = OnnxModel.Load(g.Bytes(g.Node("LogSoftmax", [y])));
        using var module = OnnxModule.Create(model, outputLogits: true);
        using var data = Blobs(256);
        var live = new List<long>();
        var settings = new SurgerySettings { Iterations = 300, BatchSize = 32, LearningRate = 0.05, LrPolicy = LearningRatePolicy.Fixed, CRate = 0.5, EvalInterval = 1000 };
        using var trainer = new SurgeryTrainer(module, model.PrunableLayers, settings);

        var outcome = trainer.Run(data, data, new Surgery.Fixtures.RecordingObserver { OnEachIteration = m => { if (m.Iteration % 50 == 49) live.Add(DisposeScopeManager.Statistics.ThreadTotalLiveCount); } });

        Assert.True(live.Max() - live.Min() <= 2, "live tensors grew: " + string.Join(", ", live));
        Assert.True(outcome.After!.Top1 > 0.9, $"accuracy {outcome.After.Top1}");
        Assert.True(outcome.Kept < outcome.Total);
    }

    private static TensorDataset Blobs(int count)
    {
        using var scope = NewDisposeScope();
        using var generator = new Generator(5);
        var prototypes = randn(3, 16, generator: generator) * 2;
        var labels = randint(0, 3, count, generator: generator);
        var inputs = prototypes.index_select(0, labels) + randn(count, 16, generator: generator) * 0.5;
        return new TensorDataset(inputs.MoveToOuterDisposeScope(), labels.MoveToOuterDisposeScope(), 3);
    }
}
