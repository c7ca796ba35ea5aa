using SurgeryService.Domain.Torch;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace SurgeryService.Domain.Tests.Torch;

public class ConvolutionCheckTests(ITestOutputHelper output)
{
    [Fact]
    public void Float32ConvolutionAgreesWithFloat64OnceTheCheckHasRun()
    {
        var result = ConvolutionCheck.Ensure();
        output.WriteLine($"relative error {result.Error:g3}, oneDNN disabled: {result.OneDnnDisabled}, after {result.ErrorAfter:g3}");

        using var scope = NewDisposeScope();
        using var generator = new Generator(99);
        var x = randn([8, 3, 32, 32], generator: generator);
        var w = randn([16, 3, 3, 3], generator: generator);
        var reference = nn.functional.conv2d(x.to(float64), w.to(float64), padding: [1, 1]);
        var actual = nn.functional.conv2d(x, w, padding: [1, 1]).to(float64);
        var relative = (actual - reference).abs().max().item<double>() / reference.abs().max().item<double>();
        Assert.True(relative < 1e-5, $"float32 convolution is off by {relative:g3} relative to float64");
        Assert.Same(result, ConvolutionCheck.Ensure());
    }
}
