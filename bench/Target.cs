using System.Diagnostics;
using System.Text.Json;
using SurgeryService.Domain.Datasets;
using SurgeryService.Domain.Models;
using SurgeryService.Domain.Onnx;
using SurgeryService.Domain.Surgery;
using Microsoft.ML.OnnxRuntime;
using SurgeryService.Infrastructure.Deployment;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace SurgeryService.Bench;

/// <summary>
/// Budget mode on MNIST: the most compressed LeNet within a validation-top-1 budget, found by the search alone (no
/// per-layer settings), over several seeds, with the paper's table and the validation and test figures of each.
/// The dense reference is trained on the training images outside the validation split, so that the budget compares
/// like with like (a model that trained on the held-out images would score them optimistically).
/// A model file (<c>target path/to/model.onnx</c>, as bench/models/make_mnist_models.py writes them) is sent the way a new
/// user sends it: no settings but the budget, its inputs scaled as its sidecar JSON's <c>preprocessing</c> says, and the
/// service's own split of the training images (the search decides whether the model has seen its validation samples).
/// </summary>
internal static class Target
{
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web) { WriteIndented = true };

    public static int Run(string architecture, string[] args)
    {
        var options = Options.Parse(args);
        var method = Reproduce.Method(options);
        var maxDrop = double.Parse(options.Get("max-drop", "0.1"), System.Globalization.CultureInfo.InvariantCulture);
        var seeds = int.Parse(options.Get("seeds", "3"));
        var firstSeed = int.Parse(options.Get("first-seed", "1"));
        var onnxFile = architecture.EndsWith(".onnx", StringComparison.OrdinalIgnoreCase) ? architecture : null;
        var recipe = onnxFile is null ? Reproduce.Recipe(architecture, method) : new SurgerySettings { Method = method };
        var maxIterations = int.Parse(options.Get("max-iterations", recipe.Iterations.ToString()));
        var denseIterations = onnxFile is null ? int.Parse(options.Get("dense-iterations", Reproduce.DenseIterations(architecture).ToString())) : 0;
        var optimizer = options.Has("optimizer")
            ? Enum.Parse<OptimizerChoice>(options.Get("optimizer", "sgd"), ignoreCase: true)
            : recipe.Optimizer;
        var mnistDir = options.Get("mnist",
            Environment.GetEnvironmentVariable("SURGERY_MNIST_DIR") ?? Path.Combine(".data", "datasets", "mnist"));
        if (options.Has("threads")) set_num_threads(int.Parse(options.Get("threads", "")));
        Console.WriteLine($"torch threads: {get_num_threads()}, cores: {Environment.ProcessorCount}");

        var (rawTrain, rawTest) = Mnist.Load(mnistDir);
        var preprocess = onnxFile is null ? Reproduce.Scaled : Preprocessing(onnxFile);
        using var all = preprocess(rawTrain);
        using var test = preprocess(rawTest);
        double? maxMinutes = options.Has("max-minutes")
            ? double.Parse(options.Get("max-minutes", ""), System.Globalization.CultureInfo.InvariantCulture)
            : null;
        var target = new SurgeryTarget { MaxAccuracyDrop = maxDrop, MaxIterations = maxIterations, MaxMinutes = maxMinutes };
        var (train, validation) = all.Split(target.ValidationCount(all.Count), SurgeryTarget.ValidationSplitSeed);
        using var _train = train;
        using var _validation = validation;
        Console.WriteLine($"training on {train.Count} images, validating on {validation.Count} held out, testing on {test.Count}");

        var runs = new List<object>();
        var rows = new List<(int Seed, SurgeryOutcome Outcome, double Wall)>();
        var ortRows = new List<(int Seed, double Before, double After, long Samples)>();
        var fixedWalls = new List<double>();
        double? denseError = null;
        LoadedModel Load() => onnxFile is not null
            ? ModelFormats.Load(File.ReadAllBytes(onnxFile), ModelFormat.Onnx, null)
            : Dense() is var module ? new LoadedModel(module, PrunableLayers.Discover(module), []) : null!;
        Module<Tensor, Tensor> Dense() => options.Has("dense-on-all")
            ? Reproduce.DenseReference(architecture, denseIterations, all, test, "", out _)
            : Reproduce.DenseReference(architecture, denseIterations, train, test, "-holdout", out _);
        for (var seed = firstSeed; seed < firstSeed + seeds; seed++)
        {
            // --dense-on-all: a reference trained on every training image, the validation ones included, as a user's
            // model usually is (the search then validates on half of the test split; see BudgetSearch.Memorised).
            using var loaded = Load();
            var model = loaded.Module;
            // The recipe's training schedule without its per-layer thresholds: the search chooses those.
            var settings = onnxFile is not null
                ? new SurgerySettings
                {
                    Method = method,
                    Optimizer = optimizer,
                    Target = target,
                    Iterations = maxIterations,
                    EvalInterval = Math.Max(100, maxIterations / 100),
                    Seed = seed,
                }
                : recipe with
            {
                Optimizer = optimizer,
                CRate = null,
                Layers = [],
                Target = target,
                Iterations = maxIterations,
                EvalInterval = Math.Max(100, maxIterations / 100),
                Seed = seed,
                BiasLrMultiplier = double.Parse(options.Get("bias-lr-mult", "1"), System.Globalization.CultureInfo.InvariantCulture),
            };
            var clock = Stopwatch.StartNew();
            using var trainer = new SurgeryTrainer(model, loaded.Layers, settings);
            var outcome = new BudgetSearch(trainer, settings, target).Run(train, validation, test, new Reproduce.ConsoleObserver());
            clock.Stop();
            var search = outcome.Search!;
            denseError ??= 1 - search.TestTop1Before!.Value;
            // A model file is scored as a user would score the download: in ONNX Runtime, on the test samples that never
            // steered the search (the other half of the test split when the search validated on one half).
            (double Before, double After, long Samples)? ort = null;
            if (onnxFile is not null)
            {
                var delivered = ModelFormats.WriteResults(loaded, settings, outcome).First(r => r.Format == ResultFormat.Onnx).Content;
                var (rest, half) = search.ValidatesOnTest ? test.Split((int)(test.Count / 2), SurgeryTarget.ValidationSplitSeed) : (null, null);
                using (rest)
                using (half)
                {
                    var scored = rest ?? test;
                    ort = (OrtTop1(File.ReadAllBytes(onnxFile), scored, loaded.InputShape), OrtTop1(delivered, scored, loaded.InputShape), scored.Count);
                }
                ortRows.Add((seed, ort.Value.Before, ort.Value.After, ort.Value.Samples));
                Console.WriteLine($"ONNX Runtime, seed {seed}: test top-1 {100 * ort.Value.Before:F2}% -> {100 * ort.Value.After:F2}% " +
                    $"({100 * (ort.Value.After - ort.Value.Before):+0.00;-0.00} points) on {ort.Value.Samples} test images " +
                    $"({(search.ValidatesOnTest ? "the half that never validated" : "the whole test split")})");
            }
            rows.Add((seed, outcome, clock.Elapsed.TotalSeconds));
            Print(Path.GetFileNameWithoutExtension(architecture), method, seed, outcome, clock.Elapsed);
            var fixedWall = options.Has("compare-fixed") ? FixedRunSeconds(architecture, method, settings, Dense, train, test) : (double?)null;
            if (fixedWall is { } f) fixedWalls.Add(f);
            runs.Add(new
            {
                seed,
                compression = outcome.Compression,
                parametersBefore = outcome.Total,
                parametersAfter = outcome.Kept,
                validationErrorBefore = 1 - search.ValidationTop1Before,
                validationErrorAfter = 1 - search.ValidationTop1After,
                testErrorBefore = 1 - search.TestTop1Before,
                testErrorAfter = 1 - search.TestTop1After,
                budgetMet = search.BudgetMet,
                validatesOnTest = search.ValidatesOnTest,
                ortTestTop1Before = ort?.Before,
                ortTestTop1After = ort?.After,
                ortTestSamples = ort?.Samples,
                wallSeconds = clock.Elapsed.TotalSeconds,
                fixedWallSeconds = fixedWall,
                layers = outcome.Layers,
                stages = search.Stages,
            });
        }

        var meanCompression = rows.Average(r => r.Outcome.Compression);
        var meanError = rows.Average(r => 1 - r.Outcome.Search!.TestTop1After!.Value);
        Console.WriteLine();
        Console.WriteLine($"== {architecture} budget mode ({method.ToString().ToLowerInvariant()}), max drop {maxDrop} points, {maxIterations} iterations, seeds {firstSeed}-{firstSeed + seeds - 1} ==");
        Console.WriteLine($"{"seed",4} {"compression",11} {"params",16} {"val error",18} {"test error",18} {"budget",7} {"wall",6}");
        foreach (var (seed, o, wall) in rows)
        {
            var s = o.Search!;
            Console.WriteLine($"{seed,4} {o.Compression,10:F1}x {o.Total,7} -> {o.Kept,6} {100 * (1 - s.ValidationTop1Before),6:F2}% -> {100 * (1 - s.ValidationTop1After!.Value),6:F2}% " +
                $"{100 * (1 - s.TestTop1Before!.Value),6:F2}% -> {100 * (1 - s.TestTop1After!.Value),6:F2}% {(s.BudgetMet == true ? "met" : "missed"),7} {wall,5:F0}s");
        }
        Console.WriteLine($"mean compression {meanCompression:F1}x, mean test error {100 * meanError:F2}% (dense reference {100 * denseError:F2}%, " +
            $"target <= {100 * denseError + maxDrop:F2}%)");
        foreach (var (seed, before, after, samples) in ortRows)
        {
            Console.WriteLine($"seed {seed} in ONNX Runtime: test top-1 {100 * before:F2}% -> {100 * after:F2}% ({100 * (after - before):+0.00;-0.00} points) on {samples} images");
        }
        if (fixedWalls.Count > 0)
        {
            Console.WriteLine($"cost: budget jobs {string.Join(", ", rows.Select(r => $"{r.Wall:F0}"))} s against fixed runs " +
                $"{string.Join(", ", fixedWalls.Select(w => $"{w:F0}"))} s of {maxIterations} iterations each: " +
                $"{string.Join(", ", rows.Zip(fixedWalls, (r, w) => $"{r.Wall / w:F2}x"))} (mean {rows.Sum(r => r.Wall) / fixedWalls.Sum():F2}x)");
        }
        if (options.Has("json"))
        {
            File.WriteAllText(options.Get("json", ""), JsonSerializer.Serialize(new
            {
                architecture,
                method = method.ToString().ToLowerInvariant(),
                maxDrop,
                maxIterations,
                denseTestError = denseError,
                meanCompression,
                meanTestError = meanError,
                runs,
            }, Json));
        }
        return 0;
    }

    /// <summary>
    /// --compare-fixed: the wall time of one run of the fixed recipe (the paper's mode, with the recipe's per-layer
    /// cRates) of the same length, seed and evaluation interval, from the same dense reference, right after the budget
    /// job: the issue bounds a budget job's cost by 3x that.
    /// </summary>
    private static double FixedRunSeconds(string architecture, SurgeryMethod method, SurgerySettings budget,
        Func<Module<Tensor, Tensor>> dense, TensorDataset train, TensorDataset test)
    {
        using var model = dense();
        var settings = Reproduce.Recipe(architecture, method) with
        {
            Iterations = budget.Iterations,
            EvalInterval = budget.EvalInterval,
            Seed = budget.Seed,
        };
        var clock = Stopwatch.StartNew();
        using var trainer = new SurgeryTrainer(model, PrunableLayers.Discover(model), settings);
        var outcome = trainer.Run(train, test, new Reproduce.ConsoleObserver());
        clock.Stop();
        Console.WriteLine($"fixed recipe, seed {budget.Seed}, {settings.Iterations} iterations: {outcome.Compression:F1}x at " +
            $"{100 * (1 - outcome.After!.Top1):F2}% test error, {clock.Elapsed.TotalSeconds:F0} s");
        return clock.Elapsed.TotalSeconds;
    }

    /// <summary>Top-1 of an ONNX model in ONNX Runtime on <paramref name="data"/>, its inputs shaped as the model's samples.</summary>
    private static double OrtTop1(byte[] onnx, TensorDataset data, long[] sampleShape)
    {
        using var shaped = new TensorDataset(data.Inputs.reshape([data.Count, .. sampleShape]), data.Labels.alias(), data.ClassCount);
        using var session = new InferenceSession(onnx);
        return DeploymentMeasurement.Top1(session, shaped);
    }

    /// <summary>The input scaling a model file's sidecar JSON names (<c>preprocessing</c>: scale, mean, std; none: raw 0-255).</summary>
    internal static Func<TensorDataset, TensorDataset> Preprocessing(string onnxFile)
    {
        using var info = JsonDocument.Parse(File.ReadAllText(Path.ChangeExtension(onnxFile, ".json")));
        var p = info.RootElement.GetProperty("preprocessing");
        var preprocessing = new InputPreprocessing
        {
            Scale = p.TryGetProperty("scale", out var s) ? s.GetDouble() : 1,
            Mean = p.TryGetProperty("mean", out var m) ? [m[0].GetSingle()] : null,
            Std = p.TryGetProperty("std", out var d) ? [d[0].GetSingle()] : null,
        };
        // As the service does: the model's own sample shape (a sequence model reads [28, 28], not [1, 28, 28]).
        using var file = File.OpenRead(onnxFile);
        var sampleShape = OnnxModel.Inspect(file).InputSampleShape;
        Console.WriteLine($"{Path.GetFileName(onnxFile)}: {info.RootElement.GetProperty("description").GetString()}; inputs " +
            $"(x * {preprocessing.Scale:g4} - {preprocessing.Mean?[0] ?? 0}) / {preprocessing.Std?[0] ?? 1}, shaped [{string.Join(", ", sampleShape)}]");
        return raw =>
        {
            using (raw)
            {
                return preprocessing.Apply(raw, sampleShape);
            }
        };
    }

    private static void Print(string architecture, SurgeryMethod method, int seed, SurgeryOutcome outcome, TimeSpan wall)
    {
        var s = outcome.Search!;
        Console.WriteLine();
        Console.WriteLine($"== {architecture}, budget mode ({method.ToString().ToLowerInvariant()}), seed {seed} ==");
        Reproduce.PrintLayers(outcome);
        Console.WriteLine($"validation error   {100 * (1 - s.ValidationTop1Before):F2}% -> {100 * (1 - s.ValidationTop1After!.Value):F2}% " +
            $"({s.ValidationSamples} {(s.ValidatesOnTest ? "test images: the model had seen the held-out ones" : "held-out images")})");
        Console.WriteLine($"test error         {100 * (1 - s.TestTop1Before!.Value):F2}% -> {100 * (1 - s.TestTop1After!.Value):F2}%");
        Console.WriteLine($"stages             {string.Join("; ", s.Stages.Select(st => $"{st.TargetCompression:F0}x -> {st.Compression:F1}x at {100 * (1 - st.ValidationTop1!.Value):F2}% {(st.Accepted == true ? "ok" : "no")}"))}");
        Console.WriteLine($"learning rate      {s.LearningRate:g3} ({s.Optimizer}; {(s.LearningRateProbe is { } probe ? $"probed: {string.Join(", ", probe.Trials.Select(t => $"{t.LearningRate:g3} {(t.Held ? "held" : "failed")}"))}" : "as set")})");
        Console.WriteLine($"one-shot           {(s.OneShot is { } o ? string.Join("; ", o.Tries.Select(t => $"{t.Compression:F1}x at {100 * (1 - t.ValidationTop1):F2}% {(t.WithinBudget ? "ok" : "no")}")) : "none promised")}");
        Console.WriteLine($"delivered          {s.Delivered}");
        Console.WriteLine($"budget met         {s.BudgetMet}{(s.BudgetProblem is { } p ? $" ({p})" : "")}");
        Console.WriteLine($"wall time          {wall.TotalSeconds:F0} s");
    }
}
