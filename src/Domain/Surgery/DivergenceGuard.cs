namespace SurgeryService.Domain.Surgery;

/// <summary>
/// Watches a run for divergence (docs/algorithm.md#budget-mode: a run whose loss is non-finite or far above its start, or
/// whose accuracy falls to chance, is rolled back rather than delivered): a non-finite training loss at once; a
/// training loss whose mean over <see cref="Window"/> iterations stays above <see cref="LossCeiling"/>; an evaluation
/// at chance accuracy when the starting model was clearly above chance.
/// </summary>
internal sealed class DivergenceGuard(double startLoss, double startTop1, int classes)
{
    /// <summary>Rollbacks (each with a tenth of the learning rate) before the run fails.</summary>
    public const int MaxRollbacks = 3;

    /// <summary>Iterations whose mean loss must stay above the ceiling: single bad batches are normal.</summary>
    public const int Window = 50;

    private readonly Queue<double> _recent = new();
    private double _sum;

    public double StartLoss { get; } = startLoss;
    public double StartTop1 { get; } = startTop1;
    public int Classes { get; } = classes;

    private double Chance => 1.0 / Math.Max(Classes, 1);

    /// <summary>
    /// "Far above its start": two nats above the chance-level loss ln(C) plus the start, or ten times the start. A
    /// pruned network that merely forgets sits near ln(C) and is judged by accuracy instead.
    /// </summary>
    public double LossCeiling => Math.Max(10 * StartLoss, StartLoss + Math.Log(Math.Max(Classes, 2)) + 2);

    public Divergence? OnIteration(int iteration, double loss)
    {
        if (!double.IsFinite(loss)) return new Divergence(iteration, DivergenceKind.NonFiniteLoss, StartLoss, loss, StartTop1, Chance);
        _recent.Enqueue(loss);
        _sum += loss;
        if (_recent.Count > Window) _sum -= _recent.Dequeue();
        return _recent.Count == Window && _sum / Window > LossCeiling
            ? new Divergence(iteration, DivergenceKind.LossExploded, StartLoss, _sum / Window, StartTop1, Chance)
            : null;
    }

    public Divergence? OnEvaluation(EvaluationMetrics evaluation, double keptShare, bool judgeAccuracy)
    {
        if (!double.IsFinite(evaluation.Loss)) return new Divergence(evaluation.Iteration, DivergenceKind.NonFiniteLoss, StartLoss, evaluation.Loss, StartTop1, Chance);
        if (evaluation.Loss > LossCeiling)
        {
            return new Divergence(evaluation.Iteration, DivergenceKind.LossExploded, StartLoss, evaluation.Loss, StartTop1, Chance) { Evaluated = true };
        }
        var clearlyAboveChance = judgeAccuracy && StartTop1 >= 2 * Chance;
        return clearlyAboveChance && evaluation.Top1 <= 1.2 * Chance
            ? new Divergence(evaluation.Iteration, DivergenceKind.AtChance, StartLoss, evaluation.Top1, StartTop1, Chance) { KeptShare = keptShare }
            : null;
    }

    public void Reset()
    {
        _recent.Clear();
        _sum = 0;
    }
}

internal enum DivergenceKind
{
    NonFiniteLoss,
    LossExploded,
    AtChance,
}

/// <summary>What the guard saw; <see cref="Describe"/> turns it into a message that names the cause and the fix.</summary>
internal sealed record Divergence(int Iteration, DivergenceKind Kind, double StartLoss, double Value, double StartTop1, double Chance)
{
    public double KeptShare { get; init; } = 1;

    /// <summary>Seen on an evaluation rather than on the training loss.</summary>
    public bool Evaluated { get; init; }

    public string Describe(double learningRate, float inputMin, float inputMax, bool budgetMode)
    {
        var inputs = $"inputs in [{inputMin:g4}, {inputMax:g4}]";
        var unscaled = Math.Max(Math.Abs(inputMin), Math.Abs(inputMax)) > 20;
        var fix = unscaled
            ? "lower learningRate or set preprocessing.scale (the inputs look unscaled, e.g. 1/255 for pixels)"
            : "lower learningRate";
        return Kind switch
        {
            DivergenceKind.NonFiniteLoss =>
                $"the loss became {Value} at iteration {Iteration} with learningRate {learningRate:g3} on {inputs}: {fix}",
            DivergenceKind.LossExploded =>
                $"the loss rose from {StartLoss:g3} to {Value:g3} ({(Evaluated ? "evaluation" : $"mean of {DivergenceGuard.Window} iterations")}) by iteration {Iteration} " +
                $"with learningRate {learningRate:g3} on {inputs}: {fix}",
            _ =>
                $"top-1 fell to {Value:P2} (chance is {Chance:P2}, the start {StartTop1:P2}) at iteration {Iteration} with " +
                $"{KeptShare:P2} of the prunable weights kept and learningRate {learningRate:g3}: " +
                (budgetMode ? fix : "lower cRate (too much is pruned), name no cRate to let budget mode choose, or " + fix),
        };
    }
}
