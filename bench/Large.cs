using System.Diagnostics;
using System.Globalization;
using SurgeryService.Domain.Datasets;
using SurgeryService.Domain.Jobs;
using SurgeryService.Domain.Models;
using SurgeryService.Domain.Surgery;
using SurgeryService.Domain.Torch;
using static TorchSharp.torch;

namespace SurgeryService.Bench;

/// <summary>
/// A large CNN through the engine as a worker runs it, in this process (no database): ResNet-18 or VGG11-BN
/// (<c>--model</c>) exported as ONNX by PyTorch (bench/large/cnns.py, Debian's python3-torch), loaded with ModelFormats, trained with DNS on random
/// 3x64x64 images, evaluated and exported as the job runner does. Prints the peak resident memory above the idle
/// process against the weight bytes (the multiple JobMemoryEstimate uses), the memory after ProcessMemory.Release, the
/// time from the last iteration to the exported results, and seconds per iteration against PyTorch's own CPU loop on
/// the same model at the same threads and batch.
/// </summary>
internal static class Large
{
    public static int Run(string[] args)
    {
        var options = Options.Parse(args);
        int Int(string name, int fallback) => int.Parse(options.Get(name, fallback.ToString(CultureInfo.InvariantCulture)), CultureInfo.InvariantCulture);
        var size = Int("size", 64);
        var batch = Int("batch", 64);
        var threads = Int("threads", Environment.ProcessorCount);
        var iterations = Int("iterations", 10);
        var name = options.Get("model", "resnet18");
        var python = options.Get("python", "/usr/bin/python3");
        var dir = Path.GetFullPath(Path.Combine(".data", "bench", "large"));
        Directory.CreateDirectory(dir);
        var onnxPath = Path.Combine(dir, $"{name}-{size}.onnx");

        Console.WriteLine($"{name}, 10 classes, input 3x{size}x{size}, batch {batch}, {threads} threads, {iterations} timed iterations; cores: {Environment.ProcessorCount}");
        var script = Path.Combine(AppContext.BaseDirectory, "large", "cnns.py");
        string Text(int value) => value.ToString(CultureInfo.InvariantCulture);
        var pytorch = Python(python, script, "--model", name, "--out", onnxPath, "--size", Text(size), "--batch", Text(batch), "--threads", Text(threads),
            "--iterations", Text(iterations));

        set_num_threads(threads);
        Console.WriteLine($"convolutions: {ConvolutionCheck.Describe(ConvolutionCheck.Ensure())}");
        var bytes = File.ReadAllBytes(onnxPath);
        var inspection = ModelFormats.Inspect(bytes, architecture: null);
        using var train = Random(256, size, seed: 1);
        using var test = Random(200, size, seed: 2);
        ProcessMemory.Release();
        var idle = ProcessMemory.ResidentBytes()!.Value;
        File.WriteAllText("/proc/self/clear_refs", "5"); // resets VmHWM, the peak, to the current resident set

        var settings = new SurgerySettings { Iterations = iterations + 2, BatchSize = batch, EvalInterval = 1_000_000 };
        var clock = new IterationClock();
        TimeSpan afterLast;
        long parameters, trainingPeak;
        {
            using var loaded = ModelFormats.Load(bytes, ModelFormat.Onnx, null);
            parameters = loaded.Module.parameters().Sum(p => p.numel());
            using var trainer = new SurgeryTrainer(loaded.Module, loaded.Layers, settings);
            var outcome = trainer.Run(train, test, clock);
            // Where the peak is: loading and training (with the final evaluation), then the export on its own.
            trainingPeak = ProcessMemory.PeakResidentBytes()!.Value;
            File.WriteAllText("/proc/self/clear_refs", "5");
            // Into temporary files as they are written, as the Worker does.
            var paths = new List<string>();
            ModelFormats.WriteResults(loaded, settings, outcome, _ =>
            {
                paths.Add(Path.GetTempFileName());
                return File.Create(paths[^1]);
            });
            afterLast = Stopwatch.GetElapsedTime(clock.Last);
            paths.ForEach(File.Delete);
        }
        bytes = [];
        var peak = ProcessMemory.PeakResidentBytes()!.Value;
        var beforeRelease = ProcessMemory.ResidentBytes()!.Value;
        var release = Stopwatch.StartNew();
        ProcessMemory.Release();
        var releaseSeconds = release.Elapsed.TotalSeconds;
        var after = ProcessMemory.ResidentBytes()!.Value;

        var weightBytes = parameters * 4;
        var engine = clock.SecondsPerIteration(skip: 2);
        var estimate = JobMemoryEstimate.Of(inspection.ParameterCount, inspection.ActivationBytesPerSample, batch, 256, 200, 3L * size * size);
        const double MiB = 1 << 20;
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"""
            parameters                  {parameters:N0} ({weightBytes / MiB:F1} MB of float32 weights); PyTorch counts {pytorch.Parameters:N0} (its BatchNorms unfused)
            activations per sample      {inspection.ActivationBytesPerSample / MiB:F2} MB (measured at inspection)
            idle process                {idle / MiB:F0} MB
            peak during the job         {Math.Max(peak, trainingPeak) / MiB:F0} MB: {(Math.Max(peak, trainingPeak) - idle) / MiB:F0} MB above idle = {(double)(Math.Max(peak, trainingPeak) - idle) / weightBytes:F1}x the weight bytes
              loading and training       {(trainingPeak - idle) / MiB:F0} MB above idle = {(double)(trainingPeak - idle) / weightBytes:F1}x; export {(peak - idle) / MiB:F0} MB above idle = {(double)(peak - idle) / weightBytes:F1}x
            estimate (JobMemoryEstimate){estimate.TotalBytes / MiB,8:F0} MB ({estimate.WeightBytes / MiB:F0} weights at {JobMemoryEstimate.WeightMultiple}x, {estimate.ActivationBytes / MiB:F0} activations, {estimate.DatasetBytes / MiB:F0} dataset)
            after the job               {beforeRelease / MiB:F0} MB before release, {after / MiB:F0} MB after ({releaseSeconds:F2} s): {(after - idle) / MiB:F0} MB above idle
            last iteration to results   {afterLast.TotalSeconds:F1} s (final evaluation, results written; no database)
            engine                      {engine:F3} s per iteration (median of {iterations})
            pytorch                     {pytorch.Seconds:F3} s per iteration (mean of {iterations})
            ratio engine / pytorch      {engine / pytorch.Seconds:F2}
            """));
        return 0;
    }

    private static TensorDataset Random(int count, int size, int seed)
    {
        using var generator = new Generator((ulong)seed);
        return new TensorDataset(randn([count, 3, size, size], generator: generator), randint(0, 10, [count], generator: generator), 10);
    }

    /// <summary>
    /// Runs a PyTorch timing script and reads the 'parameters N' and 'pytorch_seconds_per_iteration S' lines it prints.
    /// </summary>
    internal static (long Parameters, double Seconds) Python(string python, string script, params string[] arguments)
    {
        var info = new ProcessStartInfo(python) { RedirectStandardOutput = true, UseShellExecute = false };
        info.ArgumentList.Add(script);
        foreach (var a in arguments) info.ArgumentList.Add(a);
        using var process = Process.Start(info)!;
        var output = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0) throw new InvalidOperationException($"{python} {script} failed ({process.ExitCode}):\n{output}");
        string Value(string key) => output.Split('\n').First(l => l.StartsWith(key + " ", StringComparison.Ordinal))[(key.Length + 1)..].Trim();
        return (long.Parse(Value("parameters"), CultureInfo.InvariantCulture),
            double.Parse(Value("pytorch_seconds_per_iteration"), CultureInfo.InvariantCulture));
    }

    /// <summary>When each iteration ended.</summary>
    internal sealed class IterationClock : ISurgeryObserver
    {
        private readonly List<long> _ends = [];

        public long Last => _ends[^1];

        public void OnIteration(IterationMetrics metrics) => _ends.Add(Stopwatch.GetTimestamp());

        public void OnEvaluation(EvaluationMetrics metrics) { }

        public void OnCheckpointDue(ICheckpointSource source) { }

        public double SecondsPerIteration(int skip)
        {
            var times = _ends.Skip(skip).Zip(_ends.Skip(skip + 1), (a, b) => Stopwatch.GetElapsedTime(a, b).TotalSeconds).Order().ToList();
            return (times[(times.Count - 1) / 2] + times[times.Count / 2]) / 2;
        }
    }
}
