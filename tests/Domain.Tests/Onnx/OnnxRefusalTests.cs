using Google.Protobuf;
using SurgeryService.Domain.Models;
using SurgeryService.Domain.Onnx;
using SurgeryService.Domain.Onnx.Proto;

namespace SurgeryService.Domain.Tests.Onnx;

/// <summary>Every way an upload is refused when it is read, each with a message that says what is wrong.</summary>
public class OnnxRefusalTests
{
    private static byte[] SmallModel(int opset = 13)
    {
        var g = new OnnxGraphBuilder(opset);
        var x = g.Input("x", -1, 4);
        var y = g.Node("Gemm", [x, g.Init("w", [4, 3]), g.Init("b", [3])]);
        return g.Bytes(g.Node("Relu", [y]));
    }

    [Fact]
    public void RefusesAFileThatIsNotOnnx()
    {
        var error = Assert.Throws<SurgeryException>(() => OnnxModel.Load("this is a text file, not a model\n"u8.ToArray()));
        Assert.Equal(ErrorKind.BadInput, error.Kind);
        Assert.Contains("not an ONNX model", error.Message);
    }

    [Fact]
    public void RefusesALayerNameLongerThanTheJobResultsCanStore()
    {
        var g = new OnnxGraphBuilder(13);
        var x = g.Input("x", -1, 4);
        var bytes = g.Bytes(g.Named(new string('g', 300), "Gemm", [x, g.Init("w", [4, 3]), g.Init("b", [3])]));
        var error = Assert.Throws<SurgeryException>(() => ModelFormats.Inspect(bytes, architecture: null));
        Assert.Equal(ErrorKind.BadInput, error.Kind);
        Assert.Contains($"longer than {ColumnLimits.Name} characters", error.Message);
    }

    [Fact]
    public void RefusesAnInputThatIsNeitherFloatNorTokenIdsNamingItsType()
    {
        var model = ModelProto.Parser.ParseFrom(SmallModel());
        model.Graph.Input[0].Type.TensorType.ElemType = (int)OnnxDataType.Double;
        var error = Assert.Throws<SurgeryException>(() => OnnxModel.Load(model.ToByteArray()));
        Assert.Equal(ErrorKind.Unsupported, error.Kind);
        Assert.Contains("'x' has element type DOUBLE", error.Message);
        Assert.Contains("INT64 or INT32 inputs (token ids)", error.Message);
    }

    [Fact]
    public void RefusesAnEmptyFile()
    {
        var error = Assert.Throws<SurgeryException>(() => OnnxModel.Load([]));
        Assert.Contains("not an ONNX model", error.Message);
    }

    [Fact]
    public void RefusesATruncatedFileSayingItIsTruncated()
    {
        var bytes = SmallModel();
        var error = Assert.Throws<SurgeryException>(() => OnnxModel.Load(bytes[..(bytes.Length * 2 / 3)]));
        Assert.Equal(ErrorKind.BadInput, error.Kind);
        Assert.Contains("truncated", error.Title + error.Message, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public void RefusesATensorWhoseDataIsShorterThanItsShape()
    {
        var model = ModelProto.Parser.ParseFrom(SmallModel());
        model.Graph.Initializer[0].RawData = ByteString.CopyFrom(new byte[10]);
        var error = Assert.Throws<SurgeryException>(() => OnnxModel.Load(model.ToByteArray()));
        Assert.Contains("'w'", error.Message);
        Assert.Contains("needs 48", error.Message);
    }

    [Fact]
    public void ListsEveryUnsupportedOperatorTypeWithTheNodesUsingIt()
    {
        var g = new OnnxGraphBuilder(13);
        var x = g.Input("x", -1, 4);
        var a = g.Named("act1", "Celu", [x]);
        var b = g.Named("resize_a", "Resize", [a]);
        var c = g.Named("resize_b", "Resize", [b]);
        var d = g.Named("ok", "Relu", [c]);
        var error = Assert.Throws<SurgeryException>(() => OnnxModel.Load(g.Bytes(g.Named("act2", "Celu", [d]))));
        Assert.Equal(ErrorKind.Unsupported, error.Kind);
        Assert.Contains("Celu (nodes: 'act1', 'act2')", error.Message);
        Assert.Contains("Resize (nodes: 'resize_a', 'resize_b')", error.Message);
        Assert.DoesNotContain("Relu", error.Message);
    }

    [Fact]
    public void NamesAtMostThreeNodesPerMissingOperator()
    {
        var g = new OnnxGraphBuilder(13);
        var y = g.Input("x", -1, 4);
        for (var i = 0; i < 5; i++) y = g.Named($"celu{i}", "Celu", [y]);
        var error = Assert.Throws<SurgeryException>(() => OnnxModel.Load(g.Bytes(y)));
        Assert.Contains("Celu (nodes: 'celu0', 'celu1', 'celu2' and 2 more)", error.Message);
    }

    [Fact]
    public void AnOnnxRefusalNamesTheMissingOperatorsWithoutTheTorchSharpHint()
    {
        var g = new OnnxGraphBuilder(17);
        var x = g.Input("x", -1, 4);
        var model = g.Bytes(g.Named("act", "Celu", [x]));

        var unsupported = Assert.Throws<SurgeryException>(() => ModelFormats.Inspect(model, architecture: null));
        var truncated = Assert.Throws<SurgeryException>(() => ModelFormats.Inspect(SmallModel()[..40], architecture: null));

        Assert.Equal("the model uses 1 operator type(s) the service cannot run: Celu (nodes: 'act')", unsupported.Message);
        Assert.DoesNotContain("TorchSharp", truncated.Message);
    }

    [Fact]
    public void ATorchSharpWeightFileUploadedWithoutArchitectureGetsTheHint()
    {
        using var lenet = Architectures.Create(Architectures.LeNet5);
        var error = Assert.Throws<SurgeryException>(() => ModelFormats.Inspect(TorchSharpWeights.Save(lenet), architecture: null));
        Assert.Contains("If this is a TorchSharp weight file, upload it with the form field 'architecture'", error.Message);
    }

    [Fact]
    public void RefusesRecurrentNodesWithSequenceLengthsOrCoupledInputForgetGates()
    {
        var g = new OnnxGraphBuilder(13);
        var x = g.Input("x", 4, -1, 3);
        var lengths = g.AddInitializer(new TensorProto { Name = "lengths", DataType = (int)OnnxDataType.Int32, Dims = { 2 }, Int32Data = { 4, 2 } });
        var a = g.Named("gru", "GRU", [x, g.Init("W", [1, 6, 3]), g.Init("R", [1, 6, 2]), "", lengths], ("hidden_size", 2L));
        var b = g.Named("lstm", "LSTM", [g.Node("Squeeze", [a, g.Longs("axes", 1)]), g.Init("W2", [1, 8, 2]), g.Init("R2", [1, 8, 2])],
            ("hidden_size", 2L), ("input_forget", 1L));
        var error = Assert.Throws<SurgeryException>(() => OnnxModel.Load(g.Bytes(b)));
        Assert.Equal(ErrorKind.Unsupported, error.Kind);
        Assert.Contains("'gru': GRU with sequence_lens", error.Message);
        Assert.Contains("'lstm': LSTM with input_forget is not supported", error.Message);
    }

    [Fact]
    public void RefusesAnOperatorFromAnotherDomainNamingTheDomain()
    {
        var model = ModelProto.Parser.ParseFrom(SmallModel());
        model.Graph.Node[1].Domain = "com.microsoft";
        var error = Assert.Throws<SurgeryException>(() => OnnxModel.Load(model.ToByteArray()));
        Assert.Contains("com.microsoft:Relu", error.Message);
    }

    [Fact]
    public void RefusesAnIntegerWeightNamingTheInitializer()
    {
        var g = new OnnxGraphBuilder(13);
        var x = g.Input("x", -1, 1, 5, 5);
        var w = g.AddInitializer(new TensorProto { Name = "conv.weight_quantized", DataType = (int)OnnxDataType.Int8, Dims = { 2, 1, 3, 3 }, Int32Data = { new int[18] } });
        var error = Assert.Throws<SurgeryException>(() => OnnxModel.Load(g.Bytes(g.Named("conv", "Conv", [x, w]))));
        Assert.Equal(ErrorKind.Unsupported, error.Kind);
        Assert.Contains("'conv.weight_quantized' (weight of 'conv', Conv) has element type INT8", error.Message);
    }

    [Theory]
    [InlineData(6)]
    [InlineData(21)]
    public void RefusesAnOpsetOutsideSevenToTwenty(int opset)
    {
        var model = ModelProto.Parser.ParseFrom(SmallModel());
        model.OpsetImport[0].Version = opset;
        var error = Assert.Throws<SurgeryException>(() => OnnxModel.Load(model.ToByteArray()));
        Assert.Contains($"opset {opset}", error.Message);
    }

    [Fact]
    public void RefusesAModelWithTwoInputs()
    {
        var g = new OnnxGraphBuilder(13);
        var a = g.Input("a", -1, 4);
        var b = g.Input("b", -1, 4);
        var error = Assert.Throws<SurgeryException>(() => OnnxModel.Load(g.Bytes(g.Node("Add", [a, b]))));
        Assert.Contains("2 inputs (a, b)", error.Message);
    }

    [Fact]
    public void RefusesExternalDataThatIsNotBesideTheModel()
    {
        var model = ModelProto.Parser.ParseFrom(SmallModel());
        var w = model.Graph.Initializer[0];
        w.ClearRawData();
        w.DataLocation = 1;
        w.ExternalData.Add(new StringStringEntryProto { Key = "location", Value = "w.bin" });
        var fromBytes = Assert.Throws<SurgeryException>(() => OnnxModel.Load(model.ToByteArray()));
        Assert.Contains("'w' is stored in the external file 'w.bin'", fromBytes.Message);
        Assert.Contains("save_as_external_data=False", fromBytes.Message);
        Assert.Equal(ErrorKind.Unsupported, fromBytes.Kind);

        var directory = Directory.CreateTempSubdirectory("onnx-missing");
        try
        {
            var missing = Assert.Throws<SurgeryException>(() => OnnxModel.Load(model.ToByteArray(), directory.FullName));
            Assert.Contains("not found beside the model", missing.Message);
            w.ExternalData[0].Value = "../../etc/passwd";
            var escaping = Assert.Throws<SurgeryException>(() => OnnxModel.Load(model.ToByteArray(), directory.FullName));
            Assert.Contains("not beside the model", escaping.Message);
        }
        finally
        {
            directory.Delete(recursive: true);
        }
    }
}
