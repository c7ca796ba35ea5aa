using SurgeryService.Domain.Onnx;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace SurgeryService.Domain.Tests.Onnx;

/// <summary>Checks the autograd gradients of an <see cref="OnnxModule"/> against central finite differences, in float64.</summary>
internal static class OnnxGradients
{
    /// <summary>
    /// The gradient of a fixed random projection of the output, with respect to the input and to every parameter,
    /// equals its central finite difference (step 1e-6) within 1e-6 + 1e-4 relative, for up to 24 entries of each.
    /// </summary>
    public static void AssertMatchFiniteDifferences(byte[] model, long[] inputShape, ITestOutputHelper? output = null, int seed = 3)
    {
        using var scope = NewDisposeScope();
        using var module = OnnxModule.Create(OnnxModel.Load(model));
        module.to(ScalarType.Float64);
        module.eval();
        using var generator = new Generator((ulong)seed);
        var input = randn(inputShape, ScalarType.Float64, generator: generator).requires_grad_(true);
        Tensor projection;
        using (no_grad())
        {
            projection = randn(module.forward(input).shape, ScalarType.Float64, generator: generator);
        }
        double Loss() => (module.forward(input) * projection).sum().item<double>();
        (module.forward(input) * projection).sum().backward();

        var checkedEntries = 0;
        var worst = 0.0;
        foreach (var (name, tensor) in new[] { ("input", input) }.Concat(module.named_parameters().Select(p => (p.name, (Tensor)p.parameter))))
        {
            Assert.NotNull(tensor.grad);
            var analytic = tensor.grad!.detach().clone().flatten();
            Assert.True(analytic.isfinite().all().item<bool>(), $"{name}: gradient is not finite");
            var flat = tensor.detach().view(-1); // shares storage with the tensor
            var count = flat.shape[0];
            for (var k = 0; k < Math.Min(24, count); k++)
            {
                var i = count <= 24 ? k : (k * 7919) % count;
                double plus, minus;
                using (no_grad())
                {
                    var original = flat[i].item<double>();
                    flat[i] = original + 1e-6;
                    plus = Loss();
                    flat[i] = original - 1e-6;
                    minus = Loss();
                    flat[i] = original;
                }
                var numeric = (plus - minus) / 2e-6;
                var value = analytic[i].item<double>();
                var error = Math.Abs(numeric - value);
                worst = Math.Max(worst, error);
                Assert.True(error <= 1e-6 + 1e-4 * Math.Abs(numeric), $"{name}[{i}]: autograd {value}, finite difference {numeric}");
                checkedEntries++;
            }
        }
        output?.WriteLine($"{checkedEntries} gradient entries checked, worst abs error {worst:g3}");
    }
}
