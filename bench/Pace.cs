using System.Globalization;
using SurgeryService.Domain.Datasets;
using SurgeryService.Domain.Models;
using SurgeryService.Domain.Surgery;
using static TorchSharp.torch;

namespace SurgeryService.Bench;

/// <summary>
/// Seconds per training iteration of a model file in the engine (DNS, as a job trains it) against PyTorch's own CPU loop
/// on the same architecture (bench/models/make_mnist_models.py --pace), at the same threads and batch, in one run. The
/// model is named by its file (bench/models/NAME.onnx); its sidecar JSON's <c>name</c> picks the PyTorch class. Both
/// train on one fixed random batch: the pace of a dense step does not depend on the data or the weights.
/// </summary>
internal static class Pace
{
    public static int Run(string onnxFile, string[] args)
    {
        var options = Options.Parse(args);
        int Int(string name, int fallback) => int.Parse(options.Get(name, fallback.ToString(CultureInfo.InvariantCulture)), CultureInfo.InvariantCulture);
        var batch = Int("batch", 64);
        var threads = Int("threads", Environment.ProcessorCount);
        var iterations = Int("iterations", 50);
        var rounds = Int("rounds", 3);
        var python = options.Get("python", "/usr/bin/python3");
        using var info = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.ChangeExtension(onnxFile, ".json")));
        var name = info.RootElement.GetProperty("name").GetString()!;
        var script = Path.Combine(AppContext.BaseDirectory, "models", "make_mnist_models.py");
        Console.WriteLine($"{name} ({onnxFile}), batch {batch}, {threads} threads, {iterations} timed iterations, {rounds} rounds " +
            $"(engine, then PyTorch, alternating); cores: {Environment.ProcessorCount}; OMP_WAIT_POLICY " +
            $"{Environment.GetEnvironmentVariable("OMP_WAIT_POLICY") ?? "unset"} for both");

        set_num_threads(threads);
        Console.WriteLine($"convolutions: {SurgeryService.Domain.Torch.ConvolutionCheck.Describe(SurgeryService.Domain.Torch.ConvolutionCheck.Ensure())}");
        var bytes = File.ReadAllBytes(onnxFile);
        var ratios = new List<double>();
        for (var round = 1; round <= rounds; round++)
        {
            double engine;
            {
                using var loaded = ModelFormats.Load(bytes, ModelFormat.Onnx, null);
                using var generator = new Generator(1);
                using var data = new TensorDataset(randn([batch * 4, .. loaded.InputShape], generator: generator),
                    randint(0, 10, [batch * 4], generator: generator), 10);
                var settings = new SurgerySettings { Iterations = iterations + 5, BatchSize = batch, EvalInterval = 1_000_000 };
                var clock = new Large.IterationClock();
                using var trainer = new SurgeryTrainer(loaded.Module, loaded.Layers, settings);
                trainer.Run(data, data, clock);
                engine = clock.SecondsPerIteration(skip: 5);
            }
            var pytorch = Large.Python(python, script, "-", "-", "--pace", iterations.ToString(CultureInfo.InvariantCulture), "--only", name,
                "--threads", threads.ToString(CultureInfo.InvariantCulture), "--batch", batch.ToString(CultureInfo.InvariantCulture));
            ratios.Add(engine / pytorch.Seconds);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"round {round}: engine {1000 * engine:F2} ms per iteration (median), pytorch {1000 * pytorch.Seconds:F2} ms (mean), ratio engine / pytorch {engine / pytorch.Seconds:F2}"));
        }
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"ratio engine / pytorch, median of {rounds} rounds: {ratios.Order().ElementAt(ratios.Count / 2):F2}"));
        return 0;
    }
}
