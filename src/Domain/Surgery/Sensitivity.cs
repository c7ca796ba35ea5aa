using System.Globalization;
using SurgeryService.Domain.Datasets;

namespace SurgeryService.Domain.Surgery;

/// <summary>Validation top-1 with one layer alone pruned by magnitude to <see cref="KeptFraction"/>, without retraining.</summary>
public sealed record SensitivityPoint(double KeptFraction, double Top1);

/// <summary>
/// One layer's sensitivity curve, from kept share 1 (the starting model) down the ladder. <paramref name="MinKept"/>: the
/// fewest connections a split of a target may leave the layer (<see cref="MaskedLayer.MinKept"/>; 0 in reports written
/// before it existed).
/// </summary>
public sealed record SensitivityCurve(string Layer, LayerKind Kind, long Total, IReadOnlyList<SensitivityPoint> Points, long MinKept = 0);

/// <summary>A sensitivity job's answer: the starting model on the validation split and the test set, and every layer's curve.</summary>
public sealed record SensitivityReport(
    int ValidationSamples, double ValidationTop1Before, double ValidationLossBefore, double? TestTop1Before,
    IReadOnlyList<SensitivityCurve> Curves);

/// <summary>
/// Per-layer sensitivity analysis (Han et al. 2015, §3.3; the budget search uses it to split a whole-model target
/// across layers): each prunable layer alone is pruned by magnitude to a ladder of kept shares and the model is
/// evaluated as it is, so a layer whose accuracy falls early is one to keep denser.
/// </summary>
public static class Sensitivity
{
    /// <summary>Kept shares tried per layer.</summary>
    public static IReadOnlyList<double> Ladder { get; } = [0.5, 0.3, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002];

    /// <summary>
    /// Curves for every prunable layer of <paramref name="trainer"/>'s model; leaves the model as it found it.
    /// <paramref name="layerDone"/> hears of each curve as it is measured; a cancel is honoured between layers.
    /// </summary>
    public static IReadOnlyList<SensitivityCurve> Analyse(SurgeryTrainer trainer, TensorDataset validation, double startTop1,
        Action<SensitivityCurve>? layerDone = null, CancellationToken cancellationToken = default)
    {
        var curves = new List<SensitivityCurve>();
        var chance = ChanceLevel(validation.ClassCount);
        foreach (var layer in trainer.Layers)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var points = new List<SensitivityPoint> { new(1, startTop1) };
            double? atChance = null;
            foreach (var kept in Ladder)
            {
                // A layer that already brought the model down to about chance keeps it there at smaller shares (the curves
                // are made monotone before use): the rest of its ladder is recorded at that top-1 rather than measured.
                if (atChance is { } floor)
                {
                    points.Add(new SensitivityPoint(kept, floor));
                    continue;
                }
                layer.WriteMagnitudePruned(kept);
                var top1 = trainer.Evaluate(validation).Top1;
                points.Add(new SensitivityPoint(kept, top1));
                if (top1 <= chance) atChance = top1;
            }
            layer.WriteMaskedWeights();
            var curve = new SensitivityCurve(layer.Layer.Name, layer.Layer.Kind, layer.Total, points, layer.MinKept);
            curves.Add(curve);
            layerDone?.Invoke(curve);
        }
        return curves;
    }

    /// <summary>Top-1 at or below which a model counts as guessing: one and a half times the share of one class of <paramref name="classes"/>.</summary>
    public static double ChanceLevel(int classes) => 1.5 / Math.Max(2, classes);

    /// <summary>
    /// A sensitivity-only job: the starting model on <paramref name="validation"/> (held out of the training samples) and
    /// <paramref name="test"/>, then every layer's curve, each reported to <paramref name="observer"/> as an event and to
    /// <paramref name="layerDone"/> as progress (layers measured). Returns null when <paramref name="cancellationToken"/>
    /// stopped it.
    /// </summary>
    public static SensitivityReport? Measure(SurgeryTrainer trainer, TensorDataset validation, TensorDataset test, ISurgeryObserver observer,
        Action<int>? layerDone = null, CancellationToken cancellationToken = default)
    {
        if (validation.Count == 0) throw new SurgeryException("Bad dataset", "the validation split is empty");
        if (trainer.Layers.Count == 0) throw new SurgeryException("Nothing to prune", "the model has no prunable layers", ErrorKind.Unsupported);
        observer.OnPhase(new PhaseUpdate(RunPhase.Evaluating));
        var before = trainer.Evaluate(validation);
        var testBefore = test.Count > 0 ? trainer.Evaluate(test) : null;
        observer.OnEvent(new SurgeryEvent(0, SurgeryEventKind.Sensitivity, Opening(before, testBefore, validation.Count, trainer.Layers.Count)));
        var done = 0;
        observer.OnPhase(new PhaseUpdate(RunPhase.Sensitivity, 0, trainer.Layers.Count));
        try
        {
            var curves = Analyse(trainer, validation, before.Top1, curve =>
            {
                done++;
                observer.OnEvent(new SurgeryEvent(done, SurgeryEventKind.Sensitivity, Describe(curve)));
                observer.OnPhase(new PhaseUpdate(RunPhase.Sensitivity, done, trainer.Layers.Count));
                layerDone?.Invoke(done);
            }, cancellationToken);
            return new SensitivityReport((int)validation.Count, before.Top1, before.Loss, testBefore?.Top1, curves);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            return null;
        }
    }

    /// <summary>One curve in a line of a job's log: the layer, its size and top-1 at each kept share.</summary>
    public static string Describe(SensitivityCurve curve) =>
        $"layer {curve.Layer} ({curve.Total} weights): validation top-1 " +
        string.Join(", ", curve.Points.Select(p => $"{p.Top1:P1} at {p.KeptFraction:P1}"));

    /// <summary>
    /// The log line before an analysis (a sensitivity job's or a budget job's): the starting model, and what the analysis
    /// of <paramref name="layers"/> layers will evaluate.
    /// </summary>
    public static string Opening(EvaluationMetrics validation, EvaluationMetrics? test, long samples, int layers) =>
        $"starting model: validation top-1 {validation.Top1:P2} on {samples} held-out samples" +
        (test is null ? "" : $", test top-1 {test.Top1:P2}") +
        $"; measuring {layers} layers at kept shares {string.Join(", ", Ladder.Select(k => k.ToString("0.###", CultureInfo.InvariantCulture)))} " +
        $"(up to {layers * Ladder.Count} evaluations of {samples} samples, without training; a layer's ladder stops where " +
        "top-1 falls to chance)";

    /// <summary>
    /// Per-layer kept shares for a whole-model <paramref name="compression"/>: every layer is pruned to the same accuracy
    /// cost on its curve (a drop <c>tau</c>, found by bisection so that the kept weights add up to the target), which
    /// keeps sensitive layers denser. Curves are made monotone and interpolated in log(kept share). Past the ladder's end
    /// every layer shrinks by the same factor. No layer keeps fewer than its <see cref="SensitivityCurve.MinKept"/>:
    /// the layers above that floor shrink by one more factor to pay for it, and a target beyond what the floors allow
    /// gets the floors.
    /// </summary>
    public static IReadOnlyList<double> Allocate(IReadOnlyList<SensitivityCurve> curves, double compression)
    {
        var goal = curves.Sum(c => (double)c.Total) / compression;
        var shares = AllocateOnCurves(curves, goal);
        var floors = curves.Select(c => Math.Min(1, (double)c.MinKept / c.Total)).ToList();
        if (shares.Select((s, i) => s >= floors[i]).All(above => above)) return shares;
        double Kept(double factor) => curves.Select((c, i) => c.Total * Math.Max(shares[i] * factor, floors[i])).Sum();
        double lo = 0, hi = 1;
        var reachable = Kept(0) < goal; // otherwise the floors alone exceed the goal: lo stays 0, the floors
        for (var i = 0; i < 60 && reachable; i++)
        {
            var mid = (lo + hi) / 2;
            if (Kept(mid) > goal) hi = mid;
            else lo = mid;
        }
        return shares.Select((s, i) => Math.Max(s * lo, floors[i])).ToList();
    }

    private static IReadOnlyList<double> AllocateOnCurves(IReadOnlyList<SensitivityCurve> curves, double goal)
    {
        var total = curves.Sum(c => (double)c.Total);
        double Kept(double tau) => curves.Sum(c => c.Total * KeptAt(c, tau));
        var most = curves.Max(c => c.Points[0].Top1);
        if (Kept(most) > goal)
        {
            var factor = goal / Kept(most);
            return curves.Select(c => KeptAt(c, most) * factor).ToList();
        }
        if (Kept(0) < goal)
        {
            // Even at no accuracy cost the curves prune past the target: move every layer the same part of the way back
            // towards dense, which lands exactly on it.
            var part = (goal - Kept(0)) / (total - Kept(0));
            return curves.Select(c => KeptAt(c, 0) + part * (1 - KeptAt(c, 0))).ToList();
        }
        double lo = 0, hi = most;
        for (var i = 0; i < 60; i++)
        {
            var mid = (lo + hi) / 2;
            if (Kept(mid) > goal) lo = mid;
            else hi = mid;
        }
        return curves.Select(c => KeptAt(c, hi)).ToList();
    }

    /// <summary>The whole-model compression the curves promise without retraining at an accuracy cost of <paramref name="tau"/>.</summary>
    public static double CompressionAt(IReadOnlyList<SensitivityCurve> curves, double tau) =>
        curves.Sum(c => (double)c.Total) / curves.Sum(c => c.Total * KeptAt(c, tau));

    /// <summary>The smallest kept share whose (monotone) drop is at most <paramref name="tau"/>.</summary>
    private static double KeptAt(SensitivityCurve curve, double tau)
    {
        var start = curve.Points[0].Top1;
        var drop = 0.0;
        var previous = (Kept: 1.0, Drop: 0.0);
        foreach (var point in curve.Points.Skip(1))
        {
            drop = Math.Max(drop, start - point.Top1);
            if (drop > tau)
            {
                var f = (tau - previous.Drop) / (drop - previous.Drop);
                return Math.Exp(Math.Log(previous.Kept) + f * (Math.Log(point.KeptFraction) - Math.Log(previous.Kept)));
            }
            previous = (point.KeptFraction, drop);
        }
        return previous.Kept;
    }
}
