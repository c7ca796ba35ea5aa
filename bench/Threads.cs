using System.Diagnostics;
using System.Globalization;
using SurgeryService.Domain.Datasets;
using SurgeryService.Domain.Models;
using SurgeryService.Domain.Surgery;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace SurgeryService.Bench;

/// <summary>
/// Training pace per model size for one vs two LibTorch threads and passive vs active OpenMP waiting, alone and beside
/// a second training process (another job, or anything else busy on the machine). Each setting runs in fresh child
/// processes, because OMP_WAIT_POLICY is read once, when LibTorch's OpenMP runtime loads. With <c>--evaluate</c> the
/// children evaluate instead: 6,000 training images per evaluation (a budget job's validation split), as the budget
/// search's sensitivity analysis does before the first iteration.
/// </summary>
internal static class Threads
{
    private static readonly string[] Models = ["tiny-mlp", Architectures.LeNet300100, Architectures.LeNet5];

    public static int Run(string[] args)
    {
        var options = Options.Parse(args);
        var seconds = double.Parse(options.Get("seconds", "6"), CultureInfo.InvariantCulture);
        var models = options.Has("model") ? [options.Get("model", "")] : Models;
        var evaluate = options.Has("evaluate");
        Console.WriteLine($"cores: {Environment.ProcessorCount}; {seconds} s per measurement; " +
            (evaluate ? $"evaluations/s of {EvaluationSamples} samples" : "iterations/s of dense training, batch 64"));
        Console.WriteLine($"{"model",-14} {"threads",7} {"wait",-8} {"alone",8} {"beside a 2nd",13} {"the 2nd",8}");
        foreach (var model in models)
        {
            foreach (var threads in new[] { 1, 2 })
            {
                foreach (var wait in new[] { "PASSIVE", "ACTIVE" })
                {
                    var alone = Child(model, threads, wait, seconds, evaluate).WaitForRate();
                    var first = Child(model, threads, wait, seconds, evaluate);
                    var second = Child(model, threads, wait, seconds, evaluate);
                    var beside = first.WaitForRate();
                    var other = second.WaitForRate();
                    var format = evaluate ? "F2" : "F0";
                    Console.WriteLine($"{model,-14} {threads,7} {wait.ToLowerInvariant(),-8} {alone.ToString(format),8} " +
                        $"{beside.ToString(format),13} {other.ToString(format),8}");
                }
            }
        }
        return 0;
    }

    /// <summary>The child: trains <c>--model</c> densely for <c>--seconds</c> after a warm-up and prints iterations/s.</summary>
    public static int Child(string[] args)
    {
        var options = Options.Parse(args);
        set_num_threads(int.Parse(options.Get("threads", "1"), CultureInfo.InvariantCulture));
        var seconds = double.Parse(options.Get("seconds", "6"), CultureInfo.InvariantCulture);
        var mnistDir = Environment.GetEnvironmentVariable("SURGERY_MNIST_DIR") ?? Path.Combine(".data", "datasets", "mnist");
        var (rawTrain, rawTest) = Mnist.Load(mnistDir);
        rawTest.Dispose();
        using var train = new TensorDataset(rawTrain.Inputs.div(255f), rawTrain.Labels.clone(), 10);
        rawTrain.Dispose();
        manual_seed(1);
        var name = options.Get("model", "tiny-mlp");
        using var model = name == "tiny-mlp" ? TinyMlp() : Architectures.Create(name);
        var settings = new SurgerySettings { Iterations = 10_000_000, EvalInterval = 10_000_000 };
        using var trainer = new SurgeryTrainer(model, [], settings);
        if (options.Has("evaluate"))
        {
            using var validation = new TensorDataset(train.Inputs.narrow(0, 0, EvaluationSamples), train.Labels.narrow(0, 0, EvaluationSamples), 10);
            trainer.Evaluate(validation); // warm-up
            var evaluations = 0;
            var watch = Stopwatch.StartNew();
            while (watch.Elapsed.TotalSeconds < seconds)
            {
                trainer.Evaluate(validation);
                evaluations++;
            }
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"rate {evaluations / watch.Elapsed.TotalSeconds:F3}"));
            return 0;
        }
        using var empty = new TensorDataset(zeros(0, 1), zeros(0, dtype: int64), 10);
        using var cts = new CancellationTokenSource();
        var counter = new Counter();
        cts.CancelAfter(TimeSpan.FromSeconds(1));
        trainer.Run(train, empty, counter, cancellationToken: cts.Token); // warm-up
        using var timed = new CancellationTokenSource(TimeSpan.FromSeconds(seconds));
        counter.Count = 0;
        var clock = Stopwatch.StartNew();
        trainer.Run(train, empty, counter, cancellationToken: timed.Token);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"rate {counter.Count / clock.Elapsed.TotalSeconds:F1}"));
        return 0;
    }

    /// <summary>Samples per evaluation with <c>--evaluate</c>: a budget job's validation split on MNIST.</summary>
    private const int EvaluationSamples = 6000;

    /// <summary>784-8-10: about 6,400 weights, the size at which spinning OpenMP threads cost most.</summary>
    private static Module<Tensor, Tensor> TinyMlp() =>
        Sequential(("flatten", Flatten()), ("fc1", Linear(784, 8)), ("relu", ReLU()), ("fc2", Linear(8, 10)));

    private static ChildProcess Child(string model, int threads, string wait, double seconds, bool evaluate)
    {
        var info = new ProcessStartInfo(Environment.ProcessPath!)
        {
            RedirectStandardOutput = true,
            UseShellExecute = false,
        };
        // Run as `dotnet bench.dll` or as the apphost alike.
        if (Path.GetFileNameWithoutExtension(Environment.ProcessPath!) == "dotnet") info.ArgumentList.Add(typeof(Threads).Assembly.Location);
        foreach (var a in new[] { "threads-child", "--model", model, "--threads", threads.ToString(CultureInfo.InvariantCulture),
                     "--seconds", seconds.ToString(CultureInfo.InvariantCulture) })
        {
            info.ArgumentList.Add(a);
        }
        if (evaluate) info.ArgumentList.Add("--evaluate");
        info.Environment["OMP_WAIT_POLICY"] = wait;
        return new ChildProcess(Process.Start(info)!);
    }

    private sealed class ChildProcess(Process process)
    {
        public double WaitForRate()
        {
            var output = process.StandardOutput.ReadToEnd();
            process.WaitForExit();
            var line = output.Split('\n').LastOrDefault(l => l.StartsWith("rate ", StringComparison.Ordinal))
                ?? throw new InvalidOperationException("the child printed no rate: " + output);
            return double.Parse(line[5..], CultureInfo.InvariantCulture);
        }
    }

    private sealed class Counter : ISurgeryObserver
    {
        public int Count;
        public void OnIteration(IterationMetrics metrics) => Count++;
        public void OnEvaluation(EvaluationMetrics metrics) { }
        public void OnCheckpointDue(ICheckpointSource source) { }
    }
}
