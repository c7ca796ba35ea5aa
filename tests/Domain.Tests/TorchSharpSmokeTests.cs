using TorchSharp;
using static TorchSharp.torch;

namespace SurgeryService.Domain.Tests;

public class TorchSharpSmokeTests
{
    [Fact]
    public void ForwardAndBackwardPassProduceGradients()
    {
        using var scope = NewDisposeScope();
        var linear = nn.Linear(4, 3);
        var input = randn(8, 4);
        var loss = linear.forward(input).pow(2).mean();
        loss.backward();

        var grad = linear.weight!.grad;
        Assert.NotNull(grad);
        Assert.Equal(new long[] { 3, 4 }, grad!.shape);
        Assert.True(grad.abs().sum().item<float>() > 0f);
    }
}
