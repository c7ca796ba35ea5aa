using SurgeryService.Domain.Deployment;
using SurgeryService.Domain.Jobs;
using SurgeryService.Infrastructure.Jobs;
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
/// A job as <c>GET /api/jobs/{id}</c> answers it. Every field keeps one meaning for the job's whole life: validation and
/// test figures are apart (<see cref="Validation"/>, <see cref="Test"/>), and top-1 figures are fractions in [0, 1].
/// </summary>
public sealed record JobResponse
{
    /// <summary>The job's id (also in the <c>Location</c> of the submit's answer).</summary>
    public required Guid Id { get; init; }

    /// <summary><c>Queued</c>, <c>Running</c>, <c>Succeeded</c>, <c>Failed</c> or <c>Cancelled</c>.</summary>
    public required string State { get; init; }

    /// <summary>
    /// <c>budget</c> (the search picks the thresholds), <c>fixed</c> (the paper's cRates) or <c>sensitivity</c> (curves
    /// only, no model).
    /// </summary>
    public required string Mode { get; init; }

    /// <summary>The model the job compresses; null once that model was deleted after the job finished.</summary>
    public Guid? ModelId { get; init; }

    /// <summary>The dataset the job trains, validates and tests on; null once it was deleted after the job finished.</summary>
    public Guid? DatasetId { get; init; }

    /// <summary><c>dns</c> or <c>magnitude</c>.</summary>
    public required string Method { get; init; }

    /// <summary>The Hangfire queue: <c>cpu</c> or <c>gpu</c>.</summary>
    public required string Queue { get; init; }

    /// <summary>
    /// Queued jobs only: 1 when the job is next on its queue, n when n - 1 queued jobs (of any tenant) were submitted to
    /// the same queue before it. Null once a worker has started it.
    /// </summary>
    public int? QueuePosition { get; init; }

    /// <summary>What the running job does now (null while queued and once finished).</summary>
    public JobPhaseResponse? Phase { get; init; }

    /// <summary>Training iterations done (a sensitivity job: layers measured).</summary>
    public int Iteration { get; init; }

    /// <summary>
    /// Training iterations of the whole job (a sensitivity job: its layers). A budget job whose
    /// <c>target.maxMinutes</c> ended it before <c>maxIterations</c> ends with the iterations it ran.
    /// </summary>
    public int TotalIterations { get; init; }

    /// <summary><see cref="Iteration"/> / <see cref="TotalIterations"/>, in [0, 1]; the steps of <see cref="Phase"/> show progress before the first iteration.</summary>
    public double Progress { get; init; }

    /// <summary>
    /// Seconds until the job should finish at the pace measured so far (iterations, and layers of the sensitivity
    /// analysis; before the first iteration the iterations are estimated from the analysis's evaluations). Null while
    /// nothing has been measured, and once finished.
    /// </summary>
    public double? EtaSeconds { get; init; }

    /// <summary>When the job should finish at the measured pace (UTC); null when <see cref="EtaSeconds"/> is.</summary>
    public DateTimeOffset? EstimatedFinishAt { get; init; }

    /// <summary>
    /// Seconds the job is expected to run, from its first start to its finish (≥ 0), as estimated when it was submitted
    /// and kept unchanged (compare <see cref="DurationSeconds"/>): a budget job's <c>target.maxMinutes</c> × 60 bounds it;
    /// a finished job on the same model and queue gives its whole run's seconds per iteration × this job's iterations,
    /// scaled by the ratio of batch sizes; the smaller of the two. Null when there is neither (the running job's
    /// <see cref="EtaSeconds"/> then comes from the pace it measures). Queue waiting is not included.
    /// </summary>
    public double? ExpectedSeconds { get; init; }

    /// <summary>Where <see cref="ExpectedSeconds"/> comes from, in words: the time budget, the finished job it went by, or why there is no estimate.</summary>
    public string? ExpectedBasis { get; init; }

    /// <summary>Iterations between checkpoints (≥ 1): the most work a lost worker costs.</summary>
    public int CheckpointInterval { get; init; }

    /// <summary>Training loss (cross-entropy) of the latest iteration.</summary>
    public double? Loss { get; init; }

    /// <summary>Weights (and pruned biases) of the prunable layers kept: at the latest iteration while running, the delivered model's once succeeded.</summary>
    public long? Kept { get; init; }

    /// <summary>Weights (and pruned biases) of the prunable layers.</summary>
    public long? Total { get; init; }

    /// <summary>1 - <see cref="Kept"/> / <see cref="Total"/>, in [0, 1].</summary>
    public double? Sparsity { get; init; }

    /// <summary>
    /// Total / kept of the model the job would deliver now (≥ 1): in budget mode the best state within the budget so
    /// far (1 until a stage is accepted), in fixed mode the weights being trained; the delivered model's once succeeded.
    /// Null for a sensitivity job.
    /// </summary>
    public double? Compression { get; init; }

    /// <summary>
    /// Total / kept of the weights at the latest training iteration (≥ 1): in budget mode the running stage's (or the
    /// fine-tune's), which the search may still reject. Null before the first iteration.
    /// </summary>
    public double? StageCompression { get; init; }

    /// <summary>Validation figures (budget and sensitivity jobs; null for fixed-threshold jobs, which validate on nothing).</summary>
    public JobValidationFigures? Validation { get; init; }

    /// <summary>Test figures, on the samples <see cref="JobTestFigures.Split"/> names (null until the job has measured any).</summary>
    public JobTestFigures? Test { get; init; }

    /// <summary>Times a worker started the job (more than one after a lost worker or a retry).</summary>
    public int Attempts { get; init; }

    /// <summary>Iteration of the latest checkpoint.</summary>
    public int CheckpointIteration { get; init; }

    /// <summary>The checkpoint iteration the latest attempt resumed from, when it did.</summary>
    public int? ResumedFromIteration { get; init; }

    /// <summary>A cancel was asked for; a running job stops at its next iteration.</summary>
    public bool CancelRequested { get; init; }

    /// <summary>Why the job failed (or, while it is retried, why its last attempt did), in words a user can act on.</summary>
    public string? Error { get; init; }

    /// <summary>
    /// What to know before trusting the job or its result: the engine's warnings (e.g. a layer nearly wiped out, a
    /// budget finer than the validation split can measure), and that no live worker serves a queued job's queue.
    /// Absent when there are none.
    /// </summary>
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyList<string>? Warnings { get; init; }

    /// <summary>Formats <c>GET /api/jobs/{id}/result</c> serves: <c>onnx</c>, <c>onnx-sparse</c>, <c>torchsharp</c>.</summary>
    public required IReadOnlyList<string> ResultFormats { get; init; }

    /// <summary>The job's settings, defaults filled in; left out of list answers (<c>GET /api/jobs</c>), so a page stays small.</summary>
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
    public SurgerySettings? Settings { get; init; }

    /// <summary>How dataset inputs become model inputs; left out of list answers, as <see cref="Settings"/> is.</summary>
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
    public JobPreprocessing? Preprocessing { get; init; }

    /// <summary>When the job was submitted (UTC); queued jobs are served in this order.</summary>
    public DateTimeOffset CreatedAt { get; init; }

    /// <summary>When a worker first started the job (UTC).</summary>
    public DateTimeOffset? StartedAt { get; init; }

    /// <summary>When the job succeeded, failed or was cancelled (UTC).</summary>
    public DateTimeOffset? FinishedAt { get; init; }

    /// <summary>Seconds from the first start to the finish (or to now while running).</summary>
    public double? DurationSeconds { get; init; }

    /// <summary>Budget mode: the target the search aims for (the defaults when the job named none); null in other modes.</summary>
    public SurgeryTarget? Target { get; init; }

    /// <summary>Budget mode, once finished: whether the delivered model is within the budget and reaches minCompression.</summary>
    public bool? BudgetMet { get; init; }

    /// <summary>Budget mode: why the budget was not met, in words a user can act on.</summary>
    public string? BudgetProblem { get; init; }

    /// <summary>A job as a list shows it: without its settings and preprocessing, which <c>GET /api/jobs/{id}</c> answers.</summary>
    public static JobResponse Summary(SurgeryJob j, JobStanding? standing = null) => From(j, standing) with { Settings = null, Preprocessing = null };

    /// <summary>The job as the Api answers it; <paramref name="standing"/> adds its queue position and warnings.</summary>
    public static JobResponse From(SurgeryJob j, JobStanding? standing = null)
    {
        var now = DateTimeOffset.UtcNow;
        var running = j.State == JobState.Running;
        var delivered = j.Total is > 0 && j.Kept is > 0 ? (double)j.Total.Value / j.Kept.Value : (double?)null;
        return new JobResponse
        {
            Id = j.Id,
            State = j.State.ToString(),
            Mode = j.Kind.Name,
            ModelId = j.ModelId,
            DatasetId = j.DatasetId,
            Method = j.Settings.Method.Name(),
            Queue = j.Queue,
            QueuePosition = j.State == JobState.Queued ? standing?.QueuePosition : null,
            Phase = running && j.Phase is { } phase ? JobPhaseResponse.From(phase, j.PhaseStep, j.PhaseSteps) : null,
            Iteration = j.Iteration,
            TotalIterations = j.TotalIterations,
            Progress = j.TotalIterations == 0 ? 0 : Math.Round((double)j.Iteration / j.TotalIterations, 4),
            EtaSeconds = running && j.EstimatedFinishAt is { } finish ? Math.Max(0, Math.Round((finish - now).TotalSeconds, 1)) : null,
            EstimatedFinishAt = running ? j.EstimatedFinishAt : null,
            ExpectedSeconds = j.ExpectedSeconds,
            ExpectedBasis = j.ExpectedBasis,
            CheckpointInterval = j.CheckpointInterval,
            Loss = j.Loss,
            Kept = j.Kept,
            Total = j.Total,
            Sparsity = j.Total is > 0 && j.Kept is { } kept ? 1 - (double)kept / j.Total.Value : null,
            Compression = j.Kind switch
            {
                SensitivityJob => null,
                BudgetJob when j.State != JobState.Succeeded => j.BestCompression,
                _ => delivered,
            },
            StageCompression = j.Kind is SensitivityJob ? null : j.StageCompression,
            Validation = JobValidationFigures.From(j),
            Test = JobTestFigures.From(j),
            Attempts = j.Attempts,
            CheckpointIteration = j.CheckpointIteration,
            ResumedFromIteration = j.ResumedFromIteration,
            CancelRequested = j.CancelRequested,
            Error = j.Error,
            Warnings = standing?.Warnings is { Count: > 0 } warnings ? warnings : null,
            ResultFormats = ResultFormatsOf(j),
            Settings = j.Settings,
            Preprocessing = j.Preprocessing,
            CreatedAt = j.CreatedAt,
            StartedAt = j.StartedAt,
            FinishedAt = j.FinishedAt,
            DurationSeconds = j.StartedAt is { } start ? ((j.FinishedAt ?? now) - start).TotalSeconds : null,
            Target = (j.Kind as BudgetJob)?.Target,
            BudgetMet = j.Search?.BudgetMet,
            BudgetProblem = j.Search?.BudgetProblem,
        };
    }

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

/// <summary>What a running job does now.</summary>
/// <param name="Name">
/// <c>evaluating</c> (the starting model, or at the end the delivered one), <c>probing</c> (learning rates),
/// <c>sensitivity</c> (per-layer analysis), <c>training</c> (fixed thresholds), <c>stage</c> (a budget-search stage),
/// <c>fineTune</c> (the best state with frozen masks) or <c>exporting</c> (writing the result files).
/// </param>
/// <param name="Step">Steps done (sensitivity: layers measured) or the step running (stage: its number, from 1); 0 when the phase counts none.</param>
/// <param name="Steps">Steps of the phase (sensitivity: the layers; stage: the most stages the iterations left allow); 0 when it counts none.</param>
/// <param name="Description">The phase in words, e.g. <c>sensitivity: 3 of 7 layers measured</c>.</param>
public sealed record JobPhaseResponse(RunPhase Name, int Step, int Steps, string Description)
{
    public static JobPhaseResponse From(RunPhase phase, int step, int steps) => new(phase, step, steps, phase switch
    {
        RunPhase.Sensitivity => $"sensitivity: {step} of {steps} layers measured",
        RunPhase.Stage => $"stage {step} of at most {steps}",
        RunPhase.FineTune => "fine-tune of the best state",
        RunPhase.Probing when steps > 0 => $"probing learning rates: {step} of {steps}",
        RunPhase.Probing => "probing learning rates",
        RunPhase.Training => "training",
        RunPhase.Exporting => "exporting the result files",
        _ => "evaluating",
    });
}

/// <summary>Top-1 on the samples that validate the job (they steer the budget search).</summary>
/// <param name="Split">
/// <c>trainingHoldout</c> (a seeded share of the training samples, never trained on), <c>dataset</c> (the dataset's own
/// validation split) or <c>testHalf</c> (a seeded half of the test split: the model had been trained on the held-out
/// training samples); null until the run has decided.
/// </param>
/// <param name="Samples">Samples the validation figures are measured on.</param>
/// <param name="Top1Before">The starting model's validation top-1, in [0, 1].</param>
/// <param name="Top1">The latest validation evaluation's top-1 (the state being trained), in [0, 1].</param>
/// <param name="Top1After">The delivered model's validation top-1, in [0, 1] (budget jobs, once succeeded).</param>
public sealed record JobValidationFigures(ValidationSplit? Split, int? Samples, double? Top1Before, double? Top1, double? Top1After)
{
    public static JobValidationFigures? From(SurgeryJob j) => j.Kind is FixedJob
        ? null
        : new JobValidationFigures(j.ValidationSplit, j.ValidationSamples, j.ValidationTop1Before, j.ValidationTop1, j.Search?.ValidationTop1After);
}

/// <summary>Top-1 on test samples that never steered the job.</summary>
/// <param name="Split">
/// <c>whole</c> (the whole test split, after <c>preprocessing.testLimit</c>) or <c>otherHalf</c> (the half of the test
/// split that did not validate the search, when <see cref="JobValidationFigures.Split"/> is <c>testHalf</c>).
/// </param>
/// <param name="Samples">Samples the test figures are measured on.</param>
/// <param name="Top1Before">The starting model's test top-1, in [0, 1].</param>
/// <param name="Top1">The latest test evaluation's top-1, in [0, 1] (fixed-threshold jobs evaluate on the test split while they train; budget jobs at the end only).</param>
/// <param name="Top5">Top-5 of the same evaluation, in [0, 1] (datasets with more than 5 classes).</param>
/// <param name="Top1After">The delivered model's test top-1, in [0, 1], once succeeded.</param>
public sealed record JobTestFigures(TestSplit? Split, int? Samples, double? Top1Before, double? Top1, double? Top5, double? Top1After)
{
    public static JobTestFigures? From(SurgeryJob j) =>
        j.TestSplit is null && j.TestTop1Before is null && j.TestTop1 is null && j.TestTop1After is null
            ? null
            : new JobTestFigures(j.TestSplit, j.TestSamples, j.TestTop1Before, j.TestTop1, j.TestTop5, j.TestTop1After);
}

/// <summary>One training iteration. <see cref="LayerKept"/> follows <see cref="MetricsResponse.Layers"/>.</summary>
public sealed record MetricPoint(int Iteration, double Loss, double LearningRate, long Kept, long Total, double Sparsity, long[] LayerKept);

public sealed record EvaluationPoint(int Iteration, double Loss, double Top1, double? Top5);

/// <summary>A page of the series; <see cref="NextFrom"/> is the <c>from</c> of the next page when <c>limit</c> cut this one short.</summary>
/// <param name="EvaluationSplit">
/// What <see cref="Evaluations"/> are measured on: <c>validation</c> (budget jobs: the job's validation split) or
/// <c>test</c> (fixed-threshold jobs).
/// </param>
public sealed record MetricsResponse(
    Guid JobId, IReadOnlyList<string> Layers, IReadOnlyList<MetricPoint> Points, IReadOnlyList<EvaluationPoint> Evaluations, int? NextFrom,
    string EvaluationSplit);

/// <summary>
/// An SSE <c>progress</c> event (and the final <c>finished</c> event): the fields of the same names in <see cref="JobResponse"/>.
/// A new event is sent whenever one of them changes, so the phase's steps make events during the analysis before the
/// first iteration.
/// </summary>
public sealed record JobProgressEvent(
    Guid JobId, string State, int? QueuePosition, JobPhaseResponse? Phase, int Iteration, int TotalIterations, double Progress,
    DateTimeOffset? EstimatedFinishAt, double? Loss, double? Sparsity, double? Compression, double? StageCompression,
    double? ValidationTop1, double? TestTop1, int CheckpointIteration, string? Error)
{
    /// <summary>
    /// The event of a job read as <see cref="JobQueries.ProgressAsync"/> reads it: each field as
    /// <see cref="JobResponse.From"/> makes it from the whole row (JobQueriesTests hold the two equal).
    /// </summary>
    public static JobProgressEvent From(JobProgress j, int? queuePosition)
    {
        var running = j.State == JobState.Running;
        return new JobProgressEvent(
            j.Id,
            j.State.ToString(),
            j.State == JobState.Queued ? queuePosition : null,
            running && j.Phase is { } phase ? JobPhaseResponse.From(phase, j.PhaseStep, j.PhaseSteps) : null,
            j.Iteration,
            j.TotalIterations,
            j.TotalIterations == 0 ? 0 : Math.Round((double)j.Iteration / j.TotalIterations, 4),
            running ? j.EstimatedFinishAt : null,
            j.Loss,
            j.Total is > 0 && j.Kept is { } kept ? 1 - (double)kept / j.Total.Value : null,
            j.Mode switch
            {
                SensitivityJob.ModeName => null,
                BudgetJob.ModeName when j.State != JobState.Succeeded => j.BestCompression,
                _ => j.Total is > 0 && j.Kept is > 0 ? (double)j.Total.Value / j.Kept.Value : null,
            },
            j.Mode == SensitivityJob.ModeName ? null : j.StageCompression,
            j.Mode == FixedJob.ModeName ? null : j.ValidationTop1,
            j.TestTop1,
            j.CheckpointIteration,
            j.Error);
    }
}

public sealed record ReportLayer(string Layer, string Kind, long Before, long After, double RemainingPercent, long PrunedTotal, long SplicedTotal);

public sealed record ReportTotals(long Before, long After, double RemainingPercent, double Compression);

/// <summary>Test top-1 and error (fractions) before and after, on the test samples <paramref name="Split"/> names (see <see cref="JobTestFigures"/>).</summary>
public sealed record ReportAccuracy(double? Top1Before, double? Top1After, double? ErrorBefore, double? ErrorAfter, TestSplit? Split, int? Samples);

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
/// 1 with <see cref="ValidationTop1Before"/>; top-1 is a fraction, measured on <see cref="ValidationSamples"/> samples
/// (a budget job under a short <c>target.maxMinutes</c> measures its curves on a seeded sample of its validation split).
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
        // A budget job under a short time budget analyses a sample of its validation split: the curves start there.
        job.Id, JobResponse.ModeOf(job.Settings), report.SensitivitySamples ?? report.ValidationSamples,
        report.Sensitivity.FirstOrDefault()?.Points[0].Top1 ?? report.ValidationTop1Before, report.TestTop1Before,
        report.Sensitivity.Select(c => new SensitivityCurveResponse(c.Layer, JobReportBuilder.KindName(c.Kind), c.Total, c.Points)).ToList());
}
