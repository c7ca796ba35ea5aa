using SurgeryService.Domain.Datasets;
using SurgeryService.Domain.Onnx;
using SurgeryService.Domain.Surgery;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace SurgeryService.Domain.Tests.Onnx;

/// <summary>
/// A text model as PyTorch exports one (Onnx/Fixtures/generate.py, token-classifier): INT64 token ids into an embedding
/// table (Gather), an encoder layer, mean pooling and a head. The engine reads the data set's samples as ids, and the
/// table is pruned only when the settings ask for it.
/// </summary>
public class OnnxTokenModelTests(ITestOutputHelper output)
{
    private const double Tolerance = 1e-5;
    private const int Vocabulary = 30;
    private const int Length = 6;

    private static byte[] Fixture(string name) => File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "Onnx", "Fixtures", name));

    private static float[] Ids(int count, int seed)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, count * Length).Select(_ => (float)random.Next(Vocabulary)).ToArray();
    }

    private static double MaxDiffAgainstOnnxRuntime(byte[] onnx, OnnxModule module, int count)
    {
        var shape = new long[] { count, Length };
        var ids = Ids(count, seed: 11);
        var engine = OnnxParity.RunTorch(module, ids, shape, out _);
        return OnnxParity.MaxAbsDiff(OnnxRuntimeRunner.Run(onnx, ids.Select(i => (long)i).ToArray(), shape).Values, engine);
    }

    [Theory]
    [InlineData("token-classifier-opset13.onnx")]
    [InlineData("token-classifier-opset17.onnx")]
    public void ATokenModelReadsItsIdsAsOnnxRuntimeDoesAndListsItsEmbeddingTableAsALayer(string fixture)
    {
        var bytes = Fixture(fixture);
        var model = OnnxModel.Load(bytes);
        Assert.Equal(OnnxDataType.Int64, model.InputElementType);
        var table = Assert.Single(model.PrunableLayers, l => l.Embedding);
        var listed = model.Layers.Single(l => l.Name == table.Name);
        Assert.Equal("Gather", listed.Op);
        Assert.Equal([Vocabulary, 16L], listed.Shape);
        Assert.True(listed.Prunable);
        using var module = OnnxModule.Create(model);
        var diff = MaxDiffAgainstOnnxRuntime(bytes, module, count: 3);
        Assert.True(diff <= Tolerance, $"max abs difference {diff:g3}");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void AnEmbeddingTableIsPrunedOnlyWhenTheSettingsAskAndItsExportComputesWhatTheEngineComputes(bool pruneEmbeddings)
    {
        var bytes = Fixture("token-classifier-opset17.onnx");
        var model = OnnxModel.Load(bytes);
        using var module = OnnxModule.Create(model, outputLogits: true);
        using var ids = tensor(Ids(256, seed: 3)).reshape(256, Length);
        using var data = new TensorDataset(ids.clone(), ids.select(1, 0).to_type(ScalarType.Int64).remainder(3), 3);
        var settings = new SurgerySettings
        {
            Iterations = 60, BatchSize = 16, LearningRate = 0.01, LrPolicy = LearningRatePolicy.Fixed, CRate = 0.5, EvalInterval = 1000,
            PruneEmbeddings = pruneEmbeddings,
        };
        using var trainer = new SurgeryTrainer(module, model.PrunableLayers, settings);
        var outcome = trainer.Run(data, data, new Surgery.Fixtures.RecordingObserver());

        var embedding = model.PrunableLayers.Single(l => l.Embedding);
        Assert.Equal(pruneEmbeddings, trainer.Layers.Any(l => l.Layer == embedding));
        var zeros = module.get_parameter(embedding.WeightParameter)!.eq(0).sum().item<long>();
        output.WriteLine($"pruneEmbeddings {pruneEmbeddings}: {zeros} of {Vocabulary * 16} table entries zero; kept {outcome.Kept} of {outcome.Total}");
        if (pruneEmbeddings) Assert.True(zeros > Vocabulary * 16 / 10, $"{zeros} zeros");
        else Assert.Equal(0, zeros);

        var export = OnnxWriter.Export(module, settings, outcome);
        Assert.True(MaxDiffAgainstOnnxRuntime(export.Dense, module, count: 4) <= Tolerance);
        Assert.True(MaxDiffAgainstOnnxRuntime(export.Sparse, module, count: 4) <= Tolerance);
    }
}
