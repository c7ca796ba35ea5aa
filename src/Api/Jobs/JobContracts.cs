using SurgeryService.Domain.Deployment;
using SurgeryService.Domain.Jobs;
using SurgeryService.Domain.Models;
using SurgeryService.Domain.Surgery;

namespace SurgeryService.Api.Jobs;

/// <summary>Body of <c>POST /api/jobs</c>. Every setting is optional and defaults to the paper's value.</summary>
public sealed record SubmitJobRequest
{
    public Guid? ModelId { get; init; }
    public Guid? DatasetId { get; init; }

    /// <summary><c>dns</c> (default) or <c>magnitude</c> (Han et al. 2015).</summary>
    public string? Method { get; init; }

    public SurgerySettings? Settings { get; init; }

    /// <summary>
    /// Budget mode: the most compressed model within <c>maxAccuracyDrop</c> top-1 points on a validation split held out
    /// of the training samples. Jobs whose settings name no cRate run in budget mode with the defaults; a target cannot
    /// be combined with cRates. The job succeeds with the best model found; <c>budgetMet</c> says whether it reached
    /// <c>minCompression</c>.
    /// </summary>
    public SurgeryTarget? Target { get; init; }
    public JobPreprocessing? Preprocessing { get; init; }

    /// <summary>
    /// What to deliver besides the pruned model: <c>{"quantize": "int8"}</c> adds an int8 QDQ model (format
    /// <c>onnx-int8</c>) and a deployment report measured in ONNX Runtime. Needs an ONNX upload.
    /// </summary>
    public JobOutput? Output { get; init; }

    /// <summary><c>cpu</c> (default) or <c>gpu</c>: the Hangfire queue, so GPU workers take GPU jobs.</summary>
    public string? Queue { get; init; }

    /// <summary>Iterations between checkpoints: the most work a lost worker costs. Default from Jobs:DefaultCheckpointInterval.</summary>
    public int? CheckpointInterval { get; init; }
}

/// <summary>
/// Body of <c>POST /api/jobs/sensitivity</c>: a model and a dataset; the answer is per-layer curves (each layer alone pruned
/// by magnitude to a ladder of kept shares, validation top-1 without retraining), at <c>GET /api/jobs/{id}/sensitivity</c>.
/// </summary>
public sealed record SubmitSensitivityRequest
{
    public Guid? ModelId { get; init; }
    public Guid? DatasetId { get; init; }

    /// <summary>
    /// Share of the training samples held out for validation (default 0.1, at most 10,000 samples): seeded, the same
    /// samples a budget-mode job on this dataset validates on.
    /// </summary>
    public double? Validation { get; init; }

    public JobPreprocessing? Preprocessing { get; init; }

    /// <summary><c>cpu</c> (default) or <c>gpu</c>.</summary>
    public string? Queue { get; init; }
}

/// <summary>
/// A job: what was asked, where it stands, what it produced. <c>settings</c> and <c>preprocessing</c> are left out of list
/// answers (<c>GET /api/jobs</c>), so that a page stays small; <c>GET /api/jobs/{id}</c> has them.
/// </summary>
public sealed record JobResponse(
    Guid Id,
    string State,
    Guid? ModelId,
    Guid? DatasetId,
    string Method,
    string Queue,
    int CheckpointInterval,
    int Iteration,
    int TotalIterations,
    double Progress,
    double? Loss,
    long? Kept,
    long? Total,
    double? Sparsity,
    double? Compression,
    double? LastTop1,
    double? LastTop5,
    double? Top1Before,
    double? Top1After,
    int Attempts,
    int CheckpointIteration,
    int? ResumedFromIteration,
    bool CancelRequested,
    string? Error,
    IReadOnlyList<string> ResultFormats,
    [property: System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
    SurgerySettings? Settings,
    [property: System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
    JobPreprocessing? Preprocessing,
    DateTimeOffset CreatedAt,
    DateTimeOffset? StartedAt,
    DateTimeOffset? FinishedAt,
    double? DurationSeconds,
    string Mode,
    SurgeryTarget? Target,
    bool? BudgetMet,
    string? BudgetProblem)
{
    /// <summary>Things the client should know about an accepted job, e.g. that no live worker serves its queue.</summary>
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyList<string>? Warnings { get; init; }

    /// <summary>A job as a list shows it: without its settings and preprocessing, which <c>GET /api/jobs/{id}</c> answers.</summary>
    public static JobResponse Summary(SurgeryJob j) => From(j) with { Settings = null, Preprocessing = null };

    public static JobResponse From(SurgeryJob j) => new(
        j.Id, j.State.ToString(), j.ModelId, j.DatasetId, j.Settings.Method.Name(),
        j.Queue, j.CheckpointInterval, j.Iteration, j.TotalIterations,
        j.TotalIterations == 0 ? 0 : Math.Round((double)j.Iteration / j.TotalIterations, 4),
        j.Loss, j.Kept, j.Total,
        j.Total is > 0 && j.Kept is { } kept ? 1 - (double)kept / j.Total.Value : null,
        j.Total is > 0 && j.Kept is > 0 ? (double)j.Total.Value / j.Kept.Value : null,
        j.LastTop1, j.LastTop5, j.Top1Before, j.Top1After, j.Attempts, j.CheckpointIteration, j.ResumedFromIteration,
        j.CancelRequested, j.Error, ResultFormatsOf(j), j.Settings, j.Preprocessing, j.CreatedAt, j.StartedAt, j.FinishedAt,
        j.StartedAt is { } start ? ((j.FinishedAt ?? DateTimeOffset.UtcNow) - start).TotalSeconds : null,
        j.Kind.Name, (j.Kind as BudgetJob)?.Target, j.Search?.BudgetMet, j.Search?.BudgetProblem);

    /// <summary>
    /// <c>budget</c> (the search picks the thresholds), <c>fixed</c> (the paper's cRates) or <c>sensitivity</c> (curves
    /// only, no model).
    /// </summary>
    public static string ModeOf(SurgerySettings settings) => JobKind.Of(settings).Name;

    public static IReadOnlyList<string> ResultFormatsOf(SurgeryJob j)
    {
        var formats = new List<string>();
        if (j.ResultOnnxArtifactId is not null) formats.Add(ResultFormat.Onnx.Name());
        if (j.ResultOnnxSparseArtifactId is not null) formats.Add(ResultFormat.OnnxSparse.Name());
        if (j.ResultTorchSharpArtifactId is not null) formats.Add(ResultFormat.TorchSharp.Name());
        if (j.ResultOnnxInt8ArtifactId is not null) formats.Add(ResultFormat.OnnxInt8.Name());
        return formats;
    }
}

/// <summary>One training iteration. <see cref="LayerKept"/> follows <see cref="MetricsResponse.Layers"/>.</summary>
public sealed record MetricPoint(int Iteration, double Loss, double LearningRate, long Kept, long Total, double Sparsity, long[] LayerKept);

public sealed record EvaluationPoint(int Iteration, double Loss, double Top1, double? Top5);

/// <summary>A page of the series; <see cref="NextFrom"/> is the <c>from</c> of the next page when <c>limit</c> cut this one short.</summary>
public sealed record MetricsResponse(
    Guid JobId, IReadOnlyList<string> Layers, IReadOnlyList<MetricPoint> Points, IReadOnlyList<EvaluationPoint> Evaluations, int? NextFrom);

/// <summary>An SSE <c>progress</c> event (and the final <c>finished</c> event).</summary>
public sealed record JobProgressEvent(
    Guid JobId, string State, int Iteration, int TotalIterations, double? Loss, double? Sparsity, double? LastTop1,
    int CheckpointIteration, string? Error);

public sealed record ReportLayer(string Layer, string Kind, long Before, long After, double RemainingPercent, long PrunedTotal, long SplicedTotal);

public sealed record ReportTotals(long Before, long After, double RemainingPercent, double Compression);

public sealed record ReportAccuracy(double? Top1Before, double? Top1After, double? ErrorBefore, double? ErrorAfter);

/// <summary>
/// One file of the job: the <c>original</c> upload or a result format, with its actual <see cref="Storage"/>
/// (<c>dense</c>, <c>sparse</c> or <c>int8</c>; an <c>onnx-sparse</c> file that would not be smaller is stored dense).
/// </summary>
public sealed record ReportFile(string Role, string FileName, long Size, string Sha256, string Storage);

public sealed record JobReport(
    Guid JobId,
    string Method,
    int Iterations,
    IReadOnlyList<ReportLayer> Layers,
    ReportTotals Totals,
    ReportAccuracy Accuracy,
    IReadOnlyList<ReportFile> Files,
    int Attempts,
    int? ResumedFromIteration,
    double? DurationSeconds,
    string Mode,
    SearchReport? Budget,
    IReadOnlyList<JobLogEntry> Log,
    JobOutput Output,
    JobDeployment? Deployment);

/// <summary>A warning, rollback or budget-search step of a job (see <c>GET /api/jobs/{id}/log</c>).</summary>
public sealed record JobLogEntry(int Sequence, int Iteration, string Kind, string Message, DateTimeOffset CreatedAt);

/// <summary>One layer's curve: validation top-1 with that layer alone pruned by magnitude to each kept share.</summary>
public sealed record SensitivityCurveResponse(string Layer, string Kind, long Total, IReadOnlyList<SensitivityPoint> Points);

/// <summary>
/// <c>GET /api/jobs/{id}/sensitivity</c>: the curves of a sensitivity or budget-mode job. Every curve starts at kept share
/// 1 with <see cref="ValidationTop1Before"/>; top-1 is a fraction, measured on <see cref="ValidationSamples"/> samples.
/// </summary>
public sealed record SensitivityResponse(
    Guid JobId,
    string Mode,
    int ValidationSamples,
    double ValidationTop1Before,
    double? TestTop1Before,
    IReadOnlyList<SensitivityCurveResponse> Curves)
{
    public static SensitivityResponse From(SurgeryJob job, SearchReport report) => new(
        job.Id, JobResponse.ModeOf(job.Settings), report.ValidationSamples, report.ValidationTop1Before, report.TestTop1Before,
        report.Sensitivity.Select(c => new SensitivityCurveResponse(c.Layer, JobReportBuilder.KindName(c.Kind), c.Total, c.Points)).ToList());
}
