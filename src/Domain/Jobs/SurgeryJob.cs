using SurgeryService.Domain.Datasets;
using SurgeryService.Domain.Deployment;
using SurgeryService.Domain.Models;
using SurgeryService.Domain.Surgery;

namespace SurgeryService.Domain.Jobs;

/// <summary>
/// A surgery job as stored in PostgreSQL: what was asked, where it stands, and what it produced. Its lifecycle
/// (<see cref="JobState"/>) changes only through the methods below; the database's concurrency token (xmin) makes a
/// writer that loaded an older row reload and decide again instead of overwriting another process's transition.
/// Progress fields (iteration, loss, per-layer names and totals, checkpoint) are written by the running worker's
/// progress writer directly, and only while the job is <see cref="JobState.Running"/>.
/// </summary>
public sealed class SurgeryJob
{
    public Guid Id { get; set; }
    public required string TenantId { get; set; }

    /// <summary>Null once the model is deleted after the job finished.</summary>
    public Guid? ModelId { get; set; }

    public Guid? DatasetId { get; set; }

    private SurgerySettings _settings = null!;

    public required SurgerySettings Settings
    {
        get => _settings;
        set
        {
            _settings = value;
            Mode = JobKind.Of(value).Name;
        }
    }

    /// <summary>
    /// <see cref="Kind"/>'s name, set with <see cref="Settings"/> and stored in a column of its own, so that reading a
    /// job's progress need not load its settings.
    /// </summary>
    public string Mode { get; private set; } = "";

    public required JobPreprocessing Preprocessing { get; set; }

    /// <summary>What the job delivers besides the pruned model (int8).</summary>
    public JobOutput Output { get; set; } = new();

    /// <summary>Hangfire queue: one of <see cref="JobQueues.ForJobs"/>.</summary>
    public required string Queue { get; set; }

    /// <summary>Iterations between checkpoints (and so the most work a lost worker costs).</summary>
    public int CheckpointInterval { get; set; }

    public JobState State { get; private set; } = JobState.Queued;
    public string? HangfireJobId { get; private set; }

    /// <summary>Set by <see cref="RequestCancel"/>; the running job polls it and stops at the next iteration.</summary>
    public bool CancelRequested { get; private set; }

    /// <summary>How many times a worker started this job (more than one after a lost worker or a retry).</summary>
    public int Attempts { get; private set; }

    public int Iteration { get; set; }
    public int TotalIterations { get; set; }
    public double? Loss { get; set; }
    public long? Kept { get; set; }
    public long? Total { get; set; }

    /// <summary>Where the samples that validate the job come from; null until the run says so, and for fixed-threshold jobs.</summary>
    public ValidationSplit? ValidationSplit { get; set; }

    public int? ValidationSamples { get; set; }

    /// <summary>The starting model's validation top-1 (budget and sensitivity jobs).</summary>
    public double? ValidationTop1Before { get; set; }

    /// <summary>The latest validation evaluation's top-1 (budget jobs: the state being trained).</summary>
    public double? ValidationTop1 { get; set; }

    /// <summary>Which test samples the test figures cover; null until the run says so.</summary>
    public TestSplit? TestSplit { get; set; }

    public int? TestSamples { get; set; }
    public double? TestTop1Before { get; set; }

    /// <summary>The latest test evaluation (fixed-threshold jobs evaluate on the test split while they train).</summary>
    public double? TestTop1 { get; set; }

    public double? TestTop5 { get; set; }

    /// <summary>The delivered model's test top-1.</summary>
    public double? TestTop1After { get; set; }

    /// <summary>What the run does now (null before it starts and once it has finished).</summary>
    public RunPhase? Phase { get; set; }

    /// <summary>Step of <see cref="Phase"/> reached, of <see cref="PhaseSteps"/> (0 when the phase counts none).</summary>
    public int PhaseStep { get; set; }

    public int PhaseSteps { get; set; }

    /// <summary>When the run should end at the pace measured so far; null until a pace is measured.</summary>
    public DateTimeOffset? EstimatedFinishAt { get; set; }

    /// <summary>
    /// Seconds the job was expected to run, from its first start to its finish, when it was submitted; null when nothing
    /// went by (<see cref="ExpectedBasis"/> says why). See <c>Infrastructure.Jobs.ExpectedDuration</c>.
    /// </summary>
    public double? ExpectedSeconds { get; set; }

    /// <summary>Where <see cref="ExpectedSeconds"/> comes from, in words (at most <see cref="ColumnLimits.Message"/> characters).</summary>
    public string? ExpectedBasis { get; set; }

    /// <summary>Budget mode: the compression of the best state within budget so far (1: the starting model).</summary>
    public double? BestCompression { get; set; }

    /// <summary>Total / kept of the weights at the latest training iteration (in budget mode, the running stage's).</summary>
    public double? StageCompression { get; set; }

    /// <summary>Prunable layers in the order of the per-layer arrays of <see cref="JobMetric"/>.</summary>
    public List<string> LayerNames { get; set; } = [];

    /// <summary>Weights (and biases) per prunable layer, in the order of <see cref="LayerNames"/>.</summary>
    public List<long> LayerTotals { get; set; } = [];

    public Guid? CheckpointArtifactId { get; set; }
    public int CheckpointIteration { get; set; }

    /// <summary>Events (see <see cref="JobEvent"/>) emitted before the checkpoint was taken.</summary>
    public int CheckpointEvents { get; set; }

    /// <summary>
    /// Budget mode: the search's stages, sensitivity curves and verdict, once the job has finished. A sensitivity job
    /// (<see cref="SensitivityJob"/>) stores its <see cref="SensitivityReport"/> in the same shape, with only the
    /// sensitivity fields filled, so the stored column and the API's answer are one shape for both.
    /// </summary>
    public SearchReport? Search { get; private set; }

    /// <summary>The checkpoint iteration the latest attempt resumed from, when it did.</summary>
    public int? ResumedFromIteration { get; private set; }

    public Guid? ResultOnnxArtifactId { get; private set; }
    public Guid? ResultOnnxSparseArtifactId { get; private set; }
    public Guid? ResultTorchSharpArtifactId { get; private set; }
    public Guid? ResultOnnxInt8ArtifactId { get; private set; }

    /// <summary>The int8 decision and the ONNX Runtime figures, for jobs that asked for int8.</summary>
    public JobDeployment? Deployment { get; private set; }

    public string? Error { get; private set; }
    public DateTimeOffset CreatedAt { get; set; }
    public DateTimeOffset? StartedAt { get; private set; }
    public DateTimeOffset? FinishedAt { get; private set; }
    public DateTimeOffset UpdatedAt { get; set; }

    public bool IsFinished => State.IsFinished();

    /// <summary>Longest <see cref="Error"/> kept (the column's size).</summary>
    public const int MaxErrorLength = ColumnLimits.Message;

    /// <summary>Records the Hangfire job that runs this job.</summary>
    public void Enqueued(string hangfireJobId, DateTimeOffset now)
    {
        HangfireJobId = hangfireJobId;
        UpdatedAt = now;
    }

    /// <summary>
    /// A worker starts an attempt: the job runs from its last checkpoint (or from the start). Returns the iteration it
    /// resumes from.
    /// </summary>
    public int StartAttempt(DateTimeOffset now)
    {
        RequireNotFinished("start");
        Attempts++;
        State = JobState.Running;
        StartedAt ??= now;
        UpdatedAt = now;
        ResumedFromIteration = CheckpointArtifactId is null ? null : CheckpointIteration;
        Iteration = ResumedFromIteration ?? 0;
        return Iteration;
    }

    /// <summary>
    /// The worker stops cleanly (deploy, scale-in) and another resumes the job later: the attempt does not count.
    /// The job stays <see cref="JobState.Running"/> from the user's view; it is queued again in Hangfire.
    /// </summary>
    public void HandBack(DateTimeOffset now)
    {
        RequireNotFinished("hand back");
        Attempts = Math.Max(0, Attempts - 1);
        UpdatedAt = now;
    }

    /// <summary>An attempt failed in a way another attempt may not: the job stays open and is retried.</summary>
    public void AttemptFailed(string error, DateTimeOffset now)
    {
        RequireNotFinished("record a failed attempt of");
        Error = Truncate($"attempt {Attempts} failed: {error}; retrying from the last checkpoint");
        UpdatedAt = now;
    }

    /// <summary>The run finished: its totals, accuracies and result files become the job's.</summary>
    public void Succeed(SurgeryOutcome outcome, IReadOnlyDictionary<ResultFormat, Guid> results, DateTimeOffset now,
        JobDeployment? deployment = null)
    {
        RequireNotFinished("succeed");
        Deployment = deployment;
        foreach (var (format, artifactId) in results)
        {
            switch (format)
            {
                case ResultFormat.Onnx: ResultOnnxArtifactId = artifactId; break;
                case ResultFormat.OnnxSparse: ResultOnnxSparseArtifactId = artifactId; break;
                case ResultFormat.OnnxInt8: ResultOnnxInt8ArtifactId = artifactId; break;
                default: ResultTorchSharpArtifactId = artifactId; break;
            }
        }
        Iteration = outcome.Iterations;
        // A search its time budget ended before maxIterations ran all the iterations it had: it is done, progress 1.
        if (outcome.Search?.TimeBudget is { Limited: true }) TotalIterations = Math.Min(TotalIterations, outcome.Iterations);
        Kept = outcome.Kept;
        Total = outcome.Total;
        if (outcome.Before is { } before) TestTop1Before ??= before.Top1;
        if (outcome.Search is { } search)
        {
            Search = search;
            ValidationSplit = search.ValidationSplit;
            ValidationSamples = search.ValidationSamples;
            ValidationTop1Before = search.ValidationTop1Before;
            TestSplit = search.TestSplit;
            TestSamples = search.TestSamples;
            TestTop1Before = search.TestTop1Before;
            BestCompression = double.IsFinite(outcome.Compression) ? outcome.Compression : null;
        }
        if (outcome.After is { } after)
        {
            TestTop1After = after.Top1;
            TestTop1 = after.Top1;
            TestTop5 = after.Top5;
        }
        Finish(JobState.Succeeded, null, now);
    }

    /// <summary>
    /// A sensitivity-only job finished: <paramref name="report"/> (its sensitivity fields) is the job's answer; there is no
    /// model output. Progress counts layers, so the job ends at its last layer.
    /// </summary>
    public void SucceedAnalysis(SensitivityReport report, DateTimeOffset now)
    {
        RequireNotFinished("succeed");
        Search = new SearchReport
        {
            ValidationSamples = report.ValidationSamples,
            ValidationTop1Before = report.ValidationTop1Before,
            ValidationLossBefore = report.ValidationLossBefore,
            TestTop1Before = report.TestTop1Before,
            Sensitivity = [.. report.Curves],
        };
        Iteration = TotalIterations = report.Curves.Count;
        ValidationSamples = report.ValidationSamples;
        ValidationTop1Before = report.ValidationTop1Before;
        TestTop1Before = report.TestTop1Before;
        Finish(JobState.Succeeded, null, now);
    }

    /// <summary>What the job does: fixed thresholds, the budget search, or a sensitivity analysis.</summary>
    public JobKind Kind => JobKind.Of(Settings);

    /// <summary>The job cannot succeed (its inputs are unusable, or too many attempts were lost).</summary>
    public void Fail(string error, DateTimeOffset now)
    {
        RequireNotFinished("fail");
        Finish(JobState.Failed, error, now);
    }

    /// <summary>The worker stopped the job because a cancel was requested.</summary>
    public void Cancel(DateTimeOffset now)
    {
        RequireNotFinished("cancel");
        Finish(JobState.Cancelled, null, now);
    }

    /// <summary>
    /// The user asks to stop the job. A queued job is cancelled at once (the caller then removes its Hangfire job:
    /// the result is true); a running one stops at its next iteration, when the worker sees the flag.
    /// </summary>
    public bool RequestCancel(DateTimeOffset now)
    {
        if (IsFinished) throw new SurgeryException("Job finished", $"the job is already {State}", ErrorKind.Conflict);
        CancelRequested = true;
        UpdatedAt = now;
        if (State != JobState.Queued) return false;
        Finish(JobState.Cancelled, null, now);
        return true;
    }

    private void Finish(JobState state, string? error, DateTimeOffset now)
    {
        State = state;
        Phase = null;
        PhaseStep = PhaseSteps = 0;
        EstimatedFinishAt = null;
        Error = error is null ? null : Truncate(error);
        FinishedAt = now;
        UpdatedAt = now;
    }

    private void RequireNotFinished(string action)
    {
        if (IsFinished) throw new InvalidOperationException($"cannot {action} job {Id}: it is already {State}");
    }

    private static string Truncate(string error) => error.Length > MaxErrorLength ? error[..MaxErrorLength] : error;
}

/// <summary>
/// How dataset inputs become model inputs: <c>x' = (x * scale + offset - mean[c]) / std[c]</c>, then the layout, then
/// the model's input shape (see <see cref="InputPreprocessing"/>), on the first <see cref="TrainLimit"/> /
/// <see cref="TestLimit"/> samples.
/// </summary>
public sealed record JobPreprocessing
{
    /// <summary>Multiplier applied first; by default 1/255 for uint8 inputs (pixels to [0, 1]) and 1 otherwise.</summary>
    public double? Scale { get; init; }

    public double Offset { get; init; }

    /// <summary>One value for every channel, or one per channel (dimension 1 of the samples).</summary>
    public IReadOnlyList<double> Mean { get; init; } = [];

    public IReadOnlyList<double> Std { get; init; } = [];

    /// <summary>Channels first (the datasets' layout) or last, as the model expects.</summary>
    public InputLayout Layout { get; init; } = InputLayout.Nchw;

    /// <summary>Use only the first N training samples (quick trials); all when null.</summary>
    public int? TrainLimit { get; init; }

    /// <summary>Use only the first N test samples; all when null.</summary>
    public int? TestLimit { get; init; }

    /// <summary>Range of preprocessing magnitudes: far inside float32's (1e-38 to 3e38), so inputs stay finite.</summary>
    private const double MinMagnitude = 1e-12, MaxMagnitude = 1e12;

    public IReadOnlyDictionary<string, string> ValidationErrors()
    {
        var errors = new Dictionary<string, string>();
        // Every value becomes float32 and multiplies or shifts inputs: keep it where float32 stays finite and nonzero.
        if (Scale is { } scale && !(Math.Abs(scale) is >= MinMagnitude and <= MaxMagnitude))
        {
            errors["preprocessing.scale"] = $"must be a number whose magnitude is between {MinMagnitude} and {MaxMagnitude}";
        }
        if (!(Math.Abs(Offset) <= MaxMagnitude)) errors["preprocessing.offset"] = $"must be a number between -{MaxMagnitude} and {MaxMagnitude}";
        if (Mean.Any(m => !(Math.Abs(m) <= MaxMagnitude))) errors["preprocessing.mean"] = $"must hold numbers between -{MaxMagnitude} and {MaxMagnitude}";
        if (Std.Any(s => s is not (>= MinMagnitude and <= MaxMagnitude)))
        {
            errors["preprocessing.std"] = $"must hold numbers between {MinMagnitude} and {MaxMagnitude}";
        }
        if (Mean.Count > 1 && Std.Count > 1 && Mean.Count != Std.Count) errors["preprocessing.std"] = "must have as many values as mean";
        if (!Enum.IsDefined(Layout)) errors["preprocessing.layout"] = "must be 'nchw' or 'nhwc'";
        if (TrainLimit is <= 0) errors["preprocessing.trainLimit"] = "must be > 0";
        if (TestLimit is <= 0) errors["preprocessing.testLimit"] = "must be > 0";
        return errors;
    }

    /// <summary>The engine-side transformation for samples with <paramref name="channels"/> channels.</summary>
    public InputPreprocessing ToInput(string inputType, long channels)
    {
        IReadOnlyList<float>? PerChannel(IReadOnlyList<double> values) => values.Count switch
        {
            0 => null,
            1 => Enumerable.Repeat((float)values[0], (int)channels).ToList(),
            _ => values.Select(v => (float)v).ToList(),
        };
        return new InputPreprocessing
        {
            Scale = Scale ?? (inputType == "uint8" ? 1.0 / 255 : 1.0),
            Offset = Offset,
            Mean = PerChannel(Mean),
            Std = PerChannel(Std),
            Layout = Layout,
        };
    }
}
