using System.Diagnostics;
using System.Text.Json;
using SurgeryService.Domain.Datasets;
using SurgeryService.Domain.Models;
using SurgeryService.Domain.Surgery;
using static TorchSharp.torch;

namespace SurgeryService.Bench;

/// <summary>
/// Reproduces the paper's MNIST figures: trains (or loads the cached) dense reference, measures one surgery iteration
/// against one dense iteration in the same process, runs the surgery and prints the paper's table.
/// </summary>
internal static class Reproduce
{
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web) { WriteIndented = true };

    /// <summary>
    /// The best settings found on this machine for each architecture and method (README, "Measured results"); the
    /// paper published none. A starting point for a user's own models too.
    /// </summary>
    public static SurgerySettings Recipe(string architecture, SurgeryMethod method)
    {
        LayerSettings Layer(string pattern, double cRate) => new() { Pattern = pattern, CRate = cRate };
        return (architecture, method) switch
        {
            (Architectures.LeNet300100, SurgeryMethod.Dns) => new SurgerySettings
            {
                Iterations = 100000,
                LearningRate = 0.02,
                Gamma = 1e-4,
                FcIterStop = 30000,
                EvalInterval = 20000,
                Layers = [Layer("fc1", 7.1), Layer("fc2", 4.6), Layer("fc3", 3.5)],
            },
            (Architectures.LeNet300100, SurgeryMethod.Magnitude) => new SurgerySettings
            {
                Method = SurgeryMethod.Magnitude,
                Iterations = 40000,
                MagnitudeRounds = 5,
                EvalInterval = 10000,
                Layers = [Layer("fc1", 2.0), Layer("fc2", 2.0), Layer("fc3", 1.2)],
            },
            (Architectures.LeNet5, SurgeryMethod.Dns) => new SurgerySettings
            {
                Iterations = 20000,
                Gamma = 1e-4,
                ConvIterStop = 10000,
                FcIterStop = 10000,
                EvalInterval = 5000,
                Layers = [Layer("conv1", 2.2), Layer("conv2", 3.8), Layer("fc1", 6.0), Layer("fc2", 3.2)],
            },
            (Architectures.LeNet5, SurgeryMethod.Magnitude) => new SurgerySettings
            {
                Method = SurgeryMethod.Magnitude,
                Iterations = 12000,
                MagnitudeRounds = 4,
                EvalInterval = 4000,
                Layers = [Layer("conv1", 0.8), Layer("conv2", 1.5), Layer("fc1", 2.0), Layer("fc2", 1.2)],
            },
            _ => throw new ArgumentException($"unknown architecture {architecture}"),
        };
    }

    /// <summary>Iterations of the dense reference used for the measured results.</summary>
    private static int DenseIterations(string architecture) => architecture == Architectures.LeNet5 ? 6000 : 10000;

    private static SurgerySettings DenseRecipe(int iterations) => new()
    {
        Iterations = iterations,
        LearningRate = 0.01,
        LrPolicy = LearningRatePolicy.Inv,
        EvalInterval = iterations,
    };

    public static int Run(string architecture, string[] args)
    {
        var options = Options.Parse(args);
        var method = options.Get("method", "dns") == "magnitude" ? SurgeryMethod.Magnitude : SurgeryMethod.Dns;
        var settings = options.Has("settings")
            ? JsonSerializer.Deserialize<SurgerySettings>(File.ReadAllText(options.Get("settings", "")), Json)!
            : Recipe(architecture, method);
        if (options.Has("iterations")) settings = settings with { Iterations = int.Parse(options.Get("iterations", "")) };
        settings = settings with { Method = method };
        var denseIterations = int.Parse(options.Get("dense-iterations", DenseIterations(architecture).ToString()));
        var mnistDir = options.Get("mnist",
            Environment.GetEnvironmentVariable("SURGERY_MNIST_DIR") ?? Path.Combine(".data", "datasets", "mnist"));

        if (options.Has("threads")) set_num_threads(int.Parse(options.Get("threads", "")));
        Console.WriteLine($"torch threads: {get_num_threads()}, cores: {Environment.ProcessorCount}");
        var (rawTrain, rawTest) = Mnist.Load(mnistDir);
        using var train = Scaled(rawTrain);
        using var test = Scaled(rawTest);

        // Dense reference, cached.
        var cache = Path.Combine(".data", "bench", $"{architecture}-dense-{denseIterations}.bin");
        using var model = Architectures.Create(architecture);
        if (File.Exists(cache))
        {
            model.load(cache);
            Console.WriteLine($"dense reference: loaded {cache}");
        }
        else
        {
            manual_seed(1);
            using var fresh = Architectures.Create(architecture);
            var clock = Stopwatch.StartNew();
            using (var dense = new SurgeryTrainer(fresh, [], DenseRecipe(denseIterations)))
            {
                dense.Run(train, test, new ConsoleObserver(), 0);
            }
            Directory.CreateDirectory(Path.GetDirectoryName(cache)!);
            fresh.save(cache);
            model.load(cache);
            Console.WriteLine($"dense reference: trained {denseIterations} iterations in {clock.Elapsed.TotalSeconds:F0} s, cached in {cache}");
        }

        var layers = PrunableLayers.Discover(model);
        var (denseMs, surgeryMs) = options.Has("no-cost")
            ? (double.NaN, double.NaN)
            : IterationCost(architecture, cache, layers, settings, train);

        var observer = new ConsoleObserver();
        var wall = Stopwatch.StartNew();
        using var trainer = new SurgeryTrainer(model, layers, settings);
        var outcome = trainer.Run(train, test, observer);
        wall.Stop();

        Print(architecture, settings, outcome, wall.Elapsed, denseMs, surgeryMs);
        if (options.Has("json"))
        {
            var report = new
            {
                architecture,
                settings,
                errorBefore = 1 - outcome.Before!.Top1,
                errorAfter = 1 - outcome.After!.Top1,
                parametersBefore = outcome.Total,
                parametersAfter = outcome.Kept,
                compression = outcome.Compression,
                layers = outcome.Layers,
                iterations = outcome.Iterations,
                wallSeconds = wall.Elapsed.TotalSeconds,
                denseIterationMs = double.IsNaN(denseMs) ? (double?)null : denseMs,
                surgeryIterationMs = double.IsNaN(surgeryMs) ? (double?)null : surgeryMs,
                surgeryToDenseRatio = double.IsNaN(denseMs) ? (double?)null : surgeryMs / denseMs,
            };
            File.WriteAllText(options.Get("json", ""), JsonSerializer.Serialize(report, Json));
        }
        return 0;
    }

    /// <summary>
    /// Milliseconds per iteration of dense training and of surgery on the same model and batches, measured in this
    /// process in alternating chunks (so machine noise hits both alike); medians over the chunks. The surgery side
    /// runs its first iterations, where mask updates are most frequent: the worst case of a run.
    /// </summary>
    private static (double Dense, double Surgery) IterationCost(string architecture, string cache,
        IReadOnlyList<PrunableLayer> layers, SurgerySettings settings, TensorDataset train)
    {
        const int chunk = 100, rounds = 10;
        var endless = settings with { Iterations = 10_000_000, EvalInterval = 10_000_000 };
        using var denseModel = Architectures.Create(architecture);
        using var surgeryModel = Architectures.Create(architecture);
        denseModel.load(cache);
        surgeryModel.load(cache);
        using var dense = new SurgeryTrainer(denseModel, [], endless);
        using var surgery = new SurgeryTrainer(surgeryModel, PrunableLayers.Discover(surgeryModel), endless);
        using var empty = new TensorDataset(zeros(0, 1), zeros(0, dtype: int64), 10);

        double Chunk(SurgeryTrainer trainer, int iterations)
        {
            using var cts = new CancellationTokenSource();
            var stop = trainer.Iteration + iterations - 1;
            var observer = new StopAt(stop, cts);
            var clock = Stopwatch.StartNew();
            trainer.Run(train, empty, observer, cancellationToken: cts.Token);
            return clock.Elapsed.TotalMilliseconds / iterations;
        }

        Chunk(dense, 50);
        Chunk(surgery, 50);
        var denseMs = new List<double>();
        var surgeryMs = new List<double>();
        for (var round = 0; round < rounds; round++)
        {
            denseMs.Add(Chunk(dense, chunk));
            surgeryMs.Add(Chunk(surgery, chunk));
        }
        return (Median(denseMs), Median(surgeryMs));
    }

    private static double Median(List<double> values)
    {
        var sorted = values.Order().ToList();
        return (sorted[(sorted.Count - 1) / 2] + sorted[sorted.Count / 2]) / 2;
    }

    private sealed class StopAt(int iteration, CancellationTokenSource cts) : ISurgeryObserver
    {
        public void OnIteration(IterationMetrics metrics)
        {
            if (metrics.Iteration >= iteration) cts.Cancel();
        }

        public void OnEvaluation(EvaluationMetrics metrics) { }
        public void OnCheckpointDue(SurgeryTrainer trainer) { }
    }

    private static void Print(string architecture, SurgerySettings settings, SurgeryOutcome outcome, TimeSpan wall,
        double denseMs, double surgeryMs)
    {
        Console.WriteLine();
        Console.WriteLine($"== {architecture}, method {settings.Method.ToString().ToLowerInvariant()} ==");
        Console.WriteLine($"{"layer",-8} {"params",10} {"kept",8} {"remaining",10} {"pruned",9} {"spliced",9}");
        foreach (var l in outcome.Layers)
        {
            Console.WriteLine($"{l.Layer,-8} {l.Total,10} {l.Kept,8} {l.RemainingPercent,9:F2}% {l.PrunedTotal,9} {l.SplicedTotal,9}");
        }
        Console.WriteLine($"{"total",-8} {outcome.Total,10} {outcome.Kept,8} {100.0 * outcome.Kept / outcome.Total,9:F2}%");
        Console.WriteLine($"compression        {outcome.Compression:F1}x");
        Console.WriteLine($"test error         {100 * (1 - outcome.Before!.Top1):F2}% -> {100 * (1 - outcome.After!.Top1):F2}%");
        Console.WriteLine($"iterations         {outcome.Iterations}");
        Console.WriteLine($"wall time          {wall.TotalSeconds:F0} s");
        if (!double.IsNaN(denseMs))
        {
            Console.WriteLine($"iteration cost     dense {denseMs:F2} ms, surgery {surgeryMs:F2} ms, ratio {surgeryMs / denseMs:F2}x");
        }
        Console.WriteLine($"settings           {JsonSerializer.Serialize(settings)}");
    }

    private static TensorDataset Scaled(TensorDataset raw)
    {
        using (raw)
        {
            return new TensorDataset(raw.Inputs.div(255f), raw.Labels.clone(), raw.ClassCount);
        }
    }

    private sealed class ConsoleObserver : ISurgeryObserver
    {
        private readonly Stopwatch _clock = Stopwatch.StartNew();

        public void OnIteration(IterationMetrics metrics)
        {
            if ((metrics.Iteration + 1) % 1000 != 0) return;
            var kept = metrics.Layers.Count == 0 ? "" : $", kept {100.0 * metrics.Kept / metrics.Total:F2}%";
            Console.WriteLine($"  iter {metrics.Iteration + 1,6}: loss {metrics.Loss:F4}, lr {metrics.LearningRate:F5}{kept} ({_clock.Elapsed.TotalSeconds:F0} s)");
        }

        public void OnEvaluation(EvaluationMetrics metrics) =>
            Console.WriteLine($"  eval at {metrics.Iteration}: loss {metrics.Loss:F4}, error {100 * (1 - metrics.Top1):F2}%");

        public void OnCheckpointDue(SurgeryTrainer trainer) { }
    }
}

internal sealed class Options(Dictionary<string, string> values)
{
    public static Options Parse(string[] args)
    {
        var values = new Dictionary<string, string>();
        for (var i = 0; i < args.Length; i++)
        {
            if (!args[i].StartsWith("--", StringComparison.Ordinal)) throw new ArgumentException($"unexpected '{args[i]}'");
            values[args[i][2..]] = i + 1 < args.Length && !args[i + 1].StartsWith("--", StringComparison.Ordinal) ? args[++i] : "true";
        }
        return new Options(values);
    }

    public bool Has(string name) => values.ContainsKey(name);
    public string Get(string name, string fallback) => values.GetValueOrDefault(name, fallback);
}
