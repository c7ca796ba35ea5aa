using System.Diagnostics;
using System.Globalization;
using SurgeryService.Domain.Datasets;
using SurgeryService.Domain.Models;
using SurgeryService.Domain.Onnx;
using SurgeryService.Domain.Surgery;
using static TorchSharp.torch;

namespace SurgeryService.Bench;

/// <summary>
/// Seconds per evaluation of 6,000 MNIST test images (a budget job's validation split) at several batch sizes, the
/// way <see cref="SurgeryTrainer.Evaluate"/> runs them (eval mode, no gradients, one forward per batch), and then the
/// trainer's own evaluation at the default batchSize. Each model is a built-in architecture or a model file with its
/// sidecar JSON (bench/models), whose inputs are scaled as it says.
/// </summary>
internal static class EvaluationBatch
{
    private static readonly int[] Batches = [1000, 256, 128, 64, 32];
    private const int Samples = 6000;

    public static int Run(string[] args)
    {
        var options = Options.Parse(args.Where(a => !IsModel(a)).ToArray());
        if (options.Has("threads")) set_num_threads(int.Parse(options.Get("threads", ""), CultureInfo.InvariantCulture));
        var models = args.Where(IsModel).ToList();
        if (models.Count == 0) models = [Architectures.LeNet300100, Architectures.LeNet5];
        var mnistDir = options.Get("mnist", Environment.GetEnvironmentVariable("SURGERY_MNIST_DIR") ?? Path.Combine(".data", "datasets", "mnist"));
        Console.WriteLine($"torch threads: {get_num_threads()}, cores: {Environment.ProcessorCount}; seconds per evaluation of {Samples} test images, best of 3");
        Console.WriteLine($"{"model",-28} " + string.Join(" ", Batches.Select(b => $"{"batch " + b,10}")) + $" {"trainer",10}");
        foreach (var name in models)
        {
            var (raw, rawTest) = Mnist.Load(mnistDir);
            raw.Dispose();
            var onnx = name.EndsWith(".onnx", StringComparison.OrdinalIgnoreCase);
            var preprocess = onnx ? Target.Preprocessing(name) : Reproduce.Scaled;
            using var test = preprocess(rawTest);
            using var inputs = test.Inputs.narrow(0, 0, Samples);
            using var labels = test.Labels.narrow(0, 0, Samples);
            using var samples = new TensorDataset(inputs.alias(), labels.alias(), test.ClassCount);
            var model = onnx ? OnnxModel.Load(name) : null;
            using var module = model is null ? Architectures.Create(name) : OnnxModule.Create(model, outputLogits: true);
            IReadOnlyList<PrunableLayer> layers = model?.PrunableLayers ?? PrunableLayers.Discover(module);
            using var trainer = new SurgeryTrainer(module, layers, new SurgerySettings());
            trainer.Evaluate(samples); // warm-up
            var seconds = Batches.Select(b => Best(() => Forward(module, inputs, b))).ToList();
            var own = Best(() => trainer.Evaluate(samples));
            Console.WriteLine($"{Path.GetFileName(name),-28} " + string.Join(" ", seconds.Select(s => $"{s,10:F2}")) + $" {own,10:F2}");
        }
        return 0;
    }

    private static bool IsModel(string arg) => arg.EndsWith(".onnx", StringComparison.OrdinalIgnoreCase) || Architectures.Names.Contains(arg);

    private static void Forward(nn.Module<Tensor, Tensor> module, Tensor inputs, int batch)
    {
        using var _ = no_grad();
        module.eval();
        for (long start = 0; start < inputs.shape[0]; start += batch)
        {
            using var scope = NewDisposeScope();
            module.forward(inputs.narrow(0, start, Math.Min(batch, inputs.shape[0] - start))).argmax(1).sum().item<long>();
        }
        module.train();
    }

    private static double Best(Action run)
    {
        var best = double.MaxValue;
        for (var i = 0; i < 3; i++)
        {
            var watch = Stopwatch.StartNew();
            run();
            best = Math.Min(best, watch.Elapsed.TotalSeconds);
        }
        return best;
    }
}
