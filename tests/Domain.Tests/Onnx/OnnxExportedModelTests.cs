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
            foreach (var parameter in model.PrunableLayers.Select(l => l.WeightParameter).Distinct())
            {
                var weight = module.get_parameter(parameter)!;
                var threshold = weight.abs().flatten().median().item<float>();
                weight.mul_(weight.abs().gt(threshold));
                pruned.Add(model.InitializerOf(parameter));
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
    [InlineData("lstm-opset13.onnx", "LSTM", "", new[] { "i", "o", "f", "c" })]
    [InlineData("gru-bidirectional-opset17.onnx", "GRU", "forward/", new[] { "z", "r", "h" })]
    public void RecurrentWeightsArePrunableGateByGateWithTheBiasOnTheFirstInputBlock(string fixture, string op, string direction, string[] gates)
    {
        var model = OnnxModel.Load(Fixture(fixture));
        var recurrent = model.Layers.Where(l => l.Op == op).ToList();
        var directions = direction.Length == 0 ? 1 : 2;
        Assert.Equal(2 * 2 * directions * gates.Length, recurrent.Count); // two stacked layers, W and R each, a block per gate
        Assert.All(recurrent, l => Assert.True(l.Prunable));
        Assert.Equal(gates.Select(g => $"/rnn/{op}/W/{direction}{g}"), recurrent.Take(gates.Length).Select(l => l.Name));
        // The fixtures' hidden size is 12 and the input has 7 features: a gate's block of W is [12, 7], of R [12, 12].
        Assert.All(recurrent.Where(l => l.Name.StartsWith($"/rnn/{op}/W/", StringComparison.Ordinal)), l => Assert.Equal([12L, 7L], l.Shape));
        Assert.All(recurrent.Where(l => l.Name.StartsWith($"/rnn/{op}/R/", StringComparison.Ordinal)),
            l => Assert.Equal([12L, 12L], l.Shape));
        Assert.NotNull(recurrent[0].BiasInitializer);
        Assert.All(recurrent.Skip(1).Take(2 * directions * gates.Length - 1), l => Assert.Null(l.BiasInitializer));
        // Every parameter counted once: the blocks add up to the model's recurrent weights and biases.
        var initializers = recurrent.Select(l => l.WeightInitializer).Concat(recurrent.Select(l => l.BiasInitializer).OfType<string>()).Distinct();
        Assert.Equal(initializers.Sum(i => model.Initializers[i].Dims.Aggregate(1L, (a, b) => a * b)), recurrent.Sum(l => l.ParameterCount));
    }

    [Fact]
    public void EachGateOfALstmGetsItsOwnThresholdAndTheExportComputesWhatTheEngineComputes()
    {
        var bytes = Fixture("lstm-opset13.onnx");
        var model = OnnxModel.Load(bytes);
        using var module = OnnxModule.Create(model, outputLogits: true);
        // Scale the forget gate's input weights of the first LSTM tenfold: one threshold for the whole matrix would
        // then prune the other three gates nearly bare and leave the forget gate whole.
        var forget = model.PrunableLayers.Single(l => l.Name == "/rnn/LSTM/W/f");
        using (no_grad())
        {
            forget.Slice!.Of(module.get_parameter(forget.WeightParameter)!).mul_(10);
        }
        using var data = Blobs(64, model.InputSampleShape, 4);
        var settings = new SurgerySettings { Iterations = 1, BatchSize = 16, LearningRate = 1e-6, LrPolicy = LearningRatePolicy.Fixed, CRate = 0, EvalInterval = 1000 };
        using var trainer = new SurgeryTrainer(module, model.PrunableLayers, settings);
        var outcome = trainer.Run(data, data, new Surgery.Fixtures.RecordingObserver());

        var blocks = trainer.Layers.Where(l => l.Layer.Name.StartsWith("/rnn/LSTM/W/", StringComparison.Ordinal)).ToList();
        var kept = blocks.ToDictionary(l => l.Layer.Name, l => (double)l.MaskedKept / l.Weight.Dense.numel());
        output.WriteLine(string.Join(", ", blocks.Select(l => $"{l.Layer.Name} {l.MaskedKept}/{l.Weight.Dense.numel()}")));
        foreach (var gate in new[] { "i", "o", "f", "c" })
        {
            // c_rate 0 cuts at 0.9 mean|w| of each block: roughly a third to a half of a block of random weights.
            Assert.InRange(kept["/rnn/LSTM/W/" + gate], 0.3, 0.8);
        }
        Assert.InRange(Math.Abs(kept["/rnn/LSTM/W/f"] - kept["/rnn/LSTM/W/i"]), 0, 0.25);
        // The delivered weights: each block's cut entries, and only those, are exact zeros in the one recurrent tensor.
        var w = module.get_parameter(forget.WeightParameter)!;
        foreach (var block in blocks)
        {
            Assert.True(block.Layer.Slice!.Of(w).eq(0).eq(block.Weight.Mask.eq(0)).all().item<bool>(), block.Layer.Name);
        }
        var export = OnnxWriter.Export(module, settings, outcome);
        var shape = InputShape(model);
        var input = OnnxParity.RandomInput(shape);
        var engine = OnnxParity.RunTorch(module, input, shape, out _);
        Assert.True(OnnxParity.MaxAbsDiff(OnnxRuntimeRunner.Run(export.Dense, input, shape).Values, engine) <= Tolerance);
        Assert.True(OnnxParity.MaxAbsDiff(OnnxRuntimeRunner.Run(export.Sparse, input, shape).Values, engine) <= Tolerance);
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
        var settings = new SurgerySettings { Iterations = 300, BatchSize = 32, LearningRate = 0.02, LrPolicy = LearningRatePolicy.Fixed, CRate = 0.5, EvalInterval = 1000 };
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
