using System.Text;
using SurgeryService.Domain.Datasets;
using SurgeryService.Domain.Models;
using SurgeryService.Domain.Surgery;
using TorchSharp;
using static TorchSharp.torch;

namespace SurgeryService.Domain.Tests.Models;

/// <summary>
/// Weight files of TorchSharp's TorchVision classifiers, saved by <c>Module.save</c> as a TorchSharp user would, through
/// inspection, surgery and export, and back into TorchVision's own module.
/// </summary>
public class TorchVisionZooTests
{
    private const int Classes = 10;

    [Fact]
    public void ResNet18WeightsAreInspectedWithTheirClassCountFromTheClassifierAndTheirConvolutionsAndLinearPrunable()
    {
        var bytes = ResNet18Weights(Classes, seed: 1);

        var inspection = ModelFormats.Inspect(bytes, Architectures.ResNet18);

        Assert.Equal(ModelFormat.TorchSharp, inspection.Format);
        Assert.Equal("resnet18", inspection.Architecture);
        Assert.Equal(new long[] { 3, -1, -1 }, inspection.InputShape);
        var fc = Assert.Single(inspection.Layers, l => l.Name == "fc");
        Assert.Equal(512 * Classes + Classes, fc.Parameters);
        Assert.True(fc.Prunable);
        Assert.True(inspection.Layers.Single(l => l.Name == "layer2.0.downsample.0").Prunable);
        Assert.False(inspection.Layers.Single(l => l.Name == "bn1").Prunable);
        Assert.Equal(21, inspection.Layers.Count(l => l.Prunable)); // 1 + 16 block + 3 downsample convolutions, fc
        Assert.Contains("BatchNorm2d", inspection.Operators);
    }

    [Fact]
    public void ResNet18WeightsLoadIntoAModuleComputingWhatTheUsersModuleComputes()
    {
        using var scope = NewDisposeScope();
        manual_seed(2);
        using var original = torchvision.models.resnet18(num_classes: Classes);
        Randomise(original);
        var bytes = TorchSharpWeights.Save(original);

        using var loaded = ModelFormats.Load(bytes, ModelFormat.TorchSharp, Architectures.ResNet18);

        var input = randn(2, 3, 32, 32);
        original.eval();
        loaded.Module.eval();
        Assert.True(original.forward(input).eq(loaded.Module.forward(input)).all().item<bool>());
        Assert.Equal(21, loaded.Layers.Count);
        Assert.Contains(loaded.Layers, l => l is { Name: "fc", Kind: LayerKind.FullyConnected, BiasParameter: "fc.bias" });
        Assert.Contains(loaded.Layers, l => l is { Name: "layer1.0.conv1", Kind: LayerKind.Convolution, BiasParameter: null });
        Assert.DoesNotContain(loaded.Layers, l => l.WeightParameter.Contains("bn", StringComparison.Ordinal));
    }

    [Fact]
    public void PrunedResNet18IsDeliveredAsWeightsThatTorchVisionsResNet18LoadsWithExactZerosAndTheSameOutputs()
    {
        var bytes = ResNet18Weights(Classes, seed: 3);
        using var loaded = ModelFormats.Load(bytes, ModelFormat.TorchSharp, Architectures.ResNet18);
        using var train = SyntheticImages(96, seed: 4);
        using var test = SyntheticImages(32, seed: 5);
        var settings = new SurgerySettings
        {
            Iterations = 4,
            BatchSize = 16,
            LearningRate = 0.01,
            LrPolicy = LearningRatePolicy.Fixed,
            CRate = 1,
            ConvIterStop = 4,
            FcIterStop = 4,
            EvalInterval = 1000,
            Seed = 6,
            Device = DeviceChoice.Cpu,
        };
        using var trainer = new SurgeryTrainer(loaded.Module, loaded.Layers, settings);
        var outcome = trainer.Run(train, test, new Surgery.Fixtures.RecordingObserver());
        Assert.True(outcome.Kept < outcome.Total, "nothing was pruned");

        var (format, delivered) = Assert.Single(ModelFormats.WriteResults(loaded, settings, outcome));
        Assert.Equal(ResultFormat.TorchSharp, format);

        using var scope = NewDisposeScope();
        using var user = torchvision.models.resnet18(num_classes: Classes);
        user.load(new MemoryStream(delivered), strict: true);
        var parameters = user.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        foreach (var layer in outcome.Layers)
        {
            var weight = parameters[loaded.Layers.Single(l => l.Name == layer.Layer).WeightParameter];
            Assert.Equal(layer.Total - layer.Kept, weight.eq(0).sum().item<long>());
        }
        var input = test.Inputs.narrow(0, 0, 8);
        user.eval();
        loaded.Module.eval();
        Assert.True(user.forward(input).eq(loaded.Module.forward(input)).all().item<bool>());
    }

    [Fact]
    public void MobileNetV2WeightsLoadWithTheirClassCountAndPrunableConvolutions()
    {
        using var scope = NewDisposeScope();
        manual_seed(7);
        using var original = torchvision.models.mobilenet_v2(num_classes: 3);
        var bytes = TorchSharpWeights.Save(original);

        using var loaded = ModelFormats.Load(bytes, ModelFormat.TorchSharp, Architectures.MobileNetV2);

        Assert.Contains(loaded.Layers, l => l is { WeightParameter: "classifier.1.weight", Kind: LayerKind.FullyConnected });
        Assert.Equal(53, loaded.Layers.Count); // 52 convolutions (depthwise ones included) and the classifier
        var input = randn(1, 3, 32, 32);
        original.eval();
        loaded.Module.eval();
        Assert.True(original.forward(input).eq(loaded.Module.forward(input)).all().item<bool>());
    }

    [Fact]
    public void RefusesAClassCountThatTheClassifierDoesNotHoldNamingIt()
    {
        var bytes = ResNet18Weights(Classes, seed: 8);

        var error = Assert.Throws<SurgeryException>(() => ModelFormats.Inspect(bytes, Architectures.ResNet18, classes: 5));

        Assert.Equal(ErrorKind.BadInput, error.Kind);
        Assert.Equal("the TorchSharp weight file does not match architecture 'resnet18' with 5 classes: " +
            "tensor 'fc.weight' is [10x512] in the file but [5x512] in the architecture", error.Message);
        using var accepted = ModelFormats.Load(bytes, ModelFormat.TorchSharp, Architectures.ResNet18, classes: 10);
    }

    [Fact]
    public void RefusesAFileWithARenamedTensorNamingIt()
    {
        var bytes = Rename(ResNet18Weights(Classes, seed: 9), "layer3.1.conv2.weight", "layer3.1.convX.weight");

        var error = Assert.Throws<SurgeryException>(() => ModelFormats.Inspect(bytes, Architectures.ResNet18));

        Assert.Equal(ErrorKind.BadInput, error.Kind);
        Assert.EndsWith("the file's tensor 'layer3.1.convX.weight' [256x256x3x3] is not part of the architecture", error.Message);
    }

    [Fact]
    public void RefusesAFileWhoseTensorHasAnotherShapeNamingItAndBothShapes()
    {
        using var scope = NewDisposeScope();
        var tensors = Header(Architectures.ResNet18, Classes);
        var i = tensors.FindIndex(t => t.Name == "layer2.0.conv1.weight");
        tensors[i] = tensors[i] with { Shape = [128, 32, 3, 3] };

        var error = Assert.Throws<SurgeryException>(() => ModelFormats.Inspect(Write(tensors), Architectures.ResNet18));

        Assert.EndsWith("tensor 'layer2.0.conv1.weight' is [128x32x3x3] in the file but [128x64x3x3] in the architecture", error.Message);
    }

    [Fact]
    public void RefusesAFileLackingATensorNamingIt()
    {
        using var scope = NewDisposeScope();
        var tensors = Header(Architectures.ResNet18, Classes);
        tensors.RemoveAll(t => t.Name == "layer4.1.bn2.running_var");

        var error = Assert.Throws<SurgeryException>(() => ModelFormats.Inspect(Write(tensors), Architectures.ResNet18));

        Assert.EndsWith("the file lacks tensor 'layer4.1.bn2.running_var' [512]", error.Message);
    }

    [Theory]
    [InlineData(Architectures.AlexNet, "features.0.weight", "[64x3x11x11]")]
    [InlineData(Architectures.Vgg11, "features.0.weight", "[64x3x3x3]")]
    public void RefusesACraftedFileForTheBigArchitecturesNamingTheFirstTensorThatDiffers(string architecture, string name, string shape)
    {
        // Crafted files (TorchVision's 230 MB AlexNet and 515 MB VGG-11 are built, but no weight file of their size).
        var tensors = new List<WeightFileTensor>
        {
            new(name, ScalarType.Float32, [1]),
            new("classifier.6.weight", ScalarType.Float32, [4, 4096]),
        };

        var error = Assert.Throws<SurgeryException>(() => ModelFormats.Inspect(Write(tensors), architecture));

        Assert.Equal(ErrorKind.BadInput, error.Kind);
        Assert.EndsWith($"with 4 classes: tensor '{name}' is [1] in the file but {shape} in the architecture", error.Message);
    }

    [Fact]
    public void RefusesATruncatedFileAsNotAWeightFile()
    {
        var bytes = ResNet18Weights(2, seed: 10);

        var error = Assert.Throws<SurgeryException>(() => ModelFormats.Inspect(bytes[..(bytes.Length / 2)], Architectures.ResNet18));

        Assert.Contains("not a TorchSharp weight file", error.Message);
        Assert.Contains("runs past the end of the file", error.Message);
    }

    [Fact]
    public void RefusesAnUnknownArchitectureListingTheKnownOnes()
    {
        var error = Assert.Throws<SurgeryException>(() => ModelFormats.Inspect([1, 2, 3], "resnet19"));

        Assert.Equal(ErrorKind.Unsupported, error.Kind);
        Assert.Contains("resnet18, resnet34, resnet50, mobilenet_v2, vgg11, vgg11_bn, vgg16, vgg16_bn, alexnet", error.Message);
    }

    internal static byte[] ResNet18Weights(int classes, int seed)
    {
        using var scope = NewDisposeScope();
        manual_seed(seed);
        using var module = torchvision.models.resnet18(num_classes: classes);
        Randomise(module);
        return TorchSharpWeights.Save(module);
    }

    /// <summary>Running statistics other than 0 and 1, so a test sees whether buffers travel with the weights.</summary>
    private static void Randomise(nn.Module module)
    {
        using var noGrad = no_grad();
        foreach (var (name, buffer) in module.named_buffers())
        {
            if (name.EndsWith("running_mean", StringComparison.Ordinal)) buffer.copy_(randn_like(buffer) * 0.1);
            if (name.EndsWith("running_var", StringComparison.Ordinal)) buffer.copy_(rand_like(buffer) + 0.5);
        }
    }

    /// <summary>3-channel 32×32 images whose class is the brightest of ten regions, so a few steps can learn something.</summary>
    private static TensorDataset SyntheticImages(int count, int seed)
    {
        using var scope = NewDisposeScope();
        var generator = new Generator((ulong)seed);
        var inputs = rand([count, 3, 32, 32], generator: generator);
        var labels = randint(0, Classes, [count], generator: generator);
        for (var i = 0; i < count; i++)
        {
            var c = labels[i].item<long>();
            inputs[i].narrow(1, c * 3, 3).add_(1);
        }
        return new TensorDataset(inputs.MoveToOuterDisposeScope(), labels.MoveToOuterDisposeScope(), Classes);
    }

    private static List<WeightFileTensor> Header(string architecture, int classes)
    {
        using var module = Architectures.Create(architecture, classes);
        return TorchSharpWeights.ReadHeader(TorchSharpWeights.Save(module), architecture).ToList();
    }

    /// <summary>A weight file in Module.save's layout with the given headers and zero-filled data.</summary>
    private static byte[] Write(IEnumerable<WeightFileTensor> tensors)
    {
        var list = tensors.ToList();
        using var stream = new MemoryStream();
        using var writer = new BinaryWriter(stream, Encoding.UTF8);
        Leb128(writer, list.Count);
        foreach (var t in list)
        {
            writer.Write(t.Name);
            Leb128(writer, (long)t.Type);
            Leb128(writer, t.Shape.Length);
            foreach (var d in t.Shape) Leb128(writer, d);
            writer.Write(new byte[t.Shape.Aggregate(1L, (p, d) => p * d) * (t.Type == ScalarType.Int64 ? 8 : 4)]);
        }
        writer.Flush();
        return stream.ToArray();
    }

    private static void Leb128(BinaryWriter writer, long value)
    {
        do
        {
            var b = (byte)(value & 0x7F);
            value >>= 7;
            writer.Write(value == 0 ? b : (byte)(b | 0x80));
        }
        while (value != 0);
    }

    private static byte[] Rename(byte[] bytes, string from, string to)
    {
        var at = bytes.AsSpan().IndexOf(Encoding.UTF8.GetBytes(from));
        Assert.True(at > 0);
        var renamed = bytes.ToArray();
        Encoding.UTF8.GetBytes(to).CopyTo(renamed, at);
        return renamed;
    }
}
