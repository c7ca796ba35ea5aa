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
}

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
