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

    /// <summary>Parameters of the pruned layers / nonzero parameters after surgery (dns-spec.md, "Results").</summary>
    public double Compression => Kept == 0 ? double.PositiveInfinity : (double)Total / Kept;
}

/// <summary>Receives the engine's events on the training thread; must return quickly (buffer, don't block).</summary>
public interface ISurgeryObserver
{
    void OnIteration(IterationMetrics metrics);
    void OnEvaluation(EvaluationMetrics metrics);

    /// <summary>Called every checkpoint interval, between iterations; call <c>SaveCheckpoint</c> here.</summary>
    void OnCheckpointDue(SurgeryTrainer trainer);
}
