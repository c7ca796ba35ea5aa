using SurgeryService.Domain.Datasets;
using SurgeryService.Domain.Onnx;
using SurgeryService.Domain.Onnx.Proto;
using SurgeryService.Domain.Surgery;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace SurgeryService.Domain.Tests.Onnx;

/// <summary>
/// Models exported by PyTorch 1.13's torch.onnx.export (Onnx/Fixtures, made by Onnx/Fixtures/generate.py): they import,
/// compute what ONNX Runtime computes, prune their matrix products and write every pruned tensor back exactly.
/// </summary>
public class OnnxExportedModelTests(ITestOutputHelper output)
{
    private const double Tolerance = 1e-5;

    private static byte[] Fixture(string name) => File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "Onnx", "Fixtures", name));

    /// <summary>The input shape with a batch of 3, which the exports (traced with 2) must follow.</summary>
    private static long[] InputShape(OnnxModel model) => [3, .. model.InputSampleShape];

    [Theory]
    [InlineData("transformer-opset13.onnx")]
    [InlineData("transformer-opset17.onnx")]
    [InlineData("transformer-causal-opset17.onnx")]
    [InlineData("vit-opset13.onnx")]
    [InlineData("vit-opset17.onnx")]
    [InlineData("mlp-layernorm-gelu-opset13.onnx")]
    [InlineData("mlp-layernorm-gelu-opset17.onnx")]
    [InlineData("lstm-opset13.onnx")]
    [InlineData("lstm-opset17.onnx")]
    [InlineData("gru-bidirectional-opset13.onnx")]
    [InlineData("gru-bidirectional-opset17.onnx")]
    [InlineData("rnn-opset13.onnx")]
    [InlineData("transformer-padding-mask-opset13.onnx")]
    [InlineData("transformer-padding-mask-opset17.onnx")]
    [InlineData("attention-padding-mask-opset13.onnx")]
    [InlineData("shufflenet-v2-tiny-opset13.onnx")]
    [InlineData("shufflenet-v2-tiny-opset17.onnx")]
    public void ExportedModelMatchesOnnxRuntimeAndWritesPrunedWeightsBackExactly(string fixture)
    {
        var bytes = Fixture(fixture);
        var model = OnnxModel.Load(bytes);
        var shape = InputShape(model);
        var diff = OnnxParity.AssertMatches(bytes, shape);
        Assert.True(diff <= Tolerance, $"max abs difference {diff:g3}");

        using var module = OnnxModule.Create(model);
        var pruned = new List<string>();
        using (no_grad())
        {
            foreach (var layer in model.PrunableLayers)
            {
                var weight = module.get_parameter(layer.WeightParameter)!;
                var threshold = weight.abs().flatten().median().item<float>();
                weight.mul_(weight.abs().gt(threshold));
                pruned.Add(model.InitializerOf(layer.WeightParameter));
            }
        }
        var export = OnnxWriter.Export(module, new SurgerySettings { Iterations = 1 }, new SurgeryOutcome(1, false, null, null, []));
        var written = ModelProto.Parser.ParseFrom(export.Dense).Graph.Initializer.ToDictionary(i => i.Name);
        foreach (var name in pruned)
        {
            var expected = OnnxTensors.ToFloatArray(module.ParameterOf(name));
            Assert.Equal(expected, OnnxTensors.Floats(written[name], null));
            Assert.True(expected.Count(v => v == 0f) >= expected.Length / 2, $"{name} was not pruned");
        }
        var input = OnnxParity.RandomInput(shape);
        var actual = OnnxParity.RunTorch(module, input, shape, out _);
        var dense = OnnxParity.MaxAbsDiff(OnnxRuntimeRunner.Run(export.Dense, input, shape).Values, actual);
        var sparse = OnnxParity.MaxAbsDiff(OnnxRuntimeRunner.Run(export.Sparse, input, shape).Values, actual);
        output.WriteLine($"{fixture}: {model.PrunableLayers.Count} prunable layers ({string.Join(", ", model.PrunableLayers.Select(l => l.Name))}); " +
            $"max abs diff {diff:g3} as exported, {dense:g3} dense and {sparse:g3} sparse after pruning half of each");
        Assert.True(dense <= Tolerance && sparse <= Tolerance, $"pruned: dense {dense:g3}, sparse {sparse:g3}");
    }

    [Fact]
    public void EveryProjectionOfAnExportedTransformerEncoderIsPrunable()
    {
        var model = OnnxModel.Load(Fixture("transformer-opset17.onnx"));
        var byOp = model.Layers.Where(l => l.Prunable).GroupBy(l => l.Op).ToDictionary(g => g.Key, g => g.Count());
        // embed, and per layer the packed q/k/v projection and both feed-forward layers (MatMul); per layer the output
        // projection, and the head (Gemm).
        Assert.Equal(1 + 2 * 3, byOp["MatMul"]);
        Assert.Equal(2 + 1, byOp["Gemm"]);
        Assert.All(model.PrunableLayers, l => Assert.NotNull(l.BiasParameter));
        Assert.DoesNotContain(model.Layers, l => !l.Prunable && l.Op is "MatMul" or "Gemm");
    }

    [Theory]
    [InlineData("lstm-opset13.onnx", "LSTM")]
    [InlineData("gru-bidirectional-opset17.onnx", "GRU")]
    public void RecurrentInputAndRecurrentWeightsArePrunableLayersWithTheBiasOnTheInputWeights(string fixture, string op)
    {
        var model = OnnxModel.Load(Fixture(fixture));
        var recurrent = model.Layers.Where(l => l.Op == op).ToList();
        Assert.Equal(4, recurrent.Count); // two stacked layers, W and R each
        Assert.All(recurrent, l => Assert.True(l.Prunable));
        Assert.Equal(["/rnn/" + op + "/W", "/rnn/" + op + "/R"], recurrent.Take(2).Select(l => l.Name));
        Assert.NotNull(recurrent[0].BiasInitializer);
        Assert.Null(recurrent[1].BiasInitializer);
    }

    [Theory]
    [InlineData("transformer-opset17.onnx")]
    [InlineData("lstm-opset13.onnx")]
    public void EngineTrainsAnExportedModelAndPrunesIt(string fixture)
    {
        var model = OnnxModel.Load(Fixture(fixture));
        using var module = OnnxModule.Create(model, outputLogits: true);
        var classes = (int)OnnxParity.RunTorch(module, OnnxParity.RandomInput(InputShape(model)), InputShape(model), out _).Length / 3;
        using var data = Blobs(256, model.InputSampleShape, classes);
        var settings = new SurgerySettings { Iterations = 200, BatchSize = 32, LearningRate = 0.02, LrPolicy = LearningRatePolicy.Fixed, CRate = 0.5, EvalInterval = 1000 };
        using var trainer = new SurgeryTrainer(module, model.PrunableLayers, settings);

        var live = new List<long>();

        var outcome = trainer.Run(data, data, new Surgery.Fixtures.RecordingObserver
        {
            OnEachIteration = m => { if (m.Iteration % 40 == 39) live.Add(DisposeScopeManager.Statistics.ThreadTotalLiveCount); },
        });

        output.WriteLine($"{fixture}: top-1 {outcome.Before?.Top1} -> {outcome.After?.Top1}, kept {outcome.Kept} of {outcome.Total}; live tensors {string.Join(", ", live)}");
        Assert.True(live.Max() - live.Min() <= 2, "live tensors grew: " + string.Join(", ", live));
        Assert.True(outcome.After!.Top1 > 0.9, $"accuracy {outcome.After.Top1}");
        Assert.True(outcome.Kept < outcome.Total);
    }

    [Fact]
    public void RunningStatisticsThatTheExporterSharedWithAWeightTrainApartFromIt()
    {
        // bn.running_var = Identity(bn.weight) and bn.running_mean = Identity(bn.bias): equal at export, stored once.
        var bytes = Fixture("conv-bn-shared-statistics-opset13.onnx");
        var model = OnnxModel.Load(bytes);
        Assert.True(OnnxParity.AssertMatches(bytes, InputShape(model)) <= Tolerance);
        using var module = OnnxModule.Create(model, outputLogits: true);
        using var data = Blobs(128, model.InputSampleShape, 10);
        var settings = new SurgerySettings { Iterations = 30, BatchSize = 16, LearningRate = 0.05, LrPolicy = LearningRatePolicy.Fixed, CRate = 0.5, EvalInterval = 1000 };
        using var trainer = new SurgeryTrainer(module, model.PrunableLayers, settings);

        var outcome = trainer.Run(data, data, new Surgery.Fixtures.RecordingObserver());

        // Training differentiated through the batch norm (it used to fail at its first iteration) and moved its weight,
        // and the export still computes what the trained module computes.
        Assert.Equal(30, outcome.Iterations);
        using (no_grad())
        {
            Assert.False(module.ParameterOf("bn.weight").eq(1).all().item<bool>(), "bn.weight did not train");
        }
        var export = OnnxWriter.Export(module, settings, outcome);
        var input = OnnxParity.RandomInput(InputShape(model));
        var actual = OnnxParity.RunTorch(module, input, InputShape(model), out _);
        Assert.True(OnnxParity.MaxAbsDiff(OnnxRuntimeRunner.Run(export.Dense, input, InputShape(model)).Values, actual) <= Tolerance);
    }

    /// <summary>Separable classes: a random prototype per class plus noise, in the model's sample shape.</summary>
    private static TensorDataset Blobs(int count, long[] sampleShape, int classes)
    {
        using var scope = NewDisposeScope();
        using var generator = new Generator(5);
        var prototypes = randn([classes, .. sampleShape], generator: generator);
        var labels = randint(0, classes, count, generator: generator);
        var inputs = prototypes.index_select(0, labels) + randn([count, .. sampleShape], generator: generator) * 0.5;
        return new TensorDataset(inputs.MoveToOuterDisposeScope(), labels.MoveToOuterDisposeScope(), classes);
    }
}
