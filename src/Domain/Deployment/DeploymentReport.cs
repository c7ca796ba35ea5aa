namespace SurgeryService.Domain.Deployment;

/// <summary>How the latencies were measured: ONNX Runtime's CPU provider, its thread count, the runs and the batch sizes.</summary>
public sealed record LatencySettings(int IntraOpThreads = 1, int WarmupRuns = 10, int Runs = 100, int[]? BatchSizes = null)
{
    public int[] Batches => BatchSizes ?? [1, 64];
}

/// <summary>Median and 90th percentile of one batch size's run time, in milliseconds.</summary>
public sealed record LatencyFigures(int Batch, double P50Ms, double P90Ms);

/// <summary>
/// Memory at load: the process's resident set before creating the session and after, and on Linux the peak while
/// creating it (VmHWM after resetting it through /proc/self/clear_refs). Process-wide figures: they include ONNX
/// Runtime's copy of the model, its arenas' first allocations and anything else the process allocates meanwhile.
/// </summary>
public sealed record LoadMemory(long RssDeltaBytes, long? PeakRssDeltaBytes, string Measured);

/// <summary>One model's figures, all measured in ONNX Runtime.</summary>
public sealed record DeploymentModelReport(
    string Name, string Storage, double Top1, int TestSamples, long DenseBytes, long? SparseBytes,
    IReadOnlyList<LatencyFigures> Latency, LoadMemory Memory)
{
    public string LogLine()
    {
        var latency = string.Join(", ", Latency.Select(l => FormattableString.Invariant($"batch {l.Batch} p50 {l.P50Ms:F3} ms p90 {l.P90Ms:F3} ms")));
        var sparse = SparseBytes is { } s ? FormattableString.Invariant($", {s} B sparse") : "";
        var peak = Memory.PeakRssDeltaBytes is { } p ? FormattableString.Invariant($" (peak +{p / 1024} KiB)") : "";
        return FormattableString.Invariant(
            $"deployment {Name} ({Storage}): top-1 {100 * Top1:F2}% on {TestSamples} test samples, file {DenseBytes} B dense{sparse}, latency {latency}, load memory +{Memory.RssDeltaBytes / 1024} KiB RSS{peak}");
    }
}

/// <summary>The deployment report: every model measured in one process with the same settings.</summary>
public sealed record DeploymentReport(
    string Runtime, string ExecutionProvider, int IntraOpThreads, string GraphOptimization, int WarmupRuns, int Runs,
    IReadOnlyList<DeploymentModelReport> Models);

/// <summary>
/// Whether the int8 model was delivered: its top-1 and the pruned float model's on the split the budget is checked on,
/// the floor it had to reach, how it was calibrated, and why it was not delivered when it was not.
/// </summary>
public sealed record QuantizationReport(
    string Requested,
    string Delivered,
    string? FallbackReason,
    string CalibrationMethod,
    int CalibrationSamples,
    string BudgetSplit,
    int BudgetSamples,
    double? Fp32Top1,
    double? Int8Top1,
    double? Floor,
    double MaxAccuracyDrop);

/// <summary>A job's deployment outcome: the quantization decision and the figures measured in ONNX Runtime.</summary>
public sealed record JobDeployment(QuantizationReport Quantization, DeploymentReport? Report);
