using System.Text.Json;
using SurgeryService.Domain.Datasets;

namespace SurgeryService.Domain.Surgery;

/// <summary>One stage of the budget search: the compression it aimed at, its calibrated layers and its verdict.</summary>
public sealed class SearchStageReport
{
    public int Index { get; set; }
    public double TargetCompression { get; set; }
    public int Start { get; set; }
    public int End { get; set; }
    public List<LayerCalibration> Layers { get; set; } = [];

    /// <summary>Reached at the stage's end (null while it runs).</summary>
    public double? Compression { get; set; }

    public double? ValidationTop1 { get; set; }

    /// <summary>Whether its validation top-1 was within the budget (null while it runs).</summary>
    public bool? Accepted { get; set; }

    /// <summary>The base learning rate the stage trained at, before any rollback's tenth.</summary>
    public double? LearningRate { get; set; }

    /// <summary>Why the stage ended early when its training diverged past every rollback (null otherwise).</summary>
    public string? Diverged { get; set; }
}

/// <summary>
/// The one-shot candidate (docs/algorithm.md#budget-mode): every layer pruned by magnitude to the share the sensitivity
/// analysis allows within the budget, validated as a whole, without any training.
/// </summary>
public sealed class OneShotReport
{
    /// <summary>The compressions tried, from what the analysis promised down, until one was within the budget.</summary>
    public List<OneShotTry> Tries { get; set; } = [];

    /// <summary>Whether one of them was within the budget and became a deliverable candidate.</summary>
    public bool Accepted { get; set; }

    public double? Compression { get; set; }
    public double? ValidationTop1 { get; set; }
}

public sealed record OneShotTry(double TargetCompression, double Compression, double ValidationTop1, bool WithinBudget);

/// <summary>
/// Budget mode with <c>target.maxMinutes</c> (docs/algorithm.md#time-budget): the time budget, the pace measured against
/// it and the plan it allows. Saved in checkpoints, so a resumed attempt counts from the first start and keeps the pace
/// measured before it.
/// </summary>
public sealed class TimeBudgetReport
{
    /// <summary>The budget, in wall-clock minutes (<c>target.maxMinutes</c>).</summary>
    public double MaxMinutes { get; set; }

    /// <summary>When the budget started counting: the job's first start (UTC).</summary>
    public DateTimeOffset StartedAt { get; set; }

    /// <summary>
    /// Seconds measured over <see cref="MeasuredIterations"/>: the probe's rates, and the search's iterations from the
    /// first stage on with everything that recurs between them (evaluations, stage changes, checkpoints, rollbacks).
    /// </summary>
    public double MeasuredSeconds { get; set; }

    /// <summary>Training iterations the pace was measured over (the probe's included).</summary>
    public int MeasuredIterations { get; set; }

    /// <summary>The measured pace, in seconds per training iteration; null until an iteration was timed.</summary>
    public double? SecondsPerIteration => MeasuredIterations > 0 ? MeasuredSeconds / MeasuredIterations : null;

    /// <summary>Seconds kept for the final evaluations and the export: twice what evaluating the starting model took.</summary>
    public double ReserveSeconds { get; set; }

    /// <summary>The iterations the search planned for at its latest decision: maxIterations, or fewer when time is short.</summary>
    public int? PlannedIterations { get; set; }

    /// <summary>Whether the time budget ended the search before maxIterations (set when it delivers).</summary>
    public bool Limited { get; set; }
}

/// <summary>Everything the budget search decided and measured; saved in checkpoints and reported with the job.</summary>
public sealed class SearchReport
{
    public double MaxAccuracyDrop { get; set; }
    public double? MinCompression { get; set; }
    public int MaxIterations { get; set; }
    public int ValidationSamples { get; set; }
    public double ValidationTop1Before { get; set; }

    /// <summary>
    /// Whether the search validates on half of the test split because the starting model had evidently been trained on
    /// the held-out training samples (<see cref="BudgetSearch.Memorised"/>). Test figures then cover the other half only
    /// (<see cref="TestSplit"/>), samples that never steered the search.
    /// </summary>
    public bool ValidatesOnTest { get; set; }

    /// <summary>Where the validation samples come from.</summary>
    public ValidationSplit ValidationSplit { get; set; }

    /// <summary>Which test samples <see cref="TestTop1Before"/> and <see cref="TestTop1After"/> are measured on.</summary>
    public TestSplit TestSplit { get; set; }

    public int TestSamples { get; set; }

    /// <summary>The least validation top-1 within a budget of <paramref name="budget"/> (a fraction).</summary>
    public double Floor(double budget) => ValidationTop1Before - budget;
    public double ValidationLossBefore { get; set; }
    public double? ValidationTop1After { get; set; }
    public double? TestTop1Before { get; set; }
    public double? TestTop1After { get; set; }
    public List<SensitivityCurve> Sensitivity { get; set; } = [];

    /// <summary>
    /// The validation samples the sensitivity analysis evaluated: all of them (<see cref="ValidationSamples"/>), or a
    /// seeded sample when the time budget could not pay for the whole split (null in reports written before sampling).
    /// </summary>
    public int? SensitivitySamples { get; set; }
    public List<SearchStageReport> Stages { get; set; } = [];

    /// <summary>The optimizer that trained every stage (<c>sgd</c> or <c>adam</c>).</summary>
    public string? Optimizer { get; set; }

    /// <summary>The base learning rate of every stage: the settings' <c>learningRate</c>, or the probe's choice.</summary>
    public double? LearningRate { get; set; }

    /// <summary>The learning-rate probe, when the settings named no <c>learningRate</c>.</summary>
    public ProbeReport? LearningRateProbe { get; set; }

    /// <summary>The one-shot candidate, when the analysis promised any compression within the budget.</summary>
    public OneShotReport? OneShot { get; set; }

    /// <summary>The most compression a candidate (the one-shot or a stage) reached within the budget (1: the starting model).</summary>
    public double GoodCompression { get; set; } = 1;

    /// <summary>Validation top-1 of the best candidate so far (the start's until one is accepted).</summary>
    public double? GoodValidationTop1 { get; set; }

    /// <summary>The least compression a stage aimed at or reached and missed the budget with.</summary>
    public double? FailedCompression { get; set; }

    /// <summary>
    /// Stages aim their calibration this many times past their target: DNS splices connections back while it
    /// retrains, so a stage ends less compressed than its calibration (by 3x on a small MLP), and the search learns by
    /// how much from each stage's result.
    /// </summary>
    public double Correction { get; set; } = 1;

    /// <summary>
    /// The stage whose state is delivered (after the fine-tune), or -1 for the starting model or the one-shot candidate
    /// (<see cref="Delivered"/> says which).
    /// </summary>
    public int BestStage { get; set; } = -1;

    /// <summary>What was delivered: <c>starting model</c>, <c>one-shot</c>, <c>stage k</c> or <c>fine-tune of ...</c>.</summary>
    public string? Delivered { get; set; }

    /// <summary>Why the fine-tune ended early, when its training diverged past every rollback.</summary>
    public string? FineTuneDiverged { get; set; }

    public int? FineTuneStart { get; set; }

    /// <summary>The iteration the fine-tune ends at: maxIterations, or earlier when the time budget is short.</summary>
    public int? FineTuneEnd { get; set; }
    public double? FineTuneBestTop1 { get; set; }
    public int? FineTuneBestIteration { get; set; }

    /// <summary>Whether the delivered model is within the accuracy budget and reaches <see cref="MinCompression"/>.</summary>
    public bool? BudgetMet { get; set; }

    /// <summary>Why the budget was not met, in words a user can act on.</summary>
    public string? BudgetProblem { get; set; }

    /// <summary>The time budget and what it allowed, when the target names <c>maxMinutes</c>.</summary>
    public TimeBudgetReport? TimeBudget { get; set; }
}

/// <summary>
/// Budget mode (docs/algorithm.md#budget-mode; the product's extension of the paper): the most compressed model whose
/// validation top-1 stays within <see cref="SurgeryTarget.MaxAccuracyDrop"/> of the starting model's.
/// <list type="number">
/// <item>Evaluate the starting model on the validation split (held out of the training data) and the test set.</item>
/// <item>Sensitivity analysis of every prunable layer (<see cref="Sensitivity"/>).</item>
/// <item>A rising ladder of whole-model compression targets, doubling from what sensitivity promises without
/// retraining; after the first miss, geometric bisection between the best hit and the least miss. Each stage starts from
/// the best state within budget so far, splits its target across layers by sensitivity, calibrates each layer's
/// DNS thresholds to its kept share, and retrains with DNS (masks update during the first half, then fine-tune).</item>
/// <item>A final fine-tune of the best state with its masks frozen; the delivered weights are the best validated state
/// of it (best-of-run), never one outside the budget.</item>
/// </list>
/// Iterations are one series over all stages; checkpoints hold the search's state, so a resumed job goes on mid-stage.
/// With a time budget (<see cref="SurgeryTarget.MaxMinutes"/>) the search plans for the iterations the time left affords
/// at the measured pace: shorter and fewer stages and an earlier fine-tune (docs/algorithm.md#time-budget).
/// </summary>
public sealed class BudgetSearch(SurgeryTrainer trainer, SurgerySettings settings, SurgeryTarget target) : ICheckpointSource
{
    /// <summary>Share of the iterations kept for the final fine-tune.</summary>
    private const double FineTuneShare = 0.2;

    /// <summary>Stages the remaining iterations are planned for.</summary>
    private const int PlannedStages = 6;

    /// <summary>Share of a stage during which DNS may still prune and splice.</summary>
    private const double MaskShare = 0.5;

    /// <summary>Bound of <see cref="SearchReport.Correction"/> either way.</summary>
    private const double MaxCorrection = 8;

    /// <summary>Bisection stops when the best hit and the least miss are this close.</summary>
    private const double Resolution = 1.1;

    /// <summary>Iterations a measured pace rests on before the time budget plans with it.</summary>
    private const int MinPaceIterations = 20;

    private const string CheckpointMagic = "BUDGET-CKPT-1";
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    private SearchReport? _report;
    private byte[]? _best;
    private byte[]? _fineTuneBest;

    /// <summary>The stage (or the fine-tune) being trained, and what the trainer follows during it.</summary>
    private SurgeryStage? _stage;
    private TrainingPlan? _plan;

    public int Iteration => trainer.Iteration;

    /// <summary>Where the validation split given to <see cref="Run"/> comes from (the report says so).</summary>
    public ValidationSplit ValidationSource { get; init; } = ValidationSplit.TrainingHoldout;

    public SearchReport? Report => _report;

    /// <summary>The clock the time budget counts and measures the pace on.</summary>
    public TimeProvider Clock { get; init; } = TimeProvider.System;

    /// <summary>When the job first started, which the time budget counts from; default: when <see cref="Run"/> starts the search.</summary>
    public DateTimeOffset? StartedAt { get; init; }

    private SurgeryTarget Target => target;
    private int MaxIterations => Target.MaxIterations ?? settings.Iterations;

    /// <summary>The fine-tune's share of a plan of <paramref name="iterations"/>.</summary>
    private static int FineTuneIterationsOf(int iterations) => Math.Max(1, (int)(iterations * FineTuneShare));

    /// <summary>A stage's length in a plan of <paramref name="iterations"/>: <see cref="PlannedStages"/> stages, then the fine-tune.</summary>
    private static int StageLengthOf(int iterations) => Math.Max(10, (iterations - FineTuneIterationsOf(iterations)) / PlannedStages);

    /// <summary>The iterations of the latest plan: maxIterations unless the time budget lowered it.</summary>
    private int PlannedIterations => _report?.TimeBudget?.PlannedIterations ?? MaxIterations;

    private int FineTuneEnd(SearchReport report) => report.FineTuneEnd ?? MaxIterations;

    /// <summary>When the attempt started (for the reserve) and the budget's origin, set when the search begins.</summary>
    private long _runStarted;
    private DateTimeOffset _origin;

    /// <summary>The timestamp and iteration from which this attempt's training time is measured; null until it trains.</summary>
    private (long Timestamp, int Iteration)? _paceFrom;

    /// <summary>Whether this attempt has fitted a stretch to a measured pace; later fits wait for an evaluation.</summary>
    private bool _fitted;

    /// <summary>
    /// Runs (or resumes) the search. <paramref name="train"/> must not contain <paramref name="validation"/>'s samples.
    /// Afterwards the module holds the delivered weights: <c>W ⊙ T</c> with exact zeros.
    /// </summary>
    public SurgeryOutcome Run(TensorDataset train, TensorDataset validation, TensorDataset test, ISurgeryObserver observer,
        int checkpointInterval = 0, CancellationToken cancellationToken = default)
    {
        if (train.Count == 0) throw new SurgeryException("Bad dataset", "the training set is empty");
        if (validation.Count == 0) throw new SurgeryException("Bad dataset", "the validation split is empty");
        if (trainer.Layers.Count == 0) throw new SurgeryException("Nothing to prune", "the model has no prunable layers", ErrorKind.Unsupported);
        TensorDataset? rest = null, decide = null;
        if (_report is null)
        {
            _runStarted = Clock.GetTimestamp();
            _origin = StartedAt ?? Clock.GetUtcNow();
        }
        try
        {
            if (_report is null) observer.OnPhase(new PhaseUpdate(RunPhase.Evaluating));
            if (_report is null ? StartsMemorised(validation, test, observer) : _report.ValidatesOnTest)
            {
                (rest, decide) = test.Split((int)(test.Count / 2), SurgeryTarget.ValidationSplitSeed);
                if (_report is null)
                {
                    observer.OnEvent(new SurgeryEvent(0, SurgeryEventKind.Search,
                        $"the search validates on {decide.Count} samples of the test split, which the model has never seen; " +
                        $"test figures are measured on the other {rest.Count} test samples, which never steer the search"));
                }
            }
            observer.OnSplits(decide is null
                ? new EvaluationSplits(ValidationSource, validation.Count, TestSplit.Whole, test.Count)
                : new EvaluationSplits(ValidationSplit.TestHalf, decide.Count, TestSplit.OtherHalf, rest!.Count));
            return Search(train, decide ?? validation, rest ?? test, observer, checkpointInterval, cancellationToken);
        }
        finally
        {
            rest?.Dispose();
            decide?.Dispose();
        }
    }

    private SurgeryOutcome Search(TensorDataset train, TensorDataset validation, TensorDataset test, ISurgeryObserver observer,
        int checkpointInterval, CancellationToken cancellationToken)
    {
        if (_report is null)
        {
            try
            {
                Begin(train, validation, test, observer, cancellationToken);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return Cancelled(); // during the sensitivity analysis: nothing trained yet, nothing to keep
            }
        }
        else
        {
            trainer.StartGuard(train, null);
            observer.OnDeliverable(_report.GoodCompression);
            if (_report.FineTuneStart is not null) observer.OnPhase(new PhaseUpdate(RunPhase.FineTune));
            else if (_report.Stages.LastOrDefault(s => s.Accepted is null) is { } running) observer.OnPhase(StagePhase(_report, running));
        }
        var report = _report!;

        while (report.FineTuneStart is null)
        {
            var stage = report.Stages.LastOrDefault(s => s.Accepted is null);
            if (stage is null)
            {
                var planned = Plan(report, observer);
                var room = trainer.Iteration + StageLengthOf(planned) <= planned - FineTuneIterationsOf(planned);
                var target = room ? NextTarget(report, observer) : null;
                if (target is null)
                {
                    BeginFineTune(report, planned, observer);
                    break;
                }
                stage = BeginStage(report, target.Value, StageLengthOf(planned), observer);
            }
            try
            {
                MeasureFromHere();
                if (trainer.RunUntil(stage.End, _plan!, train, validation, observer, checkpointInterval, this, cancellationToken,
                        report.TimeBudget is null ? null : () => Fit(report, stage, observer)))
                {
                    return Cancelled();
                }
            }
            catch (TrainingDivergedException diverged)
            {
                // A stage that diverges past every rollback is a failed stage, not a failed job: the best state so far stands.
                Diverge(report, stage, diverged, observer);
                continue;
            }
            if (trainer.Iteration < stage.End) continue; // the time budget moved the stage's end: it trains on to it
            Judge(report, stage, validation, observer);
        }

        while (trainer.Iteration < FineTuneEnd(report) && report.FineTuneDiverged is null)
        {
            var next = Math.Min(FineTuneEnd(report), (trainer.Iteration / settings.EvalInterval + 1) * settings.EvalInterval);
            try
            {
                MeasureFromHere();
                if (trainer.RunUntil(next, _plan!, train, validation, observer, checkpointInterval, this, cancellationToken,
                        report.TimeBudget is null ? null : () => Fit(report, null, observer)))
                {
                    return Cancelled();
                }
            }
            catch (TrainingDivergedException diverged)
            {
                report.FineTuneDiverged = diverged.Message;
                observer.OnEvent(new SurgeryEvent(trainer.Iteration, SurgeryEventKind.Search,
                    $"the fine-tune diverged ({diverged.Message}); the best state validated so far is delivered"));
                break;
            }
            // Evaluated at eval intervals and at its end; not where the time budget only moved its end.
            if (trainer.Iteration == next || trainer.Iteration >= FineTuneEnd(report)) KeepIfBest(report, Evaluate(validation, observer));
        }
        return Deliver(report, validation, test, observer);
    }

    private void Begin(TensorDataset train, TensorDataset validation, TensorDataset test, ISurgeryObserver observer,
        CancellationToken cancellationToken)
    {
        // StartsMemorised has measured the starting model already, on the whole test split: its figures stand unless the
        // search now validates on half of that split and tests on the other half.
        var testBefore = _startTest is { } whole && !_validatesOnTest ? whole : test.Count > 0 ? TimedEvaluate(test) : null;
        var before = _startValidation is { } measured && !_validatesOnTest ? measured : TimedEvaluate(validation);
        observer.OnEvaluation(before);
        var evaluationSeconds = Clock.GetElapsedTime(_runStarted).TotalSeconds;
        trainer.StartGuard(train, before);
        ProbeReport? probe = null;
        var probeSeconds = 0.0;
        if (settings.LearningRate is null)
        {
            var probeStarted = Clock.GetTimestamp();
            probe = LearningRateProbe.Run(trainer, train, validation, before, ProbeIterations(), observer, cancellationToken);
            probeSeconds = Clock.GetElapsedTime(probeStarted).TotalSeconds;
            trainer.BaseLearningRate = probe.Chosen;
            trainer.MarkGood(); // a rollback goes back to a state that holds the chosen rate
        }
        // The analysis can take minutes on a large model before the first iteration: the log says what it does and
        // shows each layer as it is measured, and a cancel stops it between layers.
        observer.OnEvent(new SurgeryEvent(0, SurgeryEventKind.Search,
            Sensitivity.Opening(before, testBefore, validation.Count, trainer.Layers.Count)));
        var report = new SearchReport
        {
            MaxAccuracyDrop = Target.MaxAccuracyDrop,
            MinCompression = Target.MinCompression,
            MaxIterations = MaxIterations,
            ValidationSamples = (int)validation.Count,
            ValidationTop1Before = before.Top1,
            ValidationLossBefore = before.Loss,
            TestTop1Before = testBefore?.Top1,
            ValidationSplit = _validatesOnTest ? ValidationSplit.TestHalf : ValidationSource,
            TestSplit = _validatesOnTest ? TestSplit.OtherHalf : TestSplit.Whole,
            TestSamples = (int)test.Count,
            Optimizer = settings.Optimizer.ToString().ToLowerInvariant(),
            LearningRate = trainer.BaseLearningRate,
            LearningRateProbe = probe,
            GoodValidationTop1 = before.Top1,
            // The probe's iterations are training iterations too, and the first pace there is to plan the stages with.
            TimeBudget = Target.MaxMinutes is { } minutes
                ? new TimeBudgetReport
                {
                    MaxMinutes = minutes,
                    StartedAt = _origin,
                    ReserveSeconds = 2 * evaluationSeconds,
                    MeasuredSeconds = probeSeconds,
                    MeasuredIterations = probe?.Trials.Sum(t => t.Iterations) ?? 0,
                }
                : null,
        };
        var (layersMeasured, layers) = (0, trainer.Layers.Count);
        observer.OnPhase(new PhaseUpdate(RunPhase.Sensitivity, 0, layers));
        var sampled = AnalysisSample(report, validation, observer);
        try
        {
            var analysed = sampled ?? validation;
            var startTop1 = sampled is null ? before.Top1 : trainer.Evaluate(sampled).Top1;
            report.SensitivitySamples = (int)analysed.Count;
            report.Sensitivity = [.. Sensitivity.Analyse(trainer, analysed, startTop1, curve =>
            {
                observer.OnEvent(new SurgeryEvent(0, SurgeryEventKind.Search, "sensitivity of " + Sensitivity.Describe(curve)));
                observer.OnPhase(new PhaseUpdate(RunPhase.Sensitivity, ++layersMeasured, layers, analysed.Count));
            }, cancellationToken)];
        }
        finally
        {
            sampled?.Dispose();
        }
        report.ValidatesOnTest = _validatesOnTest;
        observer.OnDeliverable(report.GoodCompression);
        _report = report;
        _best = trainer.Snapshot();
        var free = Sensitivity.CompressionAt(report.Sensitivity, Budget);
        observer.OnEvent(new SurgeryEvent(0, SurgeryEventKind.Search,
            $"the sensitivity analysis of {report.Sensitivity.Count} layers promises {free:0.#}x within the budget of " +
            $"{Target.MaxAccuracyDrop} points without retraining"));
        foreach (var curve in report.Sensitivity.Where(c => c.Points[^1].Top1 >= before.Top1 - Budget))
        {
            observer.OnEvent(new SurgeryEvent(0, SurgeryEventKind.Search,
                $"layer {curve.Layer} keeps its accuracy even at {curve.Points[^1].KeptFraction:P1} of its weights"));
        }
        report.OneShot = OneShot(report, free, validation, observer);
        if (StandardError(before.Top1, validation.Count) is var error && Budget < error)
        {
            observer.OnEvent(new SurgeryEvent(0, SurgeryEventKind.Warning,
                $"the budget of {Target.MaxAccuracyDrop} points is finer than the validation split can measure: one " +
                $"standard error of top-1 on {validation.Count} samples is {100 * error:0.##} points, so a stage can " +
                $"pass or miss the floor by a few samples; a larger target.validation (at most {SurgeryTarget.MaxValidationSamples}) " +
                "or a larger maxAccuracyDrop makes the search's decisions firmer"));
        }
        if (report.TimeBudget is { } time)
        {
            observer.OnEvent(new SurgeryEvent(0, SurgeryEventKind.Search,
                $"time budget of {time.MaxMinutes:0.##} minutes from {time.StartedAt:u}: {Math.Max(0, SecondsLeft(time)):0} s left after " +
                $"the starting model's evaluation and analysis, of which {time.ReserveSeconds:0.#} s are kept for the final " +
                "evaluations and the export (twice the starting model's evaluations); " +
                (Pace() is { } pace
                    ? $"the probe measured {pace:g3} s per iteration"
                    : "the pace is measured from the first stage's iterations")));
        }
    }

    /// <summary>Seconds and samples of the starting model's evaluations: the pace at which this model evaluates.</summary>
    private (double Seconds, long Samples) _evaluated;

    private EvaluationMetrics TimedEvaluate(TensorDataset samples)
    {
        var started = Clock.GetTimestamp();
        var metrics = trainer.Evaluate(samples);
        _evaluated = (_evaluated.Seconds + Clock.GetElapsedTime(started).TotalSeconds, _evaluated.Samples + samples.Count);
        return metrics;
    }

    /// <summary>Seconds to evaluate one sample, as the starting model's evaluations measured it; null before any.</summary>
    private double? SecondsPerSample => _evaluated.Samples > 0 ? _evaluated.Seconds / _evaluated.Samples : null;

    /// <summary>Share of the time budget the learning-rate probe may expect to use.</summary>
    internal const double ProbeShare = 0.1;

    /// <summary>Share of the time left after the probe that the sensitivity analysis may expect to use.</summary>
    internal const double AnalysisShare = 0.2;

    /// <summary>Fewest validation samples the analysis measures on when the time budget makes it sample (default 1,000).</summary>
    public int MinAnalysisSamples { get; init; } = 1000;

    /// <summary>
    /// Iterations per rate of the learning-rate probe: <see cref="LearningRateProbe.IterationsFor"/> the run, and under a
    /// time budget no more than lets three rates (the usual count) fit in <see cref="ProbeShare"/> of it, at a training
    /// iteration estimated as three forward passes of a batch at the starting evaluations' pace (at least 20).
    /// </summary>
    private int ProbeIterations()
    {
        var iterations = LearningRateProbe.IterationsFor(MaxIterations);
        if (Target.MaxMinutes is not { } minutes || SecondsPerSample is not { } perSample || perSample <= 0) return iterations;
        var iterationSeconds = 3 * perSample * settings.BatchSize;
        return Math.Clamp((int)(ProbeShare * minutes * 60 / (3 * iterationSeconds)), 20, iterations);
    }

    /// <summary>
    /// Under a time budget, a seeded sample of <paramref name="validation"/> for the sensitivity analysis when measuring
    /// every layer's ladder on the whole split would take more than <see cref="AnalysisShare"/> of the time left (at the
    /// starting evaluations' pace): as many samples as fit that share, at least <see cref="MinAnalysisSamples"/>. Null:
    /// the whole split. On a 2-core CPU a residual CNN's analysis of 6,000 samples took as long as a 22-minute budget
    /// (docs/benchmarks.md), leaving no time to train. The curves only split the target across layers; every candidate
    /// is still judged on the whole split.
    /// </summary>
    private TensorDataset? AnalysisSample(SearchReport report, TensorDataset validation, ISurgeryObserver observer)
    {
        if (report.TimeBudget is not { } time || SecondsPerSample is not { } perSample) return null;
        var left = Math.Max(0, SecondsLeft(time) - time.ReserveSeconds);
        var whole = trainer.Layers.Count * Sensitivity.Ladder.Count * validation.Count * perSample;
        if (whole <= AnalysisShare * left) return null;
        var count = (int)Math.Clamp(validation.Count * AnalysisShare * left / whole, MinAnalysisSamples, validation.Count);
        if (count >= validation.Count) return null;
        var (rest, sample) = validation.Split(count, SurgeryTarget.ValidationSplitSeed);
        rest.Dispose();
        observer.OnEvent(new SurgeryEvent(0, SurgeryEventKind.Search,
            $"the analysis would take up to {whole:0} s on all {validation.Count} validation samples at the measured " +
            $"{1000 * perSample:g3} ms per sample, more than {100 * AnalysisShare:0}% of the {left:0} s the time budget leaves: " +
            $"it measures the layers on a seeded sample of {count} of them (every candidate is still judged on all " +
            $"{validation.Count})"));
        return sample;
    }

    /// <summary>
    /// The standard error of a top-1 measured on <paramref name="count"/> samples. On LeNet-5 a 0.1-point budget on
    /// 6,000 samples (0.14 points) let stages miss the floor by one to three images, at 35.5x and at 55.9x.
    /// </summary>
    internal static double StandardError(double top1, long count) =>
        count > 0 ? Math.Sqrt(top1 * (1 - top1) / count) : double.PositiveInfinity;

    /// <summary>
    /// Whether the starting model scores clearly better on the validation samples than on the test split: by more than
    /// two standard errors of the difference. A model a user trained on their whole training split has seen the
    /// validation samples, so its validation top-1 is what it memorised, not what it generalises to. Retraining without
    /// those samples then moves validation top-1 for reasons that have nothing to do with pruning. Measured from
    /// there, the budget is spent before the first weight is cut, and a floor lowered by the gap is lenient: some
    /// memorisation survives and validation stays above what unseen data gives. Samples the model has never seen
    /// measure the drop honestly, and the test split is the only such data.
    /// </summary>
    public static bool Memorised(double validationTop1, long validationCount, double testTop1, long testCount)
    {
        if (validationCount == 0 || testCount == 0) return false;
        var (v, t) = (validationTop1, testTop1);
        var standardError = Math.Sqrt(Math.Pow(StandardError(v, validationCount), 2) + Math.Pow(StandardError(t, testCount), 2));
        return v - t > 2 * standardError && v - t > 0;
    }

    private bool _validatesOnTest;
    private EvaluationMetrics? _startValidation, _startTest;

    /// <summary>Measures <see cref="Memorised"/> on the starting model and says so in the job's log when it is.</summary>
    private bool StartsMemorised(TensorDataset validation, TensorDataset test, ISurgeryObserver observer)
    {
        if (test.Count < 20) return false; // too few to split, and too few to tell memorising from noise
        _startValidation = TimedEvaluate(validation);
        _startTest = TimedEvaluate(test);
        var (v, t) = (_startValidation.Top1, _startTest.Top1);
        _validatesOnTest = Memorised(v, validation.Count, t, test.Count);
        if (_validatesOnTest)
        {
            observer.OnEvent(new SurgeryEvent(0, SurgeryEventKind.Search,
                $"the starting model scores {v:P2} on the {validation.Count} held-out training samples but {t:P2} on the " +
                $"{test.Count} test samples: it was trained on the held-out ones, so their accuracy would measure what " +
                $"retraining makes it forget, not what pruning costs"));
        }
        return _validatesOnTest;
    }

    /// <summary>The budget as a fraction (top-1 is a fraction in the engine, points in the API).</summary>
    private double Budget => Target.MaxAccuracyDrop / 100;

    /// <summary>Compressions below this are not worth a one-shot candidate.</summary>
    private const double MinOneShot = 1.05;

    /// <summary>One-shot compressions tried, each the square root of the one before, until one is within the budget.</summary>
    private const int OneShotTries = 4;

    /// <summary>
    /// The one-shot candidate (docs/algorithm.md#budget-mode): every layer pruned by magnitude to the shares the analysis
    /// allots to <paramref name="promised"/>, validated as a whole. Layers pruned together can cost more than the sum of
    /// their curves, so a miss tries less compression. A candidate within the budget becomes the best state: the
    /// search never delivers less than its analysis promised without retraining.
    /// </summary>
    private OneShotReport? OneShot(SearchReport report, double promised, TensorDataset validation, ISurgeryObserver observer)
    {
        if (!(promised >= MinOneShot)) return null;
        var oneShot = new OneShotReport();
        var start = _best!;
        for (var target = promised; target >= MinOneShot && oneShot.Tries.Count < OneShotTries; target = Math.Sqrt(target))
        {
            trainer.Restore(start);
            var shares = Sensitivity.Allocate(report.Sensitivity, target);
            for (var i = 0; i < trainer.Layers.Count; i++) trainer.Method.Calibrate(trainer.Layers[i], shares[i]);
            trainer.WriteMaskedWeights();
            var top1 = trainer.Evaluate(validation).Top1;
            var compression = Compression();
            var within = top1 >= report.Floor(Budget);
            oneShot.Tries.Add(new OneShotTry(target, compression, top1, within));
            observer.OnEvent(new SurgeryEvent(0, SurgeryEventKind.Search,
                $"one-shot candidate (magnitude pruning, no training): {compression:0.#}x at validation top-1 {top1:P2} " +
                $"(floor {report.Floor(Budget):P2}): {(within ? "within budget" : "outside budget")}"));
            if (within && compression > report.GoodCompression)
            {
                oneShot.Accepted = true;
                oneShot.Compression = compression;
                oneShot.ValidationTop1 = top1;
                report.GoodCompression = compression;
                report.GoodValidationTop1 = top1;
                _best = trainer.Snapshot();
                observer.OnDeliverable(compression);
                break;
            }
        }
        if (!oneShot.Accepted) trainer.Restore(start);
        trainer.MarkGood();
        return oneShot;
    }

    /// <summary>A stage whose training diverged past every rollback: it fails like a stage outside the budget.</summary>
    private void Diverge(SearchReport report, SearchStageReport stage, TrainingDivergedException diverged, ISurgeryObserver observer)
    {
        stage.Diverged = diverged.Message;
        stage.Accepted = false;
        stage.Compression = Compression();
        report.FailedCompression = Math.Min(report.FailedCompression ?? double.MaxValue, stage.TargetCompression);
        observer.OnEvent(new SurgeryEvent(trainer.Iteration, SurgeryEventKind.Search,
            $"stage {stage.Index + 1}: training diverged ({diverged.Message}); the search goes on from the best state so far " +
            $"({report.GoodCompression:0.#}x)"));
    }

    /// <summary>The next stage's target, or null when the search has converged; called only when a stage fits.</summary>
    private double? NextTarget(SearchReport report, ISurgeryObserver observer)
    {
        var failed = report.FailedCompression;
        var target = NextTarget(report, Budget);
        if (failed is not null && report.FailedCompression is null)
        {
            observer.OnEvent(new SurgeryEvent(trainer.Iteration, SurgeryEventKind.Search,
                $"the best state ({report.GoodCompression:0.#}x) is {100 * (report.GoodValidationTop1 - report.Floor(Budget)):0.##} points " +
                $"above the floor, at least half the budget, and the miss at {failed:0.#}x started from a less trained state: " +
                $"the search tries {target:0.#}x"));
        }
        return target;
    }

    /// <summary>
    /// Doubling until the first miss, then the geometric mean of the best hit and the least miss until they are within
    /// <see cref="Resolution"/>. Converged just below a miss, the search climbs again when the best state keeps at least
    /// half the budget (<paramref name="budget"/>, a fraction): a miss bounds what a stage reaches from the state it started
    /// from, and the best state has trained since. It then forgets the miss and aims between it and a doubling.
    /// </summary>
    internal static double? NextTarget(SearchReport report, double budget)
    {
        if (report.FailedCompression is { } failed)
        {
            if (failed / report.GoodCompression >= Resolution) return Math.Sqrt(failed * report.GoodCompression);
            if (!(report.GoodValidationTop1 - report.Floor(budget) >= budget / 2)) return null;
            report.FailedCompression = null;
            return Math.Sqrt(failed * 2 * report.GoodCompression);
        }
        if (report.Stages.Count == 0)
        {
            return Math.Max(2, 2 * Sensitivity.CompressionAt(report.Sensitivity, budget));
        }
        return 2 * report.GoodCompression;
    }

    private SearchStageReport BeginStage(SearchReport report, double target, int length, ISurgeryObserver observer)
    {
        RestoreKeepingIteration(_best!);
        var shares = Sensitivity.Allocate(report.Sensitivity, target * report.Correction);
        var calibrations = trainer.Layers
            .Select((layer, i) => trainer.Method.Calibrate(layer, shares[i]))
            .ToList();
        BeginStage(length, (int)(length * MaskShare));
        trainer.MarkGood();
        var stage = new SearchStageReport
        {
            Index = report.Stages.Count,
            TargetCompression = target,
            Start = trainer.Iteration,
            End = trainer.Iteration + length,
            Layers = calibrations,
            LearningRate = trainer.BaseLearningRate * trainer.LearningRateScale,
        };
        report.Stages.Add(stage);
        observer.OnPhase(StagePhase(report, stage));
        observer.OnEvent(new SurgeryEvent(trainer.Iteration, SurgeryEventKind.Search,
            $"stage {stage.Index + 1}: aiming at {target:0.#}x from {report.GoodCompression:0.#}x (calibrated for " +
            $"{target * report.Correction:0.#}x), iterations {stage.Start}-{stage.End}; " +
            string.Join(", ", calibrations.Select(c => $"{c.Layer} keeps {c.KeptFraction:P2} (t {c.Threshold:g3}, cRate {c.CRate:0.##})"))));
        return stage;
    }

    /// <summary>Stage k of the most stages the iterations left after it allow (the bisection may stop sooner).</summary>
    private PhaseUpdate StagePhase(SearchReport report, SearchStageReport stage) =>
        new(RunPhase.Stage, stage.Index + 1, stage.Index + 1 + Math.Max(0,
            (PlannedIterations - FineTuneIterationsOf(PlannedIterations) - stage.End) / StageLengthOf(PlannedIterations)));

    private void Judge(SearchReport report, SearchStageReport stage, TensorDataset validation, ISurgeryObserver observer)
    {
        var evaluation = Evaluate(validation, observer);
        var compression = Compression();
        stage.Compression = compression;
        stage.ValidationTop1 = evaluation.Top1;
        var withinBudget = evaluation.Top1 >= report.Floor(Budget);
        stage.Accepted = withinBudget && compression > report.GoodCompression;
        if (stage.Accepted == true)
        {
            report.GoodCompression = compression;
            report.GoodValidationTop1 = evaluation.Top1;
            report.BestStage = stage.Index;
            _best = trainer.Snapshot(_best);
            observer.OnDeliverable(compression);
        }
        else if (!withinBudget)
        {
            report.FailedCompression = Math.Min(report.FailedCompression ?? double.MaxValue, Math.Max(stage.TargetCompression, compression));
        }
        report.Correction = Math.Clamp(report.Correction * stage.TargetCompression / compression, 1.0 / MaxCorrection, MaxCorrection);
        var verdict = stage.Accepted == true ? "within budget"
            : withinBudget ? $"within budget but no more compressed than the best so far ({report.GoodCompression:0.#}x)"
            : "outside budget";
        observer.OnEvent(new SurgeryEvent(trainer.Iteration, SurgeryEventKind.Search,
            $"stage {stage.Index + 1}: {compression:0.#}x at validation top-1 {evaluation.Top1:P2} " +
            $"(floor {report.Floor(Budget):P2}): {verdict}"));
    }

    private void BeginFineTune(SearchReport report, int planned, ISurgeryObserver observer)
    {
        var end = Math.Max(trainer.Iteration, Math.Min(MaxIterations, planned));
        RestoreKeepingIteration(_best!);
        BeginStage(end - trainer.Iteration, maskIterations: 0);
        trainer.MarkGood();
        report.FineTuneStart = trainer.Iteration;
        report.FineTuneEnd = end;
        _fineTuneBest = null;
        observer.OnPhase(new PhaseUpdate(RunPhase.FineTune));
        observer.OnEvent(new SurgeryEvent(trainer.Iteration, SurgeryEventKind.Search,
            $"fine-tune of the best state ({report.GoodCompression:0.#}x) with frozen masks until iteration {end}" +
            (end < MaxIterations ? $" (the time budget allows {end} of maxIterations {MaxIterations})" : "")));
    }

    private void KeepIfBest(SearchReport report, EvaluationMetrics evaluation)
    {
        if (report.FineTuneBestTop1 is { } best && evaluation.Top1 <= best) return;
        report.FineTuneBestTop1 = evaluation.Top1;
        report.FineTuneBestIteration = evaluation.Iteration;
        _fineTuneBest = trainer.Snapshot(_fineTuneBest);
    }

    private SurgeryOutcome Deliver(SearchReport report, TensorDataset validation, TensorDataset test, ISurgeryObserver observer)
    {
        // Best-of-run: the fine-tune's best validated state when it is at least as good as the candidate it started from.
        var bestTop1 = report.GoodValidationTop1
            ?? (report.BestStage >= 0 ? report.Stages[report.BestStage].ValidationTop1 : report.ValidationTop1Before);
        var useFineTune = _fineTuneBest is not null && report.FineTuneBestTop1 >= bestTop1;
        observer.OnPhase(new PhaseUpdate(RunPhase.Evaluating));
        if (report.TimeBudget is { } time) time.Limited = FineTuneEnd(report) < MaxIterations;
        var timeNote = TimeNote(report);
        RestoreKeepingIteration(useFineTune ? _fineTuneBest! : _best!);
        trainer.WriteDeliveredWeights();
        var validationAfter = trainer.Evaluate(validation);
        var testAfter = test.Count > 0 ? trainer.Evaluate(test) : null;
        report.ValidationTop1After = validationAfter.Top1;
        report.TestTop1After = testAfter?.Top1;
        var compression = Compression();
        var candidate = report.BestStage >= 0 ? $"stage {report.BestStage + 1}"
            : report.OneShot?.Accepted == true ? "one-shot" : "starting model";
        report.Delivered = useFineTune ? $"fine-tune of the {candidate} (iteration {report.FineTuneBestIteration})" : candidate;
        var compressed = candidate != "starting model";
        var withinDrop = validationAfter.Top1 >= report.Floor(Budget);
        var enough = report.MinCompression is not { } min || compression >= min;
        report.BudgetMet = withinDrop && enough && compressed;
        report.BudgetProblem = !withinDrop
            ? $"validation top-1 {validationAfter.Top1:P2} is more than {Target.MaxAccuracyDrop} points below the start's {report.ValidationTop1Before:P2}"
            : !compressed
                ? $"nothing was compressed, the starting model is delivered: {Why(report)}"
            : !enough
                ? $"{compression:0.#}x is the most compression found within {Target.MaxAccuracyDrop} points of validation top-1; " +
                  $"minCompression {report.MinCompression:0.#}x was not reached: " + (timeNote is null
                      ? "allow a larger maxAccuracyDrop or more maxIterations"
                      : $"{timeNote}; allow a larger target.maxMinutes, a larger maxAccuracyDrop or more maxIterations")
            : compression < 2
                ? $"only {compression:0.##}x: {Why(report)}"
                : null;
        observer.OnEvent(new SurgeryEvent(trainer.Iteration, SurgeryEventKind.Search,
            $"delivered {compression:0.#}x ({report.Delivered}): " +
            $"validation top-1 {validationAfter.Top1:P2}, test top-1 {testAfter?.Top1:P2}" +
            (report.TestSplit == TestSplit.OtherHalf ? $" on the {report.TestSamples} test samples that did not validate" : "") +
            (report.BudgetProblem is { } problem ? $"; {(report.BudgetMet == true ? "note" : "budget not met")}: {problem}" : "; budget met")));
        if (timeNote is not null)
        {
            observer.OnEvent(new SurgeryEvent(trainer.Iteration, SurgeryEventKind.Warning,
                $"{timeNote} at the measured {report.TimeBudget!.SecondsPerIteration:g3} s per iteration: its stages and fine-tune " +
                "were fewer or shorter than maxIterations plans for; a larger target.maxMinutes lets it train longer"));
        }
        return new SurgeryOutcome(trainer.Iteration, false, null, testAfter, trainer.Results()) { Search = report };
    }

    /// <summary>
    /// Why the search found no more than it delivers, from its own record: the stages that diverged (at which rate),
    /// missed the floor (by how much at the least), or compressed no further; and what the one-shot candidate did.
    /// </summary>
    private string Why(SearchReport report)
    {
        var floor = report.Floor(Budget);
        var stages = report.Stages.Where(s => s.Accepted is not null).ToList();
        var reasons = new List<string>();
        var timeNote = TimeNote(report);
        if (timeNote is not null) reasons.Add(timeNote);
        if (stages.Count == 0)
        {
            reasons.Add(timeNote is not null
                ? "no training stage fit in the time left after the analysis; allow a larger target.maxMinutes"
                : $"no training stage fit in maxIterations {MaxIterations} (a stage takes {StageLengthOf(MaxIterations)} and the " +
                  $"fine-tune {FineTuneIterationsOf(MaxIterations)}); allow more maxIterations");
        }
        var diverged = stages.Where(s => s.Diverged is not null).ToList();
        var missed = stages.Where(s => s.Diverged is null && s.ValidationTop1 < floor).ToList();
        var rates = string.Join(", ", diverged.Select(s => $"{s.LearningRate:g3}").Distinct());
        if (diverged.Count > 0)
        {
            reasons.Add(diverged.Count == stages.Count
                ? $"training diverged at every stage at learning rate {rates}"
                : $"training diverged at {diverged.Count} of {stages.Count} stages at learning rate {rates}");
        }
        if (missed.Count > 0)
        {
            var least = missed.Min(s => floor - s.ValidationTop1!.Value);
            reasons.Add((missed.Count == stages.Count ? "every stage" : $"{missed.Count} of {stages.Count} stages") +
                $" missed the floor of {floor:P2} validation top-1 by at least {100 * least:0.##} points");
        }
        var flat = stages.Count - diverged.Count - missed.Count;
        if (flat > 0) reasons.Add($"{flat} stages stayed within budget without compressing past {report.GoodCompression:0.##}x");
        if (report.FineTuneDiverged is not null) reasons.Add("the fine-tune diverged");
        reasons.Add(report.OneShot switch
        {
            null => "the sensitivity analysis found no layer that can be pruned within the budget without retraining",
            { Accepted: true } o => $"the one-shot candidate (no retraining) reached {o.Compression:0.##}x",
            var o => $"the one-shot candidate missed the floor at every compression tried (down to {o.Tries[^1].Compression:0.##}x)",
        });
        if (report.LearningRateProbe is { AnyHeld: false } probe)
        {
            reasons.Add($"no learning rate the probe tried (down to {probe.Chosen:g3}) held the starting model");
        }
        if (diverged.Count > 0 || missed.Count > 0)
        {
            reasons.Add(diverged.Count > 0 ? "a smaller learningRate may help"
                : timeNote is not null ? "a larger target.maxMinutes, a larger maxAccuracyDrop or more maxIterations may help"
                : "a larger maxAccuracyDrop or more maxIterations may help");
        }
        return string.Join("; ", reasons);
    }

    /// <summary>"the time budget of N minutes allowed K of M iterations" when it ended the search early, else null.</summary>
    private string? TimeNote(SearchReport report) => report.TimeBudget is { Limited: true } time
        ? $"the time budget of {time.MaxMinutes:0.##} minutes allowed {FineTuneEnd(report)} of {MaxIterations} iterations"
        : null;

    /// <summary>
    /// The iterations the search plans for before a stage (<see cref="AffordableIterations"/>), recorded in the report. The
    /// log says so whenever the time budget sets the plan below maxIterations.
    /// </summary>
    private int Plan(SearchReport report, ISurgeryObserver observer)
    {
        if (report.TimeBudget is not { } time) return MaxIterations;
        var planned = AffordableIterations();
        if (planned < MaxIterations && planned != time.PlannedIterations)
        {
            observer.OnEvent(new SurgeryEvent(trainer.Iteration, SurgeryEventKind.Search,
                $"time budget: {Describe(time)} afford iterations up to {planned} of maxIterations {MaxIterations}: stages of " +
                $"{StageLengthOf(planned)} iterations while they fit, then a fine-tune of {FineTuneIterationsOf(planned)}"));
        }
        time.PlannedIterations = planned;
        return planned;
    }

    /// <summary>
    /// Asked after every iteration of a stage (<paramref name="stage"/>) or of the fine-tune (null) under a time budget. A
    /// stage trains while the time left pays for more than the fine-tune's share and the reserve, the fine-tune while it
    /// pays for more than the reserve; past that the stretch ends here, to be judged (a stage) or delivered (the
    /// fine-tune). Before that, a stretch planned past what the time affords is shortened to fit, at its first check with
    /// a measured pace and then at evaluations, so its rate still anneals before it is judged. True: the trainer stops,
    /// to end the stretch or to follow its new end.
    /// </summary>
    private bool Fit(SearchReport report, SearchStageReport? stage, ISurgeryObserver observer)
    {
        var time = report.TimeBudget!;
        var planned = AffordableIterations();
        var fits = stage is null ? planned : planned - FineTuneIterationsOf(planned);
        var end = stage?.End ?? FineTuneEnd(report);
        var iteration = trainer.Iteration;
        if (end <= fits || iteration >= end) return false;
        var name = stage is null ? "fine-tune" : $"stage {stage.Index + 1}";
        if (iteration >= fits)
        {
            SetEnd(report, stage, iteration);
            observer.OnEvent(new SurgeryEvent(iteration, SurgeryEventKind.Search,
                $"{name}: the time budget ends it at iteration {iteration} instead of {end}: {Describe(time)} afford iterations up " +
                $"to {planned}" + (stage is null ? "" : $", and the fine-tune keeps {FineTuneIterationsOf(planned)} of them")));
            return true;
        }
        if (_fitted && iteration % settings.EvalInterval != 0) return false;
        _fitted = true;
        time.PlannedIterations = planned;
        SetEnd(report, stage, fits);
        var running = _stage!;
        Follow(new SurgeryStage(running.Start, fits,
            Math.Min(running.MaskIterations, Math.Max(iteration - running.Start, (int)((fits - running.Start) * MaskShare)))));
        if (stage is not null) observer.OnPhase(StagePhase(report, stage));
        observer.OnEvent(new SurgeryEvent(iteration, SurgeryEventKind.Search,
            $"{name}: the time budget moves its end from iteration {end} to {fits}: {Describe(time)} afford iterations up to " +
            $"{planned} of maxIterations {MaxIterations}"));
        return true;
    }

    private void SetEnd(SearchReport report, SearchStageReport? stage, int end)
    {
        if (stage is null) report.FineTuneEnd = end;
        else stage.End = end;
    }

    /// <summary>The time left and the pace, in words: "N s left (R s of them kept for the delivery) at P s per iteration".</summary>
    private string Describe(TimeBudgetReport time) =>
        $"{Math.Max(0, SecondsLeft(time)):0} s left ({time.ReserveSeconds:0.#} s of them kept for the final evaluations and the export) " +
        (Pace() is { } pace ? $"at {pace:g3} s per iteration" : "before any pace was measured");

    /// <summary>Seconds until the time budget is spent (negative once it is).</summary>
    private double SecondsLeft(TimeBudgetReport time) => (time.StartedAt.AddMinutes(time.MaxMinutes) - Clock.GetUtcNow()).TotalSeconds;

    /// <summary>
    /// The iteration the whole search can train to: maxIterations without a time budget; with one, as far as the time left
    /// less the reserve pays for at the measured pace (never past maxIterations), here once it is spent, and
    /// maxIterations while no pace is measured yet.
    /// </summary>
    private int AffordableIterations()
    {
        if (_report?.TimeBudget is not { } time) return MaxIterations;
        var left = SecondsLeft(time) - time.ReserveSeconds;
        if (left <= 0) return Math.Min(MaxIterations, trainer.Iteration);
        return Pace() is { } pace ? (int)Math.Min(MaxIterations, trainer.Iteration + Math.Floor(left / pace)) : MaxIterations;
    }

    /// <summary>Seconds per iteration measured so far, once they rest on <see cref="MinPaceIterations"/> iterations; else null.</summary>
    private double? Pace()
    {
        if (_report?.TimeBudget is not { } time) return null;
        MeasurePace(time);
        return time.MeasuredIterations >= MinPaceIterations && time.MeasuredSeconds > 0 ? time.SecondsPerIteration : null;
    }

    /// <summary>This attempt's training time counts from here, and everything after it too (evaluations, stage changes).</summary>
    private void MeasureFromHere() => _paceFrom ??= (Clock.GetTimestamp(), trainer.Iteration);

    /// <summary>Adds the time and iterations since the last measurement to the report's (which checkpoints keep).</summary>
    private void MeasurePace(TimeBudgetReport time)
    {
        if (_paceFrom is not { } from) return;
        var now = Clock.GetTimestamp();
        time.MeasuredSeconds += Clock.GetElapsedTime(from.Timestamp, now).TotalSeconds;
        time.MeasuredIterations += trainer.Iteration - from.Iteration;
        _paceFrom = (now, trainer.Iteration);
    }

    private SurgeryOutcome Cancelled() =>
        new(trainer.Iteration, true, null, null, trainer.Results()) { Search = _report };

    private EvaluationMetrics Evaluate(TensorDataset validation, ISurgeryObserver observer)
    {
        trainer.WriteMaskedWeights();
        var evaluation = trainer.Evaluate(validation);
        observer.OnEvaluation(evaluation);
        return evaluation;
    }

    private double Compression()
    {
        var results = trainer.Results();
        var kept = results.Sum(l => l.Kept);
        return kept == 0 ? double.PositiveInfinity : (double)results.Sum(l => l.Total) / kept;
    }

    /// <summary>From here on the schedules restart, and masks update for <paramref name="maskIterations"/> iterations.</summary>
    private void BeginStage(int length, int maskIterations) =>
        Follow(new SurgeryStage(trainer.Iteration, trainer.Iteration + length, maskIterations));

    /// <summary>
    /// The trainer follows <paramref name="stage"/>: the method's stage schedule, the restarted and annealed learning rate,
    /// and no accuracy verdict but the stage's own.
    /// </summary>
    private void Follow(SurgeryStage? stage)
    {
        _stage = stage;
        _plan = stage is null
            ? null
            : new TrainingPlan(trainer.Method.StageSchedule(stage, settings, trainer.Layers.Select(l => l.Layer).ToList()),
                new StageLearningRate(settings, trainer.BaseLearningRate, stage), JudgesAccuracy: false);
    }

    /// <summary>Goes back to a saved state; the iteration count goes on, so the metric series stays one series.</summary>
    private void RestoreKeepingIteration(byte[] snapshot)
    {
        var iteration = trainer.Iteration;
        trainer.Restore(snapshot);
        trainer.SetIteration(iteration);
    }

    public void SaveCheckpoint(Stream stream)
    {
        using var writer = new BinaryWriter(stream, System.Text.Encoding.UTF8, leaveOpen: true);
        writer.Write(CheckpointMagic);
        if (_report?.TimeBudget is { } time) MeasurePace(time);
        writer.Write(JsonSerializer.Serialize(_report, Json));
        WriteBytes(writer, _best);
        WriteBytes(writer, _fineTuneBest);
        writer.Flush();
        TrainerCheckpoint.Save(trainer, stream, _stage);
    }

    /// <summary>Restores a checkpoint written by a search over the same model, layers and settings.</summary>
    public void LoadCheckpoint(Stream stream)
    {
        using (var reader = new BinaryReader(stream, System.Text.Encoding.UTF8, leaveOpen: true))
        {
            if (reader.ReadString() != CheckpointMagic)
            {
                throw new SurgeryException("Bad checkpoint", "the checkpoint does not match this run: not a budget-mode checkpoint", ErrorKind.Conflict);
            }
            _report = JsonSerializer.Deserialize<SearchReport>(reader.ReadString(), Json);
            (_paceFrom, _fitted) = (null, false); // time between attempts is not an iteration's: the pace goes on from the report
            _best = ReadBytes(reader);
            _fineTuneBest = ReadBytes(reader);
        }
        Follow(TrainerCheckpoint.Load(trainer, stream));
    }

    private static void WriteBytes(BinaryWriter writer, byte[]? bytes)
    {
        writer.Write(bytes?.Length ?? -1);
        if (bytes is not null) writer.Write(bytes);
    }

    private static byte[]? ReadBytes(BinaryReader reader)
    {
        var length = reader.ReadInt32();
        return length < 0 ? null : reader.ReadBytes(length);
    }
}
