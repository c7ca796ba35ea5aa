using System.Diagnostics;
using System.Globalization;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using SurgeryService.Domain.Datasets;
using SurgeryService.Domain.Deployment;
using static TorchSharp.torch;

namespace SurgeryService.Infrastructure.Deployment;

/// <summary>A model to measure: its name (original, pruned-fp32, pruned-int8), its dense file and, where one exists, its sparse file.</summary>
public sealed record DeploymentCandidate(string Name, string Storage, byte[] Dense, byte[]? Sparse = null);

/// <summary>Measures models in ONNX Runtime for a <see cref="DeploymentReport"/>.</summary>
public static class DeploymentMeasurement
{
    public static DeploymentReport Measure(IReadOnlyList<DeploymentCandidate> models, TensorDataset test, LatencySettings settings,
        Action<string>? log = null)
    {
        var reports = new List<DeploymentModelReport>();
        // ONNX Runtime's one-time start-up (environment, kernel registries) must not land in the first model's load memory.
        if (models.Count > 0)
        {
            using var warmup = new InferenceSession(models[0].Dense);
        }
        foreach (var model in models)
        {
            var report = MeasureOne(model, test, settings);
            log?.Invoke(report.LogLine());
            reports.Add(report);
        }
        return new DeploymentReport("onnxruntime " + OrtEnv.Instance().GetVersionString(), "CPU", settings.IntraOpThreads,
            "all", settings.WarmupRuns, settings.Runs, reports);
    }

    public static DeploymentModelReport MeasureOne(DeploymentCandidate model, TensorDataset test, LatencySettings settings)
    {
        using var options = new SessionOptions
        {
            IntraOpNumThreads = settings.IntraOpThreads,
            InterOpNumThreads = 1,
            GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL,
        };
        GC.Collect();
        GC.WaitForPendingFinalizers();
        var peakReset = ResetPeak();
        var before = Rss();
        var session = new InferenceSession(model.Dense, options);
        var after = Rss();
        long? peak = peakReset && Peak() is { } hwm ? hwm - before : null;
        using (session)
        {
            var memory = new LoadMemory(after - before, peak,
                peak is null ? "process RSS after session creation minus before" : "process RSS and peak RSS (VmHWM) during session creation, minus RSS before");
            var top1 = Top1(session, test);
            var latency = settings.Batches.Select(b => Latency(session, test, b, settings)).ToList();
            return new DeploymentModelReport(model.Name, model.Storage, top1, (int)test.Count, model.Dense.LongLength,
                model.Sparse?.LongLength, latency, memory);
        }
    }

    /// <summary>Top-1 accuracy of <paramref name="session"/> on <paramref name="test"/> (preprocessed inputs, int64 labels).</summary>
    public static double Top1(InferenceSession session, TensorDataset test)
    {
        const int batch = 1000;
        var inputName = InputName(session);
        var outputName = session.OutputMetadata.Keys.First();
        long correct = 0;
        for (long start = 0; start < test.Count; start += batch)
        {
            var length = Math.Min(batch, test.Count - start);
            using var value = Input(session, inputName, test, start, length);
            long[] labels;
            using (var scope = NewDisposeScope())
            {
                labels = test.Labels.narrow(0, start, length).data<long>().ToArray();
            }
            using var runOptions = new RunOptions();
            using var outputs = session.Run(runOptions, [inputName], [value], [outputName]);
            var scores = outputs[0].GetTensorDataAsSpan<float>();
            var classes = (int)outputs[0].GetTensorTypeAndShape().Shape[1];
            for (var i = 0; i < length; i++)
            {
                var row = scores.Slice((int)i * classes, classes);
                var best = 0;
                for (var k = 1; k < classes; k++) if (row[k] > row[best]) best = k;
                if (best == labels[i]) correct++;
            }
        }
        return (double)correct / test.Count;
    }

    private static LatencyFigures Latency(InferenceSession session, TensorDataset test, int batch, LatencySettings settings)
    {
        var inputName = InputName(session);
        var outputName = session.OutputMetadata.Keys.First();
        var size = Math.Min(batch, test.Count);
        using var value = Input(session, inputName, test, 0, size);
        using var runOptions = new RunOptions();
        var times = new double[settings.Runs];
        for (var i = 0; i < settings.WarmupRuns + settings.Runs; i++)
        {
            var start = Stopwatch.GetTimestamp();
            using var outputs = session.Run(runOptions, [inputName], [value], [outputName]);
            if (i >= settings.WarmupRuns) times[i - settings.WarmupRuns] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
        }
        Array.Sort(times);
        return new LatencyFigures((int)size, Percentile(times, 0.5), Percentile(times, 0.9));
    }

    private static double Percentile(double[] sorted, double p)
    {
        var rank = p * (sorted.Length - 1);
        var low = (int)Math.Floor(rank);
        var high = Math.Min(low + 1, sorted.Length - 1);
        return sorted[low] + (rank - low) * (sorted[high] - sorted[low]);
    }

    private static string InputName(InferenceSession session) =>
        session.InputMetadata.Keys.First(k => !session.OverridableInitializerMetadata.ContainsKey(k));

    /// <summary>
    /// Samples <paramref name="start"/> .. + <paramref name="length"/> as the session's input: floats, or token ids for a
    /// model whose input is INT64 or INT32 (the data set holds them as floats).
    /// </summary>
    internal static OrtValue Input(InferenceSession session, string inputName, TensorDataset samples, long start, long length)
    {
        using var scope = NewDisposeScope();
        var x = samples.Inputs.narrow(0, start, length);
        return session.InputMetadata[inputName].ElementDataType switch
        {
            TensorElementType.Int64 => OrtValue.CreateTensorValueFromMemory(x.to_type(ScalarType.Int64).contiguous().data<long>().ToArray(), x.shape),
            TensorElementType.Int32 => OrtValue.CreateTensorValueFromMemory(x.to_type(ScalarType.Int32).contiguous().data<int>().ToArray(), x.shape),
            _ => OrtValue.CreateTensorValueFromMemory(x.to_type(ScalarType.Float32).contiguous().data<float>().ToArray(), x.shape),
        };
    }

    private static long Rss() => ProcStatus("VmRSS:") ?? Process.GetCurrentProcess().WorkingSet64;

    private static long? Peak() => ProcStatus("VmHWM:");

    /// <summary>Resets the kernel's peak-RSS mark to the current RSS (Linux 4.0+: writing 5 to /proc/self/clear_refs).</summary>
    private static bool ResetPeak()
    {
        try
        {
            File.WriteAllText("/proc/self/clear_refs", "5");
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException)
        {
            return false;
        }
    }

    private static long? ProcStatus(string key)
    {
        try
        {
            var line = File.ReadLines("/proc/self/status").FirstOrDefault(l => l.StartsWith(key, StringComparison.Ordinal));
            if (line is null) return null;
            var kib = long.Parse(line[key.Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture);
            return kib * 1024;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException)
        {
            return null;
        }
    }
}
