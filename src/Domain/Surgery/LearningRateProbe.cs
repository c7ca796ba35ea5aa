using System.Globalization;
using SurgeryService.Domain.Datasets;

namespace SurgeryService.Domain.Surgery;

/// <summary>One rate the probe tried: how long it trained, its training loss, validation top-1 and verdict.</summary>
public sealed record ProbeTrial(double LearningRate, int Iterations, double FinalLoss, double? ValidationTop1, bool Held, string Verdict);

/// <summary>The learning-rate probe's report: every rate tried (largest first) and the rate chosen.</summary>
public sealed record ProbeReport(
    string Optimizer, int Iterations, double StartLoss, double ValidationTop1Before, double Tolerance,
    IReadOnlyList<ProbeTrial> Trials, double Chosen, bool AnyHeld);

/// <summary>
/// The learning-rate probe (docs/algorithm.md#learning-rate-probe): a short range test from the dense starting model.
/// Rates are tried from the largest down, each from the same starting state and optimizer state, on the run's own first
/// training batches with masks frozen at their start; the first whose training loss stays near the start and whose
/// validation top-1 holds is the run's base rate. A model trained on raw 0-255 pixels tolerates a rate thousands of
/// times smaller than one on inputs scaled to [0, 1], so no fixed default serves both. The trainer is left exactly as it
/// was found (the probe restores a snapshot), iteration count included.
/// </summary>
public static class LearningRateProbe
{
    /// <summary>The most iterations one rate trains for ("a few hundred").</summary>
    public const int MaxIterations = 300;

    /// <summary>Iterations over which the final training loss is averaged, and the window of the early stop.</summary>
    private const int LossWindow = 25;

    /// <summary>The rates tried for <paramref name="optimizer"/>, largest first: half-decades from a rate no MNIST-sized model trains at.</summary>
    public static IReadOnlyList<double> Ladder(OptimizerChoice optimizer)
    {
        var (top, bottom) = optimizer == OptimizerChoice.Adam ? (1e-2, 1e-7) : (1e-1, 1e-7);
        var rates = new List<double>();
        for (var exponent = Math.Log10(top); exponent >= Math.Log10(bottom) - 1e-9; exponent -= 0.5)
        {
            rates.Add(double.Parse(Math.Pow(10, exponent).ToString("g3", CultureInfo.InvariantCulture), CultureInfo.InvariantCulture));
        }
        return rates;
    }

    /// <summary>Iterations per rate for a run of <paramref name="runIterations"/>: a twentieth of it, 20 to <see cref="MaxIterations"/>.</summary>
    public static int IterationsFor(int runIterations) => Math.Clamp(runIterations / 20, 20, MaxIterations);

    /// <summary>
    /// Runs the probe from <paramref name="trainer"/>'s current state, judged on <paramref name="validation"/> against
    /// <paramref name="before"/> (the state's evaluation there). It enters the <see cref="RunPhase.Probing"/> phase, and
    /// events name every rate's verdict and the choice.
    /// </summary>
    public static ProbeReport Run(SurgeryTrainer trainer, TensorDataset train, TensorDataset validation, EvaluationMetrics before,
        int iterations, ISurgeryObserver observer, CancellationToken cancellationToken = default)
    {
        observer.OnPhase(new PhaseUpdate(RunPhase.Probing));
        var start = trainer.Snapshot();
        var optimizer = trainer.Settings.Optimizer;
        // A rate "holds" when the model loses no more than noise: half a point, or two standard errors of top-1 on this split.
        var tolerance = Math.Max(0.005, 2 * BudgetSearch.StandardError(before.Top1, validation.Count));
        // "Near the start": twice the starting loss, or 0.1 nats above it for a model whose loss is almost 0.
        var nearStart = Math.Max(2 * before.Loss, before.Loss + 0.1);
        // A rate whose recent loss passes chance level plus the start has diverged: no need to train it further.
        var diverged = before.Loss + Math.Log(Math.Max(validation.ClassCount, 2));
        observer.OnEvent(new SurgeryEvent(trainer.Iteration, SurgeryEventKind.Probe,
            $"learning-rate probe ({optimizer.ToString().ToLowerInvariant()}): up to {iterations} iterations per rate from the " +
            $"starting model (validation top-1 {before.Top1:P2}, loss {before.Loss:g3}); a rate holds when its training loss " +
            $"ends below {nearStart:g3} and validation top-1 stays within {100 * tolerance:0.##} points"));
        var trials = new List<ProbeTrial>();
        double? chosen = null;
        try
        {
            foreach (var rate in Ladder(optimizer))
            {
                cancellationToken.ThrowIfCancellationRequested();
                trainer.Restore(start);
                var trial = Try(trainer, train, validation, rate, iterations, before, tolerance, nearStart, diverged);
                trials.Add(trial);
                observer.OnEvent(new SurgeryEvent(trainer.Iteration, SurgeryEventKind.Probe,
                    $"probe: learning rate {rate:g3}: {trial.Verdict}"));
                if (trial.Held)
                {
                    chosen = rate;
                    break;
                }
            }
        }
        finally
        {
            trainer.Restore(start);
        }
        var report = new ProbeReport(optimizer.ToString().ToLowerInvariant(), iterations, before.Loss, before.Top1, tolerance, trials,
            chosen ?? trials[^1].LearningRate, chosen is not null);
        observer.OnEvent(new SurgeryEvent(trainer.Iteration, SurgeryEventKind.Probe, chosen is { } c
            ? $"learning rate {c:g3} chosen: the largest of the {trials.Count} tried that held the starting model"
            : $"no rate down to {report.Chosen:g3} held the starting model; training goes on at {report.Chosen:g3}"));
        return report;
    }

    private static ProbeTrial Try(SurgeryTrainer trainer, TensorDataset train, TensorDataset validation, double rate, int iterations,
        EvaluationMetrics before, double tolerance, double nearStart, double diverged)
    {
        var plan = new TrainingPlan(MaskSchedules.Frozen, new ConstantLearningRate(rate), JudgesAccuracy: false);
        var recent = new Queue<double>();
        var sum = 0.0;
        for (var i = 0; i < iterations; i++)
        {
            var loss = trainer.ProbeStep(train, plan);
            if (!double.IsFinite(loss))
            {
                return new ProbeTrial(rate, i + 1, loss, null, false, $"the loss became {loss} at iteration {i + 1}");
            }
            recent.Enqueue(loss);
            sum += loss;
            if (recent.Count > LossWindow) sum -= recent.Dequeue();
            if (recent.Count == LossWindow && sum / LossWindow > diverged)
            {
                return new ProbeTrial(rate, i + 1, sum / LossWindow, null, false,
                    $"diverged: mean training loss {sum / LossWindow:g3} by iteration {i + 1} (start {before.Loss:g3})");
            }
        }
        var finalLoss = sum / Math.Max(recent.Count, 1);
        trainer.WriteMaskedWeights();
        var top1 = trainer.Evaluate(validation).Top1;
        var lossHeld = finalLoss <= nearStart;
        var top1Held = top1 >= before.Top1 - tolerance;
        var verdict = $"training loss {finalLoss:g3} after {iterations} iterations, validation top-1 {top1:P2}: " +
            (lossHeld && top1Held ? "held"
                : !lossHeld ? $"loss not near the start (above {nearStart:g3})"
                : $"top-1 fell by {100 * (before.Top1 - top1):0.##} points");
        return new ProbeTrial(rate, iterations, finalLoss, top1, lossHeld && top1Held, verdict);
    }
}
