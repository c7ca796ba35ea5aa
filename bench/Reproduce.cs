using System.Diagnostics;
using System.Text.Json;
using SurgeryService.Domain.Datasets;
using SurgeryService.Domain.Models;
using SurgeryService.Domain.Surgery;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

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
                PruneBiases = true,
                Layers = [Layer("fc1", 7.0), Layer("fc2", 3.3), Layer("fc3", 2.5)],
            },
            (Architectures.LeNet300100, SurgeryMethod.Magnitude) => new SurgerySettings
            {
                Method = SurgeryMethod.Magnitude,
                Iterations = 40000,
                MagnitudeRounds = 5,
                EvalInterval = 10000,
                Layers = [Layer("fc1", 3.8), Layer("fc2", 3.8), Layer("fc3", 2.4)],
            },
            (Architectures.LeNet5, SurgeryMethod.Dns) => new SurgerySettings
            {
                Iterations = 30000,
                LrPolicy = LearningRatePolicy.Step,
                LrStepSize = 10000,
                LrGamma = 0.3,
                Gamma = 1e-4,
                ConvIterStop = 10000,
                FcIterStop = 10000,
                EvalInterval = 5000,
                PruneBiases = true,
                Layers = [Layer("conv1", 2.2), Layer("conv2", 3.8), Layer("fc1", 6.2), Layer("fc2", 3.2)],
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
    public static int DenseIterations(string architecture) => architecture == Architectures.LeNet5 ? 15000 : 10000;

    private static SurgerySettings DenseRecipe(int iterations) => new()
    {
        Iterations = iterations,
        LearningRate = 0.01,
        LrPolicy = LearningRatePolicy.Inv,
        EvalInterval = iterations,
    };

    /// <summary>The <c>--method</c> option: <c>dns</c> (the default) or <c>magnitude</c>.</summary>
    public static SurgeryMethod Method(Options options) =>
        PruningMethods.Parse(options.Get("method", "dns"))
        ?? throw new ArgumentException($"--method {options.Get("method", "")}: expected dns or magnitude");

    public static int Run(string architecture, string[] args)
    {
        var options = Options.Parse(args);
        var method = Method(options);
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

        using var model = DenseReference(architecture, denseIterations, train, test, "", out var cache);

        var layers = PrunableLayers.Discover(model);
        var cost = options.Has("no-cost") && !options.Has("cost-only") ? null : IterationCost(architecture, cache, settings, train, layers);
        if (options.Has("cost-only"))
        {
            PrintCost(cost!);
            return 0;
        }

        var observer = new ConsoleObserver();
        var wall = Stopwatch.StartNew();
        using var trainer = new SurgeryTrainer(model, layers, settings);
        var outcome = trainer.Run(train, test, observer);
        wall.Stop();

        Print(architecture, settings, outcome, wall.Elapsed, cost);
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
                iterationCost = cost,
            };
            File.WriteAllText(options.Get("json", ""), JsonSerializer.Serialize(report, Json));
        }
        return 0;
    }

    public static int DefaultDenseIterations(string architecture) => DenseIterations(architecture);

    /// <summary>
    /// The dense reference: trained by the same trainer with Caffe's LeNet solver (<see cref="DenseRecipe"/>) on
    /// <paramref name="train"/>, cached in <c>.data/bench</c> under a name that ends in <paramref name="variant"/>.
    /// </summary>
    public static Module<Tensor, Tensor> DenseReference(string architecture, int denseIterations, TensorDataset train,
        TensorDataset test, string variant, out string cache)
    {
        cache = Path.Combine(".data", "bench", $"{architecture}-dense-{denseIterations}{variant}.bin");
        var model = Architectures.Create(architecture);
        if (File.Exists(cache))
        {
            model.load(cache);
            Console.WriteLine($"dense reference: loaded {cache}");
            return model;
        }
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
        return model;
    }

    /// <summary>
    /// Milliseconds per iteration, measured in this process in alternating chunks (so machine noise hits all alike;
    /// medians over the chunks): dense training; surgery with sigma held at 1, so that every layer updates its mask in
    /// every iteration (the worst case, near a run's start); and surgery with frozen masks (after iter_stop, or when no
    /// layer's draw fires). A run's mean follows from the two and the share of updates that sigma's schedule gives.
    /// </summary>
    private static IterationCostFigures IterationCost(string architecture, string cache, SurgerySettings settings,
        TensorDataset train, IReadOnlyList<PrunableLayer> layers)
    {
        const int chunk = 100, rounds = 10;
        var endless = settings with { Iterations = 10_000_000, EvalInterval = 10_000_000 };
        var updating = endless with { Layers = [new LayerSettings { Pattern = "*", Gamma = 0, IterStop = int.MaxValue }] };
        var frozen = endless with { Layers = [new LayerSettings { Pattern = "*", IterStop = 0 }] };
        var models = Enumerable.Range(0, 3).Select(_ => Architectures.Create(architecture)).ToList();
        foreach (var m in models) m.load(cache);
        var trainers = new List<SurgeryTrainer>
        {
            new(models[0], [], endless),
            new(models[1], PrunableLayers.Discover(models[1]), updating),
            new(models[2], PrunableLayers.Discover(models[2]), frozen),
        };
        using var empty = new TensorDataset(zeros(0, 1), zeros(0, dtype: int64), 10);

        double Chunk(SurgeryTrainer trainer, int iterations)
        {
            using var cts = new CancellationTokenSource();
            var observer = new StopAt(trainer.Iteration + iterations - 1, cts);
            var clock = Stopwatch.StartNew();
            trainer.Run(train, empty, observer, cancellationToken: cts.Token);
            return clock.Elapsed.TotalMilliseconds / iterations;
        }

        try
        {
            foreach (var trainer in trainers) Chunk(trainer, 50);
            var ms = trainers.Select(_ => new List<double>()).ToList();
            for (var round = 0; round < rounds; round++)
            {
                for (var t = 0; t < trainers.Count; t++) ms[t].Add(Chunk(trainers[t], chunk));
            }
            return new IterationCostFigures(Median(ms[0]), Median(ms[1]), Median(ms[2]), MaskSchedules.ExpectedUpdateShare(settings, layers));
        }
        finally
        {
            foreach (var trainer in trainers) trainer.Dispose();
            foreach (var m in models) m.Dispose();
        }
    }

    /// <summary>Milliseconds per iteration (see <see cref="IterationCost"/>), their ratios to dense training, and a run's mean.</summary>
    private sealed record IterationCostFigures(double DenseMs, double UpdatingMs, double FrozenMs, double UpdateShare)
    {
        public double UpdatingRatio => UpdatingMs / DenseMs;
        public double FrozenRatio => FrozenMs / DenseMs;

        /// <summary>A run's mean iteration: frozen, plus the update's cost in the share of iterations that update.</summary>
        public double RunMeanMs => FrozenMs + UpdateShare * (UpdatingMs - FrozenMs);
        public double RunMeanRatio => RunMeanMs / DenseMs;
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
        public void OnCheckpointDue(ICheckpointSource source) { }
    }

    /// <summary>The paper's per-layer table and the compression, as both bench commands print them.</summary>
    internal static void PrintLayers(SurgeryOutcome outcome)
    {
        Console.WriteLine($"{"layer",-8} {"params",10} {"kept",8} {"remaining",10} {"pruned",9} {"spliced",9}");
        foreach (var l in outcome.Layers)
        {
            Console.WriteLine($"{l.Layer,-8} {l.Total,10} {l.Kept,8} {l.RemainingPercent,9:F2}% {l.PrunedTotal,9} {l.SplicedTotal,9}");
        }
        Console.WriteLine($"{"total",-8} {outcome.Total,10} {outcome.Kept,8} {100.0 * outcome.Kept / outcome.Total,9:F2}%");
        Console.WriteLine($"compression        {outcome.Compression:F1}x");
    }

    private static void Print(string architecture, SurgerySettings settings, SurgeryOutcome outcome, TimeSpan wall,
        IterationCostFigures? cost)
    {
        Console.WriteLine();
        Console.WriteLine($"== {architecture}, method {settings.Method.Name()} ==");
        PrintLayers(outcome);
        Console.WriteLine($"test error         {100 * (1 - outcome.Before!.Top1):F2}% -> {100 * (1 - outcome.After!.Top1):F2}%");
        Console.WriteLine($"iterations         {outcome.Iterations}");
        Console.WriteLine($"wall time          {wall.TotalSeconds:F0} s");
        if (cost is not null) PrintCost(cost);
        Console.WriteLine($"settings           {JsonSerializer.Serialize(settings)}");
    }

    private static void PrintCost(IterationCostFigures cost) =>
        Console.WriteLine($"iteration cost     dense {cost.DenseMs:F2} ms; surgery with every mask updating every " +
            $"iteration {cost.UpdatingMs:F2} ms ({cost.UpdatingRatio:F2}x), with masks frozen {cost.FrozenMs:F2} ms " +
            $"({cost.FrozenRatio:F2}x); masks update in {100 * cost.UpdateShare:F1}% of this run's layer-iterations, " +
            $"so its mean is {cost.RunMeanMs:F2} ms ({cost.RunMeanRatio:F2}x)");

    public static TensorDataset Scaled(TensorDataset raw)
    {
        using (raw)
        {
            return new TensorDataset(raw.Inputs.div(255f), raw.Labels.clone(), raw.ClassCount);
        }
    }

    public sealed class ConsoleObserver : ISurgeryObserver
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

        public void OnCheckpointDue(ICheckpointSource source) { }

        public void OnEvent(SurgeryEvent surgeryEvent) =>
            Console.WriteLine($"  [{surgeryEvent.Kind.ToString().ToLowerInvariant()} at {surgeryEvent.Iteration}] {surgeryEvent.Message}");
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
