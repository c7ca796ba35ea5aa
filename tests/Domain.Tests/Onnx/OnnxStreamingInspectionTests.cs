using Google.Protobuf;
using SurgeryService.Domain.Models;
using SurgeryService.Domain.Onnx;
using SurgeryService.Domain.Onnx.Proto;
using SurgeryService.Domain.Torch;
using Xunit.Abstractions;

namespace SurgeryService.Domain.Tests.Onnx;

/// <summary>
/// An upload is inspected from a stream without its large weights (<see cref="OnnxModel.Inspect"/>): what it reports,
/// and what it refuses, is what reading the whole file reports and refuses.
/// </summary>
public class OnnxStreamingInspectionTests(ITestOutputHelper output)
{
    private static byte[] Fixture(string name) => File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "Onnx", "Fixtures", name));

    /// <summary>Every data field over 256 bytes left out: every weight of these small models, but not their shapes.</summary>
    private const long LeaveOutWeights = 256;

    private static byte[] SmallModel()
    {
        var g = new OnnxGraphBuilder(13);
        var x = g.Input("x", -1, 4);
        return g.Bytes(g.Named("fc", "Gemm", [x, g.Init("w", [4, 3]), g.Init("b", [3])]));
    }

    private static ModelInspection Streamed(byte[] bytes, long keepDataUpTo) =>
        ModelFormats.Inspect(new MemoryStream(bytes, writable: false), architecture: null, classes: null, keepDataUpTo);

    private static void AssertSame(ModelInspection expected, ModelInspection actual)
    {
        Assert.Equal(expected.Format, actual.Format);
        Assert.Equal(expected.Architecture, actual.Architecture);
        Assert.Equal(expected.InputShape, actual.InputShape);
        Assert.Equal(expected.ClassCount, actual.ClassCount);
        Assert.Equal(expected.Operators, actual.Operators);
        Assert.Equal(expected.Layers, actual.Layers);
        Assert.Equal(expected.ActivationBytesPerSample, actual.ActivationBytesPerSample);
    }

    [Theory]
    [InlineData("transformer-opset13.onnx")]
    [InlineData("transformer-opset17.onnx")]
    [InlineData("transformer-causal-opset17.onnx")]
    [InlineData("vit-opset13.onnx")]
    [InlineData("vit-opset17.onnx")]
    [InlineData("mlp-layernorm-gelu-opset17.onnx")]
    [InlineData("lstm-opset17.onnx")]
    [InlineData("gru-bidirectional-opset13.onnx")]
    [InlineData("rnn-opset13.onnx")]
    [InlineData("transformer-padding-mask-opset17.onnx")]
    [InlineData("attention-padding-mask-opset13.onnx")]
    [InlineData("shufflenet-v2-tiny-opset13.onnx")]
    public void AnExportedModelReadWithoutItsWeightsIsInspectedAsWhenReadWhole(string fixture)
    {
        var bytes = Fixture(fixture);
        var whole = Streamed(bytes, keepDataUpTo: long.MaxValue);
        var withoutWeights = Streamed(bytes, LeaveOutWeights);

        var model = OnnxModel.Inspect(new MemoryStream(bytes), LeaveOutWeights);
        Assert.False(model.HasAllData);
        Assert.True(whole.ActivationBytesPerSample > 0);
        AssertSame(whole, withoutWeights);
        AssertSame(whole, ModelFormats.Inspect(bytes, architecture: null));
    }

    [Fact]
    public void TypedFloatAndIntegerDataIsLeftOutAndCheckedLikeRawData()
    {
        var g = new OnnxGraphBuilder(13);
        var x = g.Input("x", -1, 1, 8, 8);
        var conv = g.Named("conv", "Conv", [x, g.Init("conv.weight", [16, 1, 3, 3], raw: false), g.Init("conv.bias", [16])]);
        var relu = g.Node("Relu", [conv]);
        var flat = g.Node("Reshape", [relu, g.Longs("shape", 0, -1)]);
        var fc = g.Named("fc", "Gemm", [flat, g.Init("fc.weight", [10, 576]), g.Init("fc.bias", [10])], ("transB", 1L));
        var bytes = g.Bytes(fc);

        var model = OnnxModel.Inspect(new MemoryStream(bytes), LeaveOutWeights);

        Assert.False(model.HasData(model.Initializers["conv.weight"]));
        Assert.Empty(model.Initializers["conv.weight"].FloatData);
        Assert.False(model.HasData(model.Initializers["fc.weight"]));
        Assert.True(model.HasData(model.Initializers["shape"]));
        AssertSame(Streamed(bytes, long.MaxValue), Streamed(bytes, LeaveOutWeights));
        Assert.Equal(4 * (64 + 3 * 16 * 36 + 10), Streamed(bytes, LeaveOutWeights).ActivationBytesPerSample);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ALeftOutTensorWhoseDataDoesNotFitItsShapeIsRefusedWithTheSameMessage(bool raw)
    {
        var g = new OnnxGraphBuilder(13);
        var x = g.Input("x", -1, 64);
        var proto = g.Build(g.Named("fc", "Gemm", [x, g.Init("fc.weight", [64, 10], raw: raw)]));
        var weight = proto.Graph.Initializer[0];
        weight.Dims[0] = 65;
        var bytes = proto.ToByteArray();

        var whole = Assert.Throws<SurgeryException>(() => OnnxModel.Load(bytes));
        var streamed = Assert.Throws<SurgeryException>(() => OnnxModel.Inspect(new MemoryStream(bytes), LeaveOutWeights));

        Assert.Equal("Corrupt ONNX tensor", streamed.Title);
        Assert.Equal(whole.Message, streamed.Message);
    }

    [Theory]
    [InlineData(-1)] // inside the left-out weight
    [InlineData(3)] // inside the opset import, after the graph
    [InlineData(30)] // inside the graph's outputs, after the weights
    public void AFileCutShortIsRefusedAsTruncatedLikeAWholeOne(int cutFromEnd)
    {
        var g = new OnnxGraphBuilder(13);
        var x = g.Input("x", -1, 256);
        var bytes = g.Bytes(g.Named("fc", "Gemm", [x, g.Init("fc.weight", [256, 256]), g.Init("fc.bias", [256])]));
        var cut = bytes[..(cutFromEnd < 0 ? bytes.Length / 2 : bytes.Length - cutFromEnd)];

        var whole = Assert.Throws<SurgeryException>(() => ModelFormats.Inspect(cut, architecture: null));
        var streamed = Assert.Throws<SurgeryException>(() => Streamed(cut, LeaveOutWeights));

        Assert.Equal("Truncated ONNX file", whole.Title);
        Assert.Equal(whole.Title, streamed.Title);
        Assert.Equal(whole.Message, streamed.Message);
    }

    [Fact]
    public async Task AModelWithA64MiBWeightIsInspectedWhileAllocatingAndHoldingAFractionOfIt()
    {
        const int features = 4096;
        var path = Path.Combine(Path.GetTempPath(), $"large-{Guid.NewGuid():N}.onnx");
        try
        {
            var g = new OnnxGraphBuilder(13);
            var x = g.Input("x", -1, features);
            var weight = new TensorProto { Name = "fc.weight", DataType = (int)OnnxDataType.Float, Dims = { features, features } };
            weight.RawData = ByteString.CopyFrom(new byte[4L * features * features]);
            g.AddInitializer(weight);
            var y = g.Named("fc", "Gemm", [x, weight.Name, g.Init("fc.bias", [features])], ("transB", 1L));
            File.WriteAllBytes(path, g.Bytes(g.Node("Relu", [y])));
            g = null;
            weight = null;
            GC.Collect();

            using var file = File.OpenRead(path);
            ModelFormats.Inspect(new MemoryStream(SmallModel()), architecture: null); // LibTorch's first use is not measured
            var residentBefore = ProcessMemory.ResidentBytes() ?? 0;
            var residentPeak = residentBefore;
            using var stop = new CancellationTokenSource();
            var sampler = Task.Run(async () =>
            {
                while (!stop.IsCancellationRequested)
                {
                    residentPeak = Math.Max(residentPeak, ProcessMemory.ResidentBytes() ?? 0);
                    await Task.Delay(2);
                }
            });
            var before = GC.GetAllocatedBytesForCurrentThread();
            var inspection = ModelFormats.Inspect(file, architecture: null);
            var allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            stop.Cancel();
            await sampler;
            output.WriteLine($"file {file.Length} B, allocated {allocated} B, resident set +{residentPeak - residentBefore} B at its peak");

            Assert.Equal((long)features * features + features, inspection.ParameterCount);
            Assert.Equal(4 * (features + features + features), inspection.ActivationBytesPerSample);
            Assert.True(allocated < file.Length / 16, $"inspection allocated {allocated} bytes for a file of {file.Length}");
            if (OperatingSystem.IsLinux())
            {
                Assert.True(residentPeak - residentBefore < file.Length / 4,
                    $"the resident set grew by {residentPeak - residentBefore} bytes while a file of {file.Length} was inspected");
            }
        }
        finally
        {
            File.Delete(path);
        }
    }
}
