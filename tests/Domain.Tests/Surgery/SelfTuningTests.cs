using SurgeryService.Domain.Datasets;
using SurgeryService.Domain.Surgery;
using Xunit.Abstractions;
using static SurgeryService.Domain.Tests.Surgery.Fixtures;
using static TorchSharp.torch;

namespace SurgeryService.Domain.Tests.Surgery;

/// <summary>Issue 23: a model nobody tuned the defaults for (the learning-rate probe, the one-shot candidate, honest outcomes, Adam).</summary>
public sealed class SelfTuningTests(ITestOutputHelper log) : TrainedMlpTests(log)
{
    private static TensorDataset Scaled(TensorDataset data, double factor) =>
        new(data.Inputs.mul(factor), data.Labels.clone(), data.ClassCount);

    private ProbeReport Probe(Mlp model, TensorDataset fit, TensorDataset held, OptimizerChoice optimizer = OptimizerChoice.Sgd)
    {
        var settings = Settings(2000) with { CRate = null, LearningRate = null, Optimizer = optimizer, WeightDecay = 5e-4, Momentum = 0.9 };
        using var trainer = new SurgeryTrainer(model, PrunableLayers.Discover(model), settings);
        var observer = new RecordingObserver();
        var before = trainer.Evaluate(held);
        var report = LearningRateProbe.Run(trainer, fit, held, before, 100, observer);
        foreach (var e in observer.Events) output.WriteLine(e.Message);
        // The probe leaves the trainer as it found it.
        Assert.Equal(0, trainer.Iteration);
        Assert.Equal(before.Top1, trainer.Evaluate(held).Top1, 12);
        return report;
    }

    [Fact]
    public void TheProbePicksASmallRateForRawPixelInputsAndANormalOneForScaledInputs()
    {
        using var scaledModel = TrainedModel();
        var scaled = Probe(scaledModel, train, validation);

        // The same function on inputs 255 times larger (a model fed raw 0-255 pixels): fc1's weights are 255 times
        // smaller, so their gradients are 255 times larger and one SGD step moves them 255^2 times as far.
        using var rawModel = TrainedModel();
        using (no_grad()) rawModel.get_parameter("fc1.weight")!.div_(255);
        using var rawTrain = Scaled(train, 255);
        using var rawValidation = Scaled(validation, 255);
        var raw = Probe(rawModel, rawTrain, rawValidation);

        Assert.True(scaled.AnyHeld && raw.AnyHeld);
        Assert.InRange(scaled.Chosen, 1e-3, 0.1);
        Assert.True(raw.Chosen <= scaled.Chosen / 100, $"raw {raw.Chosen}, scaled {scaled.Chosen}");
        // Every rate above the choice was tried and failed; the choice is the first that held.
        Assert.All(raw.Trials.SkipLast(1), t => Assert.False(t.Held));
        Assert.Equal(raw.Chosen, raw.Trials[^1].LearningRate);
    }

    [Fact]
    public void ABudgetJobWithNoLearningRateTrainsAtTheProbesChoiceAndReportsIt()
    {
        using var model = TrainedModel();
        var settings = Settings(600) with { CRate = null, LearningRate = null, EvalInterval = 50, Target = new SurgeryTarget { MaxAccuracyDrop = 1 } };
        using var trainer = new SurgeryTrainer(model, PrunableLayers.Discover(model), settings);
        var observer = new RecordingObserver();

        var report = new BudgetSearch(trainer, settings, settings.Target!).Run(train, validation, test, observer).Search!;

        var probe = Assert.IsType<ProbeReport>(report.LearningRateProbe);
        Assert.Equal(probe.Chosen, report.LearningRate);
        Assert.All(report.Stages, s => Assert.Equal(probe.Chosen, s.LearningRate!.Value, 12));
        Assert.Equal(probe.Chosen, observer.Iterations[report.Stages[0].Start].LearningRate, 12);
        Assert.Contains(observer.Events, e => e.Kind == SurgeryEventKind.Probe && e.Message.Contains("chosen"));
        // The probe's iterations are not the run's: the series starts at 0 and has no gaps or repeats.
        Assert.Equal(Enumerable.Range(0, settings.Iterations), observer.Iterations.Select(m => m.Iteration));
    }

    [Fact]
    public void AFixedRunWithNoLearningRateProbesFirstAndSaysSoInItsPhase()
    {
        using var model = TrainedModel();
        // Two whole epochs of 64 batches: the probe (20 iterations per rate, all in its first epoch) trains on fewer
        // samples than the run (the held tenth is left out), and the run's batches must still cover all of its own.
        var (samples, rest) = Blobs(train: 2048, test: 16);
        using var _samples = samples;
        using var _rest = rest;
        var settings = Settings(128) with { LearningRate = null, EvalInterval = 50 };
        using var trainer = new SurgeryTrainer(model, PrunableLayers.Discover(model), settings);
        var observer = new RecordingObserver();

        trainer.Run(samples, test, observer);

        var probe = Assert.IsType<ProbeReport>(trainer.Probe);
        Assert.Equal(probe.Chosen, observer.Iterations[0].LearningRate, 12);
        // The probe's phase comes before the first iteration, and training follows it.
        var phases = observer.Phases.Select(p => p.Phase.Phase).ToList();
        var probing = phases.IndexOf(RunPhase.Probing);
        Assert.True(probing >= 0, string.Join(", ", phases));
        Assert.Equal(0, observer.Phases[probing].IterationsDone);
        Assert.True(phases.IndexOf(RunPhase.Training) > probing, string.Join(", ", phases));
        Assert.Contains(observer.Events, e => e.Kind == SurgeryEventKind.Probe && e.Message.Contains("chosen"));
    }

    [Fact]
    public void TheOneShotCandidateIsDeliveredWhenEveryStageDiverges()
    {
        using var model = TrainedModel();
        // A rate at which every stage diverges past all its rollbacks (1e4, then 1e3, 1e2, 10).
        var settings = Settings(600) with { CRate = null, LearningRate = 1e4, EvalInterval = 50, Target = new SurgeryTarget { MaxAccuracyDrop = 1 } };
        using var trainer = new SurgeryTrainer(model, PrunableLayers.Discover(model), settings);
        var observer = new RecordingObserver();

        var outcome = new BudgetSearch(trainer, settings, settings.Target!).Run(train, validation, test, observer);

        var report = outcome.Search!;
        foreach (var e in observer.Events) output.WriteLine($"{e.Iteration}: {e.Message}");
        var oneShot = Assert.IsType<OneShotReport>(report.OneShot);
        Assert.True(oneShot.Accepted);
        Assert.NotEmpty(report.Stages);
        Assert.All(report.Stages, s => Assert.NotNull(s.Diverged));
        Assert.StartsWith("one-shot", report.Delivered);
        Assert.Equal(oneShot.Compression!.Value, outcome.Compression, 6);
        Assert.True(report.BudgetMet);
        Assert.True(report.ValidationTop1After >= report.Floor(0.01));
        Assert.NotNull(report.FineTuneDiverged);
    }

    [Fact]
    public void AJobThatDeliversTheStartingModelSaysWhyAndHasNotMetItsBudget()
    {
        // label = (x1 + x2 > 0), computed exactly by a network whose four weights per layer are all +-1: cutting any half
        // of a layer (ties included) costs accuracy, so a budget of 0 points promises nothing without retraining and no
        // stage can keep every answer. Equal small biases keep the function and make every parameter count as kept.
        using var scope = NewDisposeScope();
        TensorDataset Data(int n, int seed)
        {
            using var generator = new Generator((ulong)seed);
            var x = randn(n, 2, generator: generator);
            return new TensorDataset(x, x.sum(1).gt(0).to(int64), 2);
        }
        using var fit = Data(512, 1);
        using var check = Data(256, 2);
        using var held = Data(256, 3);
        using var model = new Mlp(2, 2, 2);
        using (no_grad())
        {
            model.get_parameter("fc1.weight")!.copy_(tensor(new float[] { 1, 1, -1, -1 }).view(2, 2));
            model.get_parameter("fc2.weight")!.copy_(tensor(new float[] { -1, 1, 1, -1 }).view(2, 2));
            model.get_parameter("fc1.bias")!.fill_(1e-3);
            model.get_parameter("fc2.bias")!.fill_(1e-3);
        }
        var settings = Settings(300) with
        {
            CRate = null, EvalInterval = 50, Target = new SurgeryTarget { MaxAccuracyDrop = 0 },
        };
        using var trainer = new SurgeryTrainer(model, PrunableLayers.Discover(model), settings);
        var observer = new RecordingObserver();

        var outcome = new BudgetSearch(trainer, settings, settings.Target!).Run(fit, check, held, observer);

        var report = outcome.Search!;
        foreach (var e in observer.Events) output.WriteLine($"{e.Iteration}: {e.Message}");
        Assert.Equal(1.0, report.ValidationTop1Before);
        Assert.Null(report.OneShot);
        Assert.NotEmpty(report.Stages);
        Assert.Equal(1, outcome.Compression, 6);
        Assert.Equal("starting model", report.Delivered);
        Assert.False(report.BudgetMet);
        Assert.StartsWith("nothing was compressed", report.BudgetProblem);
        Assert.Contains("every stage missed the floor of 100.00 % validation top-1 by at least", report.BudgetProblem);
        Assert.Contains("no layer that can be pruned within the budget without retraining", report.BudgetProblem);
        Assert.Equal(1.0, report.ValidationTop1After);
    }

    [Fact]
    public void AStageThatDivergesAfterAnotherWasWithinBudgetNeverFailsTheJob()
    {
        using var model = TrainedModel();
        var settings = Settings(900) with { CRate = null, EvalInterval = 50, Target = new SurgeryTarget { MaxAccuracyDrop = 1 } };
        using var trainer = new SurgeryTrainer(model, PrunableLayers.Discover(model), settings);
        // The first stage trains at the settings' rate; from the second stage's start on, every loss is NaN.
        var search = new BudgetSearch(trainer, settings, settings.Target!);
        var observer = new RecordingObserver();
        var poisoned = false;
        var poisoning = new RecordingObserver
        {
            OnEachEvent = e =>
            {
                observer.Events.Add(e);
                if (e.Message.StartsWith("stage 2: aiming", StringComparison.Ordinal) && !poisoned)
                {
                    poisoned = true;
                    using (no_grad()) model.get_parameter("fc2.bias")!.fill_(float.NaN);
                }
            },
        };

        var outcome = search.Run(train, validation, test, poisoning);

        var report = outcome.Search!;
        foreach (var e in observer.Events) output.WriteLine($"{e.Iteration}: {e.Message}");
        Assert.True(poisoned);
        Assert.False(outcome.Cancelled);
        Assert.True(report.Stages.Count >= 2);
        Assert.True(report.ValidationTop1After >= report.Floor(0.01));
        Assert.Equal(report.GoodCompression, outcome.Compression, 6);
    }

    [Fact]
    public void AdamKeepsCutWeightsAtExactlyZeroAndNeverSplicesThemBack()
    {
        foreach (var method in new[] { SurgeryMethod.Magnitude, SurgeryMethod.Dns })
        {
            using var model = TrainedModel();
            var settings = Settings(400) with
            {
                Method = method, Optimizer = OptimizerChoice.Adam, LearningRate = 1e-3, WeightDecay = 5e-4, CRate = 1, EvalInterval = 100,
            };
            using var trainer = new SurgeryTrainer(model, PrunableLayers.Discover(model), settings);
            var observer = new RecordingObserver
            {
                // The magnitude method zeroes a cut weight: Adam must leave it at exactly 0 (its gradient and moments are masked).
                OnEachIteration = _ =>
                {
                    if (method != SurgeryMethod.Magnitude) return;
                    foreach (var layer in trainer.Layers)
                    {
                        var dense = Values(layer.Dense);
                        var mask = Values(layer.Mask);
                        Assert.All(Enumerable.Range(0, dense.Length).Where(i => mask[i] == 0), i => Assert.Equal(0f, dense[i]));
                    }
                },
            };

            var outcome = trainer.Run(train, test, observer);

            Assert.True(outcome.Kept < outcome.Total / 2, $"{method}: kept {outcome.Kept} of {outcome.Total}");
            Assert.All(trainer.Layers, l => Assert.Equal(0, l.SplicedTotal));
            Assert.True(outcome.After!.Top1 > 0.8, $"{method}: top-1 {outcome.After.Top1}");
            foreach (var layer in trainer.Layers)
            {
                var mask = Values(layer.Weight.Mask);
                var delivered = Values(layer.Weight.Parameter);
                Assert.All(Enumerable.Range(0, mask.Length).Where(i => mask[i] == 0), i => Assert.Equal(0f, delivered[i]));
            }
        }
    }

    [Fact]
    public void AdamsStateSurvivesACheckpoint()
    {
        using var model = TrainedModel();
        var settings = Settings(200) with { Optimizer = OptimizerChoice.Adam, LearningRate = 1e-3 };
        using var trainer = new SurgeryTrainer(model, PrunableLayers.Discover(model), settings);
        trainer.Run(train, test, new RecordingObserver());
        using var stream = new MemoryStream();
        trainer.SaveCheckpoint(stream);

        using var other = TrainedModel();
        using var resumed = new SurgeryTrainer(other, PrunableLayers.Discover(other), settings);
        stream.Position = 0;
        resumed.LoadCheckpoint(stream);

        var weight = trainer.Layers[0].Weight.Dense;
        var state = trainer.Optimizer.State(weight);
        var resumedState = resumed.Optimizer.State(resumed.Layers[0].Weight.Dense);
        Assert.Equal(3, state.Count);
        Assert.Equal(200.0, resumedState[2].item<double>());
        Assert.Equal(Values(state[0]), Values(resumedState[0]));
        Assert.Equal(Values(state[1]), Values(resumedState[1]));
        Assert.Equal(trainer.BaseLearningRate, resumed.BaseLearningRate);
    }
}
