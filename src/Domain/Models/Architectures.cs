using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace SurgeryService.Domain.Models;

/// <summary>The built-in architectures, addressable by name (docs/algorithm.md#paper-results).</summary>
public static class Architectures
{
    public const string LeNet300100 = "lenet-300-100";
    public const string LeNet5 = "lenet-5";

    public static IReadOnlyList<string> Names { get; } = [LeNet300100, LeNet5];

    /// <summary>A freshly initialised module of the named architecture (seeded by the caller through torch.manual_seed).</summary>
    public static Module<Tensor, Tensor> Create(string name)
    {
        Torch.ConvolutionCheck.Ensure();
        return name switch
        {
            LeNet300100 => new LeNet300100Module(),
            LeNet5 => new LeNet5Module(),
            _ => throw new SurgeryException("Unknown architecture",
                $"architecture '{name}' is not built in; known: {string.Join(", ", Names)}", ErrorKind.Unsupported),
        };
    }

    /// <summary>The input shape of one sample, without the batch dimension.</summary>
    public static long[] InputShape(string name) => name switch
    {
        LeNet300100 => [784],
        LeNet5 => [1, 28, 28],
        _ => throw new SurgeryException("Unknown architecture",
            $"architecture '{name}' is not built in; known: {string.Join(", ", Names)}", ErrorKind.Unsupported),
    };

    /// <summary>
    /// The bytes one sample's forward pass computes, as <see cref="Onnx.OnnxModule.ActivationBytes"/> counts them: the
    /// input and every layer's and activation's output, in float32.
    /// </summary>
    public static long ActivationBytesPerSample(string name) => 4 * name switch
    {
        LeNet300100 => 784 + 2 * 300 + 2 * 100 + 10,
        LeNet5 => 784 + 20 * 24 * 24 + 20 * 12 * 12 + 50 * 8 * 8 + 50 * 4 * 4 + 2 * 500 + 10,
        _ => throw new SurgeryException("Unknown architecture",
            $"architecture '{name}' is not built in; known: {string.Join(", ", Names)}", ErrorKind.Unsupported),
    };

    /// <summary>784-300-100-10 with ReLU; accepts [N, 784] or [N, 1, 28, 28].</summary>
    private sealed class LeNet300100Module : Module<Tensor, Tensor>
    {
        private readonly Linear fc1 = Linear(784, 300);
        private readonly Linear fc2 = Linear(300, 100);
        private readonly Linear fc3 = Linear(100, 10);

        public LeNet300100Module() : base(LeNet300100) => RegisterComponents();

        public override Tensor forward(Tensor input)
        {
            using var scope = NewDisposeScope();
            var x = functional.relu(fc1.forward(input.flatten(1)));
            x = functional.relu(fc2.forward(x));
            return fc3.forward(x).MoveToOuterDisposeScope();
        }
    }

    /// <summary>Caffe's LeNet: conv 20@5x5, max-pool 2, conv 50@5x5, max-pool 2, fc 500, ReLU, fc 10.</summary>
    private sealed class LeNet5Module : Module<Tensor, Tensor>
    {
        private readonly Conv2d conv1 = Conv2d(1, 20, 5);
        private readonly Conv2d conv2 = Conv2d(20, 50, 5);
        private readonly Linear fc1 = Linear(800, 500);
        private readonly Linear fc2 = Linear(500, 10);

        public LeNet5Module() : base(LeNet5) => RegisterComponents();

        public override Tensor forward(Tensor input)
        {
            using var scope = NewDisposeScope();
            var x = input.dim() == 2 ? input.view(-1, 1, 28, 28) : input;
            x = functional.max_pool2d(conv1.forward(x), 2);
            x = functional.max_pool2d(conv2.forward(x), 2);
            x = functional.relu(fc1.forward(x.flatten(1)));
            return fc2.forward(x).MoveToOuterDisposeScope();
        }
    }
}
