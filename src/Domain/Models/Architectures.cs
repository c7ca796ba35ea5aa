using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace SurgeryService.Domain.Models;

/// <summary>
/// The architectures TorchSharp weight files may be uploaded for, addressable by name: the two LeNets of the paper
/// (docs/algorithm.md#paper-results) and the classifiers of TorchSharp's TorchVision package, named as its
/// <c>torchvision.models</c> factories are.
/// </summary>
public static class Architectures
{
    public const string LeNet300100 = "lenet-300-100";
    public const string LeNet5 = "lenet-5";
    public const string ResNet18 = "resnet18";
    public const string ResNet34 = "resnet34";
    public const string ResNet50 = "resnet50";
    public const string MobileNetV2 = "mobilenet_v2";
    public const string Vgg11 = "vgg11";
    public const string Vgg11Bn = "vgg11_bn";
    public const string Vgg16 = "vgg16";
    public const string Vgg16Bn = "vgg16_bn";
    public const string AlexNet = "alexnet";

    /// <summary>
    /// TorchVision's classifiers take 3-channel images of any height and width (their heads pool adaptively); a data
    /// set's own H×W is used.
    /// </summary>
    private static readonly long[] Image = [3, -1, -1];

    private static readonly Architecture[] All =
    [
        new(LeNet300100, "fc3.weight", [784], _ => new LeNet300100Module(), FixedClassCount: 10),
        new(LeNet5, "fc2.weight", [1, 28, 28], _ => new LeNet5Module(), FixedClassCount: 10),
        new(ResNet18, "fc.weight", Image, n => torchvision.models.resnet18(num_classes: n)),
        new(ResNet34, "fc.weight", Image, n => torchvision.models.resnet34(num_classes: n)),
        new(ResNet50, "fc.weight", Image, n => torchvision.models.resnet50(num_classes: n)),
        new(MobileNetV2, "classifier.1.weight", Image, n => torchvision.models.mobilenet_v2(num_classes: n)),
        new(Vgg11, "classifier.6.weight", Image, n => torchvision.models.vgg11(num_classes: n)),
        new(Vgg11Bn, "classifier.6.weight", Image, n => torchvision.models.vgg11_bn(num_classes: n)),
        new(Vgg16, "classifier.6.weight", Image, n => torchvision.models.vgg16(num_classes: n)),
        new(Vgg16Bn, "classifier.6.weight", Image, n => torchvision.models.vgg16_bn(num_classes: n)),
        new(AlexNet, "classifier.6.weight", Image, n => torchvision.models.alexnet(num_classes: n)),
    ];

    public static IReadOnlyList<string> Names { get; } = All.Select(a => a.Name).ToList();

    /// <summary>The named architecture; an <see cref="ErrorKind.Unsupported"/> error lists the known names.</summary>
    public static Architecture Get(string name) =>
        All.FirstOrDefault(a => a.Name == name) ?? throw new SurgeryException("Unknown architecture",
            $"architecture '{name}' is not built in; known: {string.Join(", ", Names)}", ErrorKind.Unsupported);

    /// <summary>A freshly initialised module of the named architecture (seeded by the caller through torch.manual_seed).</summary>
    public static Module<Tensor, Tensor> Create(string name, int? classes = null) => Get(name).Create(classes);

    /// <summary>The input shape of one sample, without the batch dimension; -1 is any size.</summary>
    public static long[] InputShape(string name) => [.. Get(name).InputShape];

    /// <summary>
    /// The bytes one sample's forward pass computes, as <see cref="Onnx.OnnxModule.ActivationBytes"/> counts them: the
    /// input and every layer's and activation's output, in float32. Counted for the two LeNets; 0 (not measured) for the
    /// TorchVision classifiers, whose job memory estimate then counts their weights and dataset alone.
    /// </summary>
    public static long ActivationBytesPerSample(string name) => 4 * Get(name).Name switch
    {
        LeNet300100 => 784 + 2 * 300 + 2 * 100 + 10,
        LeNet5 => 784 + 20 * 24 * 24 + 20 * 12 * 12 + 50 * 8 * 8 + 50 * 4 * 4 + 2 * 500 + 10,
        _ => 0,
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

/// <summary>
/// One architecture: how to build it for a class count, and the classifier weight whose first dimension is that
/// count in a weight file (<c>[classes, features]</c>).
/// </summary>
public sealed record Architecture(
    string Name,
    string ClassifierWeight,
    IReadOnlyList<long> InputShape,
    Func<int, Module<Tensor, Tensor>> Factory,
    int? FixedClassCount = null)
{
    /// <summary>TorchVision's own default, used when neither the user nor a weight file says otherwise.</summary>
    public const int DefaultClassCount = 1000;

    public const int MaxClassCount = 100_000;

    public Module<Tensor, Tensor> Create(int? classes = null)
    {
        Torch.ConvolutionCheck.Ensure();
        return Factory(FixedClassCount ?? classes ?? DefaultClassCount);
    }
}
