using System.Text.Json.Serialization;

namespace SurgeryService.Domain.Surgery;

/// <summary>One layer in one iteration: how many weights are kept, and how the mask changed in this iteration.</summary>
public sealed record LayerIterationStats(string Layer, long Kept, long Total, long Pruned, long Spliced, bool MaskUpdated);

/// <summary>Emitted after every training iteration.</summary>
public sealed record IterationMetrics(int Iteration, double Loss, double LearningRate, IReadOnlyList<LayerIterationStats> Layers)
{
    public long Kept => Layers.Sum(l => l.Kept);
    public long Total => Layers.Sum(l => l.Total);
}

/// <summary>Emitted every evaluation interval and at the end: test loss and accuracy (fractions in [0, 1]).</summary>
public sealed record EvaluationMetrics(int Iteration, double Loss, double Top1, double? Top5);

/// <summary>A layer after surgery, with the totals of its mask changes over the run.</summary>
public sealed record LayerResult(string Layer, LayerKind Kind, long Total, long Kept, long PrunedTotal, long SplicedTotal)
{
    public double RemainingPercent => Total == 0 ? 100 : 100.0 * Kept / Total;
}

/// <summary>What a finished (or cancelled) run reports.</summary>
public sealed record SurgeryOutcome(
    int Iterations,
    bool Cancelled,
    EvaluationMetrics? Before,
    EvaluationMetrics? After,
    IReadOnlyList<LayerResult> Layers)
{
    public long Total => Layers.Sum(l => l.Total);
    public long Kept => Layers.Sum(l => l.Kept);

    /// <summary>Budget mode: the search's stages, sensitivity curves and verdict; null in fixed-threshold mode.</summary>
    public SearchReport? Search { get; init; }

    /// <summary>Parameters of the pruned layers / nonzero parameters after surgery (docs/algorithm.md#results-to-reproduce).</summary>
    public double Compression => Kept == 0 ? double.PositiveInfinity : (double)Total / Kept;
}

/// <summary>Receives the engine's events on the training thread; must return quickly (buffer, don't block).</summary>
public interface ISurgeryObserver
{
    void OnIteration(IterationMetrics metrics);
    void OnEvaluation(EvaluationMetrics metrics);

    /// <summary>Called every checkpoint interval, between iterations; call <c>SaveCheckpoint</c> here.</summary>
    void OnCheckpointDue(ICheckpointSource source);

    /// <summary>A warning, a rollback or a step of the budget search.</summary>
    void OnEvent(SurgeryEvent surgeryEvent) { }

    /// <summary>The run enters a phase, or moves a step within one (a layer of the sensitivity analysis).</summary>
    void OnPhase(PhaseUpdate phase) { }

    /// <summary>
    /// Budget mode: the compression of the best state within budget so far (1: the starting model), the one delivered
    /// if the run ended now. Called when it changes.
    /// </summary>
    void OnDeliverable(double compression) { }

    /// <summary>Which samples the run validates and tests on, once it knows (and again on a resumed run).</summary>
    void OnSplits(EvaluationSplits splits) { }
}

/// <summary>What a run does now, in the order a budget job goes through them.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<RunPhase>))]
public enum RunPhase
{
    /// <summary>Evaluating the starting model (or, at the end, the delivered one).</summary>
    Evaluating,

    /// <summary>Trying learning rates before the search.</summary>
    Probing,

    /// <summary>Per-layer sensitivity analysis: step k of n layers measured.</summary>
    Sensitivity,

    /// <summary>Fixed-threshold training (the paper's recipe).</summary>
    Training,

    /// <summary>Budget mode: stage k of at most n that the iterations left allow.</summary>
    Stage,

    /// <summary>Budget mode: the final fine-tune of the best state with frozen masks.</summary>
    FineTune,

    /// <summary>Writing the delivered model's files.</summary>
    Exporting,
}

/// <summary>
/// A phase and, for a phase that counts steps, <see cref="Step"/> done (or running) of <see cref="Steps"/> (0 when it
/// counts none). <see cref="Samples"/>: how many samples each step evaluates, where the phase says (a sensitivity
/// analysis measured on a sample of the validation split); 0 otherwise.
/// </summary>
public sealed record PhaseUpdate(RunPhase Phase, int Step = 0, int Steps = 0, long Samples = 0);

/// <summary>Where the samples that validate a run come from.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<ValidationSplit>))]
public enum ValidationSplit
{
    /// <summary>A seeded share of the training samples, held out and never trained on.</summary>
    TrainingHoldout,

    /// <summary>The dataset's own validation split (<c>x_val</c>/<c>y_val</c>, or validation IDX files).</summary>
    Dataset,

    /// <summary>A seeded half of the test split: the model had been trained on the training samples held out.</summary>
    TestHalf,
}

/// <summary>Which test samples a run's test figures are measured on.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<TestSplit>))]
public enum TestSplit
{
    /// <summary>The whole test split (none of it validated the run).</summary>
    Whole,

    /// <summary>The half of the test split that did not validate the search (<see cref="ValidationSplit.TestHalf"/>).</summary>
    OtherHalf,
}

/// <summary>The run's validation split (null: it validates on none, fixed mode) and test samples, with their counts.</summary>
public sealed record EvaluationSplits(ValidationSplit? Validation, long ValidationSamples, TestSplit Test, long TestSamples);

/// <summary>Budget mode: the iterations of one search stage, whose masks update during its first <see cref="MaskIterations"/>.</summary>
public sealed record SurgeryStage(int Start, int End, int MaskIterations);

public enum SurgeryEventKind
{
    /// <summary>Something the user should know before trusting the result (e.g. a layer nearly wiped out).</summary>
    Warning,

    /// <summary>Training diverged and was rolled back to its last good state.</summary>
    Rollback,

    /// <summary>A step of the budget search (sensitivity, a stage's start or verdict, the fine-tune).</summary>
    Search,

    /// <summary>A step of a sensitivity-only job: the starting model, then one layer's curve.</summary>
    Sensitivity,

    /// <summary>After surgery: the int8 decision and one model's figures measured in ONNX Runtime.</summary>
    Deployment,
    /// <summary>A rate the learning-rate probe tried, and the rate it chose.</summary>
    Probe,
}

/// <summary>A notable moment of a run, kept with the job and shown in its report.</summary>
public sealed record SurgeryEvent(int Iteration, SurgeryEventKind Kind, string Message);

/// <summary>Something whose whole state can be written as a checkpoint: a trainer, or the budget search around one.</summary>
public interface ICheckpointSource
{
    int Iteration { get; }
    void SaveCheckpoint(Stream stream);
}
