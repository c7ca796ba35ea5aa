using System.Text.Json;
using Google.Protobuf;
using SurgeryService.Domain.Onnx;
using SurgeryService.Domain.Onnx.Proto;
using SurgeryService.Domain.Surgery;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace SurgeryService.Domain.Tests.Onnx;

/// <summary>Writing the pruned model back: dense and sparse forms, what changes and what must not.</summary>
public class OnnxExportTests(ITestOutputHelper output)
{
    private static readonly SurgerySettings Settings = new() { Iterations = 10, CRate = 2.5, PruneBiases = false };

    /// <summary>An opset-9 model with a raw_data conv weight, a float_data Gemm weight, an int64 shape and a Constant.</summary>
    private static byte[] Model(int opset = 9)
    {
        var g = new OnnxGraphBuilder(opset);
        var x = g.Input("x", -1, 2, 6, 6);
        var c = g.Named("conv", "Conv", [x, g.Init("conv.weight", [8, 2, 3, 3]), g.Init("conv.bias", [8])], ("pads", new long[] { 1, 1, 1, 1 }));
        var r = g.Node("Relu", [c]);
        var f = g.Node("Reshape", [r, g.Longs("shape", 0, -1)]);
        var s = g.Node("Mul", [f, g.Node("Constant", [], ("value", new TensorProto { DataType = 1, Dims = { 1 }, FloatData = { 0.5f } }))]);
        var y = g.Named("fc", "Gemm", [s, g.Init("fc.weight", [4, 288], raw: false), g.Init("fc.bias", [4], raw: false)], ("transB", 1L));
        return g.Bytes(y);
    }

    /// <summary>Zeroes the given fraction of every prunable weight (smallest magnitudes), as a finished surgery leaves them.</summary>
    private static SurgeryOutcome Prune(OnnxModule module, double fraction)
    {
        var results = new List<LayerResult>();
        using var _ = no_grad();
        foreach (var layer in module.Model.PrunableLayers)
        {
            var weight = module.get_parameter(layer.WeightParameter)!;
            if (fraction > 0)
            {
                var threshold = weight.abs().flatten().sort().Values[(long)(weight.numel() * fraction)].item<float>();
                weight.mul_(weight.abs().gt(threshold));
            }
            var kept = weight.count_nonzero().item<long>();
            results.Add(new LayerResult(layer.Name, layer.Kind, weight.numel(), kept, weight.numel() - kept, 0));
        }
        return new SurgeryOutcome(10, false, null, null, results);
    }

    [Fact]
    public void AGzipLengthIsTheLengthOfTheFileGzipWrites()
    {
        var random = new Random(3);
        var bytes = new byte[300_000];
        random.NextBytes(bytes.AsSpan(0, 100_000)); // incompressible, then compressible
        using var gzipped = new MemoryStream();
        using (var gzip = new System.IO.Compression.GZipStream(gzipped, System.IO.Compression.CompressionLevel.Optimal, leaveOpen: true))
        {
            gzip.Write(bytes);
        }
        Assert.Equal(gzipped.Length, OnnxWriter.GzipLength(bytes));
        Assert.InRange(OnnxWriter.GzipLength(bytes), 100_000, 110_000);
    }

    [Fact]
    public void WritingAnUnchangedModelBackAltersNothingButTheSurgeryMetadata()
    {
        var original = ModelProto.Parser.ParseFrom(Model());
        var bytes = original.ToByteArray().Concat(new byte[] { 0xBA, 0x3E, 3, (byte)'x', (byte)'y', (byte)'z' }).ToArray(); // unknown field 999
        using var module = OnnxModule.Create(OnnxModel.Load(bytes));
        var written = ModelProto.Parser.ParseFrom(OnnxWriter.Export(module, Settings, Prune(module, 0)).Dense);

        Assert.Equal(["origin", OnnxWriter.MethodKey, OnnxWriter.SettingsKey, OnnxWriter.CompressionKey, OnnxWriter.KeptKey, OnnxWriter.TotalKey],
            written.MetadataProps.Select(p => p.Key));
        var stripped = written.Clone();
        foreach (var entry in stripped.MetadataProps.Where(p => p.Key.StartsWith("surgery.", StringComparison.Ordinal)).ToList())
        {
            stripped.MetadataProps.Remove(entry);
        }
        Assert.True(ModelProto.Parser.ParseFrom(bytes).Equals(stripped), "the written model differs from the original");
        Assert.EndsWith("xyz", System.Text.Encoding.ASCII.GetString(stripped.ToByteArray()));
    }

    [Fact]
    public void DenseFormReplacesTrainedInitializersInTheirOwnEncodingAndRecordsTheSurgery()
    {
        var bytes = Model();
        using var module = OnnxModule.Create(OnnxModel.Load(bytes));
        var outcome = Prune(module, 0.75);
        var export = OnnxWriter.Export(module, Settings, outcome);
        var original = ModelProto.Parser.ParseFrom(bytes);
        var written = ModelProto.Parser.ParseFrom(export.Dense);

        Assert.Equal(original.Graph.Node, written.Graph.Node);
        Assert.Equal(original.OpsetImport, written.OpsetImport);
        Assert.Equal(original.Graph.Input, written.Graph.Input);
        Assert.Equal(original.Graph.Output, written.Graph.Output);
        Assert.Equal((original.IrVersion, original.ProducerName), (written.IrVersion, written.ProducerName));
        var init = written.Graph.Initializer.ToDictionary(i => i.Name);
        Assert.Equal(original.Graph.Initializer.Single(i => i.Name == "shape"), init["shape"]);
        Assert.True(init["conv.weight"].HasRawData);
        Assert.Empty(init["conv.weight"].FloatData);
        Assert.False(init["fc.weight"].HasRawData);
        Assert.Equal(4 * 288, init["fc.weight"].FloatData.Count);
        Assert.Equal(outcome.Total - outcome.Kept,
            new[] { "conv.weight", "fc.weight" }.Sum(n => OnnxTensors.Floats(init[n], null).LongCount(v => v == 0f)));

        var metadata = written.MetadataProps.ToDictionary(p => p.Key, p => p.Value);
        Assert.Equal("dns", metadata[OnnxWriter.MethodKey]);
        Assert.Equal(outcome.Compression.ToString("0.###", System.Globalization.CultureInfo.InvariantCulture), metadata[OnnxWriter.CompressionKey]);
        Assert.Equal(2.5, JsonSerializer.Deserialize<SurgerySettings>(metadata[OnnxWriter.SettingsKey], new JsonSerializerOptions(JsonSerializerDefaults.Web))!.CRate);

        // ONNX Runtime computes with the written weights what the module computes.
        var input = OnnxParity.RandomInput([3, 2, 6, 6]);
        var (expected, _) = OnnxRuntimeRunner.Run(export.Dense, input, [3, 2, 6, 6]);
        var diff = OnnxParity.MaxAbsDiff(expected, OnnxParity.RunTorch(module, input, [3, 2, 6, 6], out _));
        output.WriteLine($"pruned module vs ONNX Runtime on the written model: max abs diff {diff:g3}");
        Assert.True(diff <= OnnxParity.Tolerance);
    }

    [Theory]
    [InlineData(7)]
    [InlineData(13)]
    public void SparseFormStoresHeavilyPrunedWeightsAsCooSparseInitializersThatOnnxRuntimeRuns(int opset)
    {
        var bytes = Model(opset);
        using var module = OnnxModule.Create(OnnxModel.Load(bytes));
        var outcome = Prune(module, 0.9);
        {
            // A weight that stays dense enough is left dense: its sparse form would be larger.
            using var _ = no_grad();
            module.get_parameter("conv_weight")!.add_(1);
        }
        var export = OnnxWriter.Export(module, Settings, outcome);
        var sparse = ModelProto.Parser.ParseFrom(export.Sparse);

        Assert.Equal(["fc.weight"], export.SparseInitializers);
        var fc = Assert.Single(sparse.Graph.SparseInitializer);
        Assert.Equal("fc.weight", fc.Values.Name);
        Assert.Equal([4L, 288], fc.Dims);
        Assert.Equal((int)OnnxDataType.Int64, fc.Indices.DataType);
        Assert.Equal(fc.Values.Dims, fc.Indices.Dims);
        Assert.DoesNotContain(sparse.Graph.Initializer, i => i.Name == "fc.weight");
        Assert.True(export.Sparse.Length < export.Dense.Length);
        output.WriteLine($"sizes {export.MeasureSizes()}");

        var input = OnnxParity.RandomInput([2, 2, 6, 6]);
        var denseOutput = OnnxRuntimeRunner.Run(export.Dense, input, [2, 2, 6, 6]).Values;
        Assert.True(OnnxParity.MaxAbsDiff(denseOutput, OnnxRuntimeRunner.Run(export.Sparse, input, [2, 2, 6, 6]).Values) <= 1e-5);

        // Our own reader takes the sparse form back.
        using var reread = OnnxModule.Create(OnnxModel.Load(export.Sparse));
        Assert.True(reread.ParameterOf("fc.weight").eq(module.ParameterOf("fc.weight")).all().item<bool>());
    }
}
