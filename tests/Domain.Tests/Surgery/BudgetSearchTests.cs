using SurgeryService.Domain.Datasets;
using SurgeryService.Domain.Surgery;
using Xunit.Abstractions;
using static SurgeryService.Domain.Tests.Surgery.Fixtures;
using static TorchSharp.torch;

namespace SurgeryService.Domain.Tests.Surgery;

public sealed class BudgetSearchTests(ITestOutputHelper log) : TrainedMlpTests(log)
{
    private static SurgerySettings BudgetSettings(int iterations = 600, double drop = 1.0) => Settings(iterations) with
    {
        CRate = null,
        EvalInterval = 50,
        Target = new SurgeryTarget { MaxAccuracyDrop = drop },
    };

    [Fact]
    public void HoldsOutValidationSamplesThatTheTrainingSplitDoesNotContain()
    {
        using var scope = NewDisposeScope();
        using var data = new TensorDataset(arange(100).to(float32).unsqueeze(1), arange(100) % 2, 2);
        var (rest, held) = data.Split(10, seed: 3);
        using var _rest = rest;
        using var _held = held;
        var restValues = Values(rest.Inputs).ToHashSet();
        var heldValues = Values(held.Inputs);
        Assert.Equal(90, restValues.Count);
        Assert.Equal(10, heldValues.Distinct().Count());
        Assert.DoesNotContain(heldValues, restValues.Contains);
        var (_, again) = data.Split(10, seed: 3);
        using var _again = again;
        Assert.Equal(heldValues, Values(again.Inputs)); // seeded: the same samples every time
    }

    [Theory]
    [InlineData(0.5)]
    [InlineData(0.1)]
    [InlineData(0.02)]
    public void CalibrationKeepsTheRequestedShareWithinOnePoint(double share)
    {
        foreach (var magnitude in new[] { false, true })
        {
            using var model = TrainedModel();
            var settings = Settings(1) with { Method = magnitude ? SurgeryMethod.Magnitude : SurgeryMethod.Dns };
            using var trainer = new SurgeryTrainer(model, PrunableLayers.Discover(model), settings);
            foreach (var layer in trainer.Layers)
            {
                var calibration = trainer.Method.Calibrate(layer, share);
                var kept = (double)calibration.Kept / calibration.Total;
                output.WriteLine($"{layer.Layer.Name} magnitude={magnitude}: asked {share:P1}, kept {kept:P2}, t {calibration.Threshold:g3}, cRate {calibration.CRate:0.##}");
                Assert.InRange(kept, share - 0.01, share + 0.01);
                Assert.Equal(0.9 * calibration.Threshold, layer.PruneBelow, 5);
                Assert.Equal(magnitude ? layer.PruneBelow : 1.1 * calibration.Threshold, layer.SpliceAbove, 5);
                Assert.Equal(calibration.Kept, Values(layer.Weight.Parameter).Count(v => v != 0)
                    + (layer.Bias is null ? 0 : Values(layer.Bias.Parameter).Count(v => v != 0)));
            }
        }
    }

    [Fact]
    public void SensitivityCurvesFallAsALayerIsPrunedAndPromiseLessCompressionForLessLoss()
    {
        using var model = TrainedModel();
        using var trainer = new SurgeryTrainer(model, PrunableLayers.Discover(model), Settings(1));
        var start = trainer.Evaluate(validation).Top1;
        var curves = Sensitivity.Analyse(trainer, validation, start);

        Assert.Equal(["fc1", "fc2"], curves.Select(c => c.Layer));
        foreach (var curve in curves)
        {
            output.WriteLine($"{curve.Layer}: " + string.Join(", ", curve.Points.Select(p => $"{p.KeptFraction:P1}->{p.Top1:P1}")));
            Assert.Equal(start, curve.Points[0].Top1);
            Assert.True(curve.Points[^1].Top1 < start - 0.1, $"{curve.Layer} should lose accuracy at {curve.Points[^1].KeptFraction:P1}");
        }
        Assert.Equal(start, trainer.Evaluate(validation).Top1); // the model is left as it was
        Assert.True(Sensitivity.CompressionAt(curves, 0.2) > Sensitivity.CompressionAt(curves, 0.01));
    }

    [Fact]
    public void ALayersLadderStopsWhereTheModelFallsToChanceAndRecordsTheRestAtThatTop1()
    {
        using var model = TrainedModel();
        using var trainer = new SurgeryTrainer(model, PrunableLayers.Discover(model), Settings(1));
        var start = trainer.Evaluate(validation).Top1;
        var chance = Sensitivity.ChanceLevel(validation.ClassCount);
        var curves = Sensitivity.Analyse(trainer, validation, start);

        var stopped = 0;
        foreach (var curve in curves)
        {
            Assert.Equal(Sensitivity.Ladder.Count + 1, curve.Points.Count);
            var first = curve.Points.ToList().FindIndex(p => p.Top1 <= chance);
            if (first < 0) continue;
            stopped++;
            // Every share after the first at chance carries that top-1: it was recorded, not measured.
            Assert.All(curve.Points.Skip(first + 1), p => Assert.Equal(curve.Points[first].Top1, p.Top1));
            // It is what a measurement there gives, within chance: pruning further does not bring the model back.
            trainer.Layers.Single(l => l.Layer.Name == curve.Layer).WriteMagnitudePruned(curve.Points[^1].KeptFraction);
            Assert.True(trainer.Evaluate(validation).Top1 <= chance + 0.05);
            trainer.Layers.Single(l => l.Layer.Name == curve.Layer).WriteMaskedWeights();
        }
        Assert.True(stopped > 0, "no layer of the trained MLP fell to chance: the test shows nothing");
        Assert.Equal(start, trainer.Evaluate(validation).Top1);
    }

    [Fact]
    public void ASensitivityOnlyRunReportsEachLayerAsItGoesAndACancelStopsItBetweenLayers()
    {
        using var model = TrainedModel();
        using var trainer = new SurgeryTrainer(model, PrunableLayers.Discover(model), Settings(1));
        var observer = new RecordingObserver();
        var progress = new List<int>();

        var report = Sensitivity.Measure(trainer, validation, test, observer, progress.Add)!;

        Assert.Equal([1, 2], progress);
        Assert.Equal(["fc1", "fc2"], report.Curves.Select(c => c.Layer));
        Assert.Equal((int)validation.Count, report.ValidationSamples);
        Assert.Equal(trainer.Evaluate(validation).Top1, report.ValidationTop1Before);
        Assert.Equal(trainer.Evaluate(test).Top1, report.TestTop1Before);
        Assert.Equal(3, observer.Events.Count(e => e.Kind == SurgeryEventKind.Sensitivity)); // the start, then a line per layer

        // A cancel seen after the first layer stops before the second, with the model as it was.
        using var cancel = new CancellationTokenSource();
        var stopped = Sensitivity.Measure(trainer, validation, test, new RecordingObserver(), _ => cancel.Cancel(), cancel.Token);
        Assert.Null(stopped);
        Assert.Equal(report.ValidationTop1Before, trainer.Evaluate(validation).Top1);
    }

    [Fact]
    public void AllocationHitsTheWholeModelTargetAndKeepsTheSensitiveLayerDenser()
    {
        SensitivityCurve Curve(string name, long total, params double[] top1) =>
            new(name, LayerKind.FullyConnected, total,
                [new SensitivityPoint(1, 0.99), .. Sensitivity.Ladder.Select((k, i) => new SensitivityPoint(k, top1[i]))]);
        var robust = Curve("big", 100_000, 0.99, 0.99, 0.99, 0.99, 0.98, 0.97, 0.9, 0.6, 0.3);
        var fragile = Curve("small", 1_000, 0.98, 0.9, 0.8, 0.5, 0.3, 0.1, 0.1, 0.1, 0.1);

        foreach (var target in new[] { 5.0, 20.0, 80.0, 2000.0 })
        {
            var shares = Sensitivity.Allocate([robust, fragile], target);
            var kept = 100_000 * shares[0] + 1_000 * shares[1];
            Assert.Equal(101_000 / target, kept, 101_000 / target * 1e-3);
            // Past the ladder's end (2000x) every layer shrinks alike; within it the fragile layer stays denser.
            Assert.True(target > 1000 ? shares[1] >= shares[0] : shares[1] > shares[0],
                $"at {target}x the fragile layer keeps {shares[1]:P2}, the robust one {shares[0]:P2}");
        }
    }

    [Fact]
    public void NoLayerKeepsFewerConnectionsThanItHasOutputUnits()
    {
        // The PyTorch example network's shape: a 320-weight first convolution (32 channels) whose curve is flat, beside
        // a 1.2M-weight matrix. Past the ladder's end the convolution used to shrink with the rest, to 0.11% (0.35
        // weights), and the stage trained a network at chance.
        var ladder = Sensitivity.Ladder.Select(k => new SensitivityPoint(k, 0.98)).ToList();
        var conv = new SensitivityCurve("conv1", LayerKind.Convolution, 320, [new SensitivityPoint(1, 0.98), .. ladder], MinKept: 32);
        var fc = new SensitivityCurve("fc1", LayerKind.FullyConnected, 1_179_776, [new SensitivityPoint(1, 0.98), .. ladder], MinKept: 128);
        foreach (var target in new[] { 874.0, 3000.0 })
        {
            var shares = Sensitivity.Allocate([conv, fc], target);
            output.WriteLine($"{target}x: conv1 keeps {shares[0] * 320:0.#}, fc1 {shares[1] * 1_179_776:0.#}");
            Assert.True(shares[0] * 320 >= 32 - 1e-9, $"conv1 keeps {shares[0] * 320:0.##} of 320");
            Assert.True(shares[1] * 1_179_776 >= 128 - 1e-6);
            // The big layer pays for the small one's floor, so the target still holds while it can.
            var kept = shares[0] * 320 + shares[1] * 1_179_776;
            Assert.Equal(Math.Max(1_180_096 / target, 32 + 128), kept, Math.Max(1_180_096 / target, 160) * 1e-3);
        }
        Assert.Equal(32.0 / 320, Sensitivity.Allocate([conv, fc], 1e6)[0], 9); // beyond what the floors allow: the floors
    }

    [Theory]
    // A LeNet-300-100 trained on all of MNIST's training split: 99.0% on held-out training samples, 97.8% on test.
    [InlineData(0.990, 6000, 0.978, 10000, true)]
    // The test MLP of the Api's budget tests, trained on every training sample: 100% against 88.2%.
    [InlineData(1.000, 400, 0.882, 256, true)]
    // The bench's dense reference, trained outside the split: 97.68% against 97.74% (no memorising).
    [InlineData(0.9768, 6000, 0.9774, 10000, false)]
    // Better on validation, but within two standard errors of the difference: noise, not memorising.
    [InlineData(0.950, 500, 0.940, 500, false)]
    public void AModelCountsAsHavingSeenTheValidationSamplesOnlyWhenItIsBetterThereByMoreThanNoise(
        double validationTop1, long validationCount, double testTop1, long testCount, bool expected)
    {
        Assert.Equal(expected, BudgetSearch.Memorised(validationTop1, validationCount, testTop1, testCount));
    }

    [Fact]
    public void AModelTrainedOnTheValidationSamplesIsJudgedAgainstWhatItScoresOnUnseenData()
    {
        // A third of the labels are random, so what a model gets right beyond the rest it has memorised. The starting
        // model trains on every training sample, the validation ones included, as a user's model would have.
        var (all, held) = Blobs(train: 768, test: 256);
        using var noisyAll = WithRandomLabels(all, share: 0.35, seed: 9);
        using var noisyTest = WithRandomLabels(held, share: 0.35, seed: 10);
        var (noisyTrain, noisyValidation) = noisyAll.Split(256, seed: 5);
        using var disposeTrain = noisyTrain;
        using var disposeValidation = noisyValidation;
        manual_seed(11);
        using var model = new Mlp(32, 64, 4);
        using (var dense = new SurgeryTrainer(model, [], Settings(3000) with { CRate = null }))
        {
            dense.Run(noisyAll, noisyTest, new RecordingObserver());
        }
        var settings = BudgetSettings(iterations: 300, drop: 1.0);
        using var trainer = new SurgeryTrainer(model, PrunableLayers.Discover(model), settings);
        var observer = new RecordingObserver();

        var report = new BudgetSearch(trainer, settings, settings.Target!).Run(noisyTrain, noisyValidation, noisyTest, observer).Search!;

        foreach (var e in observer.Events) output.WriteLine($"{e.Iteration}: {e.Message}");
        // It validates on half of the test split: samples it has never seen.
        Assert.Contains(observer.Events, e => e.Message.Contains("it was trained on the held-out ones"));
        Assert.True(report.ValidatesOnTest);
        Assert.Equal(noisyTest.Count / 2, report.ValidationSamples);
        Assert.True(report.ValidationTop1Before < 0.8, $"validation top-1 {report.ValidationTop1Before} is measured on unseen samples");
        // Its test figures are on the other half: samples that never steered it.
        var (otherHalf, validationHalf) = noisyTest.Split((int)(noisyTest.Count / 2), SurgeryTarget.ValidationSplitSeed);
        using var disposeOther = otherHalf;
        using var disposeHalf = validationHalf;
        Assert.Equal((ValidationSplit.TestHalf, TestSplit.OtherHalf, (int)otherHalf.Count), (report.ValidationSplit, report.TestSplit, report.TestSamples));
        Assert.Equal(new EvaluationSplits(ValidationSplit.TestHalf, validationHalf.Count, TestSplit.OtherHalf, otherHalf.Count), Assert.Single(observer.Splits));
        Assert.Equal(trainer.Evaluate(otherHalf).Top1, report.TestTop1After!.Value, 9);
        Assert.All(report.Stages.Where(s => s.Accepted == true), s => Assert.True(s.ValidationTop1 >= report.Floor(0.01)));
        Assert.True(report.ValidationTop1After >= report.Floor(0.01));
    }

    private static TensorDataset WithRandomLabels(TensorDataset data, double share, int seed)
    {
        using var scope = NewDisposeScope();
        using var generator = new Generator((ulong)seed);
        var flip = rand(data.Count, generator: generator) < share;
        var random = randint(0, data.ClassCount, data.Count, generator: generator);
        var labels = where(flip, random, data.Labels);
        var result = new TensorDataset(data.Inputs.clone(), labels, data.ClassCount);
        data.Dispose();
        return result;
    }

    [Fact]
    public void NeverDeliversAModelOutsideItsBudgetAndDeliversTheBestValidatedState()
    {
        using var model = TrainedModel();
        var settings = BudgetSettings(drop: 1.0);
        using var trainer = new SurgeryTrainer(model, PrunableLayers.Discover(model), settings);
        var search = new BudgetSearch(trainer, settings, settings.Target!);
        var observer = new RecordingObserver();

        var outcome = search.Run(train, validation, test, observer);

        var report = outcome.Search!;
        foreach (var e in observer.Events) output.WriteLine($"{e.Iteration}: {e.Message}");
        Assert.True(report.Stages.Count >= 2);
        Assert.True(outcome.Compression > 2, $"compression {outcome.Compression:0.##}");
        Assert.True(report.BudgetMet);
        Assert.True(report.ValidationTop1After >= report.ValidationTop1Before - 0.01);
        Assert.All(report.Stages.Where(s => s.Accepted == true), s => Assert.True(s.ValidationTop1 >= report.ValidationTop1Before - 0.01));
        // The most compressed candidate within budget: an accepted stage, or the one-shot candidate.
        var oneShot = report.OneShot is { Accepted: true } o ? o : null;
        Assert.Equal(report.Stages.Where(s => s.Accepted == true).Select(s => s.Compression!.Value).Append(oneShot?.Compression ?? 1).Max(),
            outcome.Compression, 6);
        // Best-of-run: the delivered state is the best validated one of the fine-tune (or the candidate it started from).
        var stageTop1 = report.BestStage >= 0 ? report.Stages[report.BestStage].ValidationTop1!.Value : oneShot!.ValidationTop1!.Value;
        Assert.Equal(Math.Max(stageTop1, report.FineTuneBestTop1!.Value), report.ValidationTop1After!.Value, 9);
        // One continuous series of iterations over every stage and the fine-tune.
        Assert.Equal(Enumerable.Range(0, settings.Iterations), observer.Iterations.Select(m => m.Iteration));
        // Phases before the first iteration: the start, then each layer of the analysis; then stages counting up, the
        // fine-tune and the final evaluation. Each measured layer says how many samples it was measured on (the split here).
        var layers = trainer.Layers.Count;
        Assert.Equal(
            [new PhaseUpdate(RunPhase.Evaluating), .. Enumerable.Range(0, layers + 1)
                .Select(k => new PhaseUpdate(RunPhase.Sensitivity, k, layers, k == 0 ? 0 : validation.Count))],
            observer.Phases.TakeWhile(p => p.IterationsDone == 0).Select(p => p.Phase).Take(layers + 2));
        var stagePhases = observer.Phases.Where(p => p.Phase.Phase == RunPhase.Stage).Select(p => p.Phase).ToList();
        Assert.Equal(Enumerable.Range(1, report.Stages.Count), stagePhases.Select(p => p.Step));
        Assert.All(stagePhases, p => Assert.InRange(p.Step, 1, p.Steps));
        Assert.Equal([RunPhase.FineTune, RunPhase.Evaluating], observer.Phases.Select(p => p.Phase.Phase).TakeLast(2));
        // The deliverable only ever grows, from the starting model to what is delivered.
        Assert.Equal(1, observer.Deliverables[0]);
        Assert.Equal(observer.Deliverables.Order(), observer.Deliverables);
        Assert.Equal(outcome.Compression, observer.Deliverables[^1], 6);
        Assert.Equal(new EvaluationSplits(ValidationSplit.TrainingHoldout, validation.Count, TestSplit.Whole, test.Count), Assert.Single(observer.Splits));
        Assert.Equal((ValidationSplit.TrainingHoldout, TestSplit.Whole, (int)test.Count), (report.ValidationSplit, report.TestSplit, report.TestSamples));
        // Exact zeros: the module holds W ⊙ T.
        Assert.Equal(outcome.Kept, trainer.Layers.Sum(l => Values(l.Weight.Parameter).Count(v => v != 0)
            + (l.Bias is null ? Values(model.get_parameter(l.Layer.BiasParameter!)!).Count(v => v != 0) : Values(l.Bias.Parameter).Count(v => v != 0))));
    }

    [Fact]
    public void EachStageKeepsItsRateWhileMasksUpdateThenAnnealsItTowardsZeroAndTheNextStageRestartsIt()
    {
        using var model = TrainedModel();
        var settings = BudgetSettings(drop: 1.0);
        using var trainer = new SurgeryTrainer(model, PrunableLayers.Discover(model), settings);
        var observer = new RecordingObserver();

        var report = new BudgetSearch(trainer, settings, settings.Target!).Run(train, validation, test, observer).Search!;

        var rate = observer.Iterations.ToDictionary(m => m.Iteration, m => m.LearningRate);
        var fineTune = new SearchStageReport { Start = report.FineTuneStart!.Value, End = settings.Iterations };
        foreach (var stage in report.Stages.Append(fineTune))
        {
            var frozenFrom = stage == fineTune ? stage.Start : stage.Start + (stage.End - stage.Start) / 2;
            Assert.Equal(settings.LearningRate!.Value, rate[stage.Start], 12);
            Assert.All(Enumerable.Range(stage.Start, frozenFrom - stage.Start), i => Assert.Equal(settings.LearningRate!.Value, rate[i], 12));
            Assert.All(Enumerable.Range(frozenFrom + 1, stage.End - frozenFrom - 1), i => Assert.True(rate[i] < rate[i - 1]));
            Assert.True(rate[stage.End - 1] < 0.01 * settings.LearningRate!.Value, $"stage ending at {stage.End}: rate {rate[stage.End - 1]}");
        }
    }

    [Theory]
    [InlineData(0.9883, 6000, 0.00139)] // LeNet-5's 6,000 validation images: 0.14 points, above a 0.1-point budget
    [InlineData(0.9, 256, 0.01875)]
    [InlineData(1.0, 256, 0)]
    public void TheStandardErrorOfAValidationTop1FollowsTheSampleCount(double top1, long count, double error)
    {
        Assert.Equal(error, BudgetSearch.StandardError(top1, count), 5);
    }

    [Fact]
    public void WarnsWhenTheBudgetIsFinerThanTheValidationSplitCanMeasure()
    {
        using var noisy = WithRandomLabels(validation, share: 0.1, seed: 3);
        foreach (var (drop, warns) in new[] { (0.5, true), (20.0, false) })
        {
            using var model = TrainedModel();
            var settings = BudgetSettings(iterations: 100, drop: drop);
            using var trainer = new SurgeryTrainer(model, PrunableLayers.Discover(model), settings);
            var observer = new RecordingObserver();
            var report = new BudgetSearch(trainer, settings, settings.Target!).Run(train, noisy, test, observer).Search!;

            var error = BudgetSearch.StandardError(report.ValidationTop1Before, report.ValidationSamples);
            Assert.Equal(warns, drop / 100 < error);
            Assert.Equal(warns, observer.Events.Any(e => e.Kind == SurgeryEventKind.Warning && e.Message.Contains("target.validation")));
        }
    }

    [Theory]
    // Best hit, its validation top-1, least miss (budget 0.5 points from 99.13%, floor 98.63%) -> next target.
    [InlineData(1.7, 0.9872, null, 3.4)]        // no miss yet: doubling
    [InlineData(3.1, 0.9932, 5.6, 4.17)]        // a miss: between the best hit and the least miss
    [InlineData(5.2, 0.9900, 5.6, 7.63)]        // converged 0.37 points above the floor: climbs again past the old miss
    [InlineData(5.2, 0.9880, 5.6, null)]        // converged 0.17 points above it, less than half the budget: done
    public void TheSearchBisectsAfterAMissAndClimbsAgainWhenItConvergesWithHalfTheBudgetLeft(
        double good, double goodTop1, double? failed, double? expected)
    {
        var report = new SearchReport
        {
            ValidationTop1Before = 0.9913,
            GoodCompression = good,
            GoodValidationTop1 = goodTop1,
            FailedCompression = failed,
            Stages = [new SearchStageReport()],
        };

        var target = BudgetSearch.NextTarget(report, budget: 0.005);

        Assert.Equal(expected, target is { } t ? Math.Round(t, 2) : null);
        // Climbing again forgets the miss, so the next miss bounds the search anew.
        Assert.Equal(expected > failed ? null : failed, report.FailedCompression);
    }

    [Fact]
    public void ATighterBudgetNeverEndsMoreCompressedThanItsValidationAllows()
    {
        using var model = TrainedModel();
        var settings = BudgetSettings(drop: 0) with { Target = new SurgeryTarget { MaxAccuracyDrop = 0, MinCompression = 1e5 } };
        using var trainer = new SurgeryTrainer(model, PrunableLayers.Discover(model), settings);
        var outcome = new BudgetSearch(trainer, settings, settings.Target!).Run(train, validation, test, new RecordingObserver());

        var report = outcome.Search!;
        Assert.True(report.ValidationTop1After >= report.ValidationTop1Before);
        Assert.False(report.BudgetMet);
        Assert.Contains("minCompression", report.BudgetProblem);
    }

    [Fact]
    public void LogsEachLayersSensitivityBeforeTheFirstStageAndACancelStopsTheAnalysisBetweenLayers()
    {
        var settings = BudgetSettings(iterations: 200);
        using var model = TrainedModel();
        using var trainer = new SurgeryTrainer(model, PrunableLayers.Discover(model), settings);
        var start = trainer.Evaluate(validation).Top1;

        // A cancel that arrives once the first layer is measured stops before the second and before any training.
        using var cancel = new CancellationTokenSource();
        var stopped = new RecordingObserver { OnEachEvent = e => { if (e.Message.StartsWith("sensitivity of layer fc1")) cancel.Cancel(); } };
        var outcome = new BudgetSearch(trainer, settings, settings.Target!).Run(train, validation, test, stopped, cancellationToken: cancel.Token);
        Assert.True(outcome.Cancelled);
        Assert.Empty(stopped.Iterations);
        Assert.Equal(0, trainer.Iteration);
        Assert.DoesNotContain(stopped.Events, e => e.Message.Contains("layer fc2"));
        Assert.Equal(start, trainer.Evaluate(validation).Top1); // the model is left as it was

        var observer = new RecordingObserver();
        new BudgetSearch(trainer, settings, settings.Target!).Run(train, validation, test, observer);
        var messages = observer.Events.Select(e => e.Message).ToList();
        foreach (var m in messages) output.WriteLine(m);
        Assert.Matches(@"^starting model: .*measuring 2 layers at kept shares .* \(up to 18 evaluations of \d+ samples", messages[0]);
        var fc1 = messages.FindIndex(m => m.StartsWith("sensitivity of layer fc1 (")); // each layer as it is measured
        var fc2 = messages.FindIndex(m => m.StartsWith("sensitivity of layer fc2 ("));
        var stage = messages.FindIndex(m => m.StartsWith("stage 1: aiming"));
        Assert.True(0 < fc1 && fc1 < fc2 && fc2 < stage, string.Join(" | ", messages));
    }

    [Fact]
    public void ResumesMidStageFromACheckpointAndEndsAsAnUninterruptedSearch()
    {
        var settings = BudgetSettings(iterations: 400);
        float[] Delivered(SurgeryTrainer t) => t.Layers.SelectMany(l => Values(l.Weight.Parameter)).ToArray();

        using var straightModel = TrainedModel();
        using var straight = new SurgeryTrainer(straightModel, PrunableLayers.Discover(straightModel), settings);
        var straightOutcome = new BudgetSearch(straight, settings, settings.Target!).Run(train, validation, test, new RecordingObserver());

        using var firstModel = TrainedModel();
        var checkpoint = new MemoryStream();
        int stoppedAt;
        using (var first = new SurgeryTrainer(firstModel, PrunableLayers.Discover(firstModel), settings))
        {
            using var cts = new CancellationTokenSource();
            var search = new BudgetSearch(first, settings, settings.Target!);
            var partial = search.Run(train, validation, test, new RecordingObserver { OnEachIteration = m => { if (m.Iteration == 130) cts.Cancel(); } },
                cancellationToken: cts.Token);
            Assert.True(partial.Cancelled);
            Assert.Null(partial.Search!.Stages[^1].Accepted); // stopped inside a stage
            stoppedAt = first.Iteration;
            search.SaveCheckpoint(checkpoint);
        }
        checkpoint.Position = 0;
        using var resumedModel = TrainedModel();
        using var resumed = new SurgeryTrainer(resumedModel, PrunableLayers.Discover(resumedModel), settings);
        var resumedSearch = new BudgetSearch(resumed, settings, settings.Target!);
        resumedSearch.LoadCheckpoint(checkpoint);
        var observer = new RecordingObserver();
        var outcome = resumedSearch.Run(train, validation, test, observer);

        Assert.Equal(stoppedAt, observer.Iterations[0].Iteration);
        Assert.Equal(Enumerable.Range(stoppedAt, settings.Iterations - stoppedAt), observer.Iterations.Select(m => m.Iteration));
        Assert.Equal(straightOutcome.Kept, outcome.Kept);
        Assert.Equal(Delivered(straight), Delivered(resumed));
        Assert.Equal(straightOutcome.Search!.Stages.Select(s => s.Compression), outcome.Search!.Stages.Select(s => s.Compression));
    }
}
