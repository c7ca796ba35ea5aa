using SurgeryService.Domain.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace SurgeryService.Domain.Tests.Models;

public class TorchSharpWeightsTests
{
    [Theory]
    [InlineData(Architectures.LeNet5)]
    [InlineData(Architectures.LeNet300100)]
    public void SavedWeightsLoadIntoTheNamedArchitectureAndComputeTheSameOutputs(string architecture)
    {
        using var scope = NewDisposeScope();
        manual_seed(11);
        using var original = Architectures.Create(architecture);
        var bytes = TorchSharpWeights.Save(original);

        manual_seed(12);
        using var loaded = TorchSharpWeights.Load(architecture, bytes);
        var input = rand(3, 1, 28, 28);
        original.eval();
        loaded.eval();
        Assert.True(original.forward(input).eq(loaded.forward(input)).all().item<bool>());
        Assert.Equal(bytes, TorchSharpWeights.Save(loaded));
    }

    [Fact]
    public void WeightsFileIsReadableByTorchSharpsOwnModuleLoad()
    {
        using var scope = NewDisposeScope();
        using var original = Architectures.Create(Architectures.LeNet5);
        var bytes = TorchSharpWeights.Save(original);
        using var plain = Architectures.Create(Architectures.LeNet5);
        plain.load(new MemoryStream(bytes));
        var names = original.named_parameters().Select(p => p.name).ToList();
        Assert.All(names, n => Assert.True(original.get_parameter(n)!.eq(plain.get_parameter(n)!).all().item<bool>()));
    }

    [Fact]
    public void RefusesWeightsOfAnotherArchitectureNamingTheFirstMismatchedTensor()
    {
        using var other = Architectures.Create(Architectures.LeNet300100);
        var bytes = TorchSharpWeights.Save(other);
        var error = Assert.Throws<SurgeryException>(() => TorchSharpWeights.Load(Architectures.LeNet5, bytes));
        Assert.Equal(ErrorKind.BadInput, error.Kind);
        Assert.Equal("the TorchSharp weight file does not match architecture 'lenet-5' with 10 classes: " +
            "tensor 'fc1.weight' is [300x784] in the file but [500x800] in the architecture", error.Message);
    }

    [Fact]
    public void RefusesAFileThatIsNotAWeightFile()
    {
        var error = Assert.Throws<SurgeryException>(() => TorchSharpWeights.Load(Architectures.LeNet5, "not weights"u8.ToArray()));
        Assert.Contains("not a TorchSharp weight file", error.Message);
    }
}
