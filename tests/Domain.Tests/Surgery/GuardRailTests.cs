using SurgeryService.Domain.Datasets;
using SurgeryService.Domain.Surgery;
using Xunit.Abstractions;
using static SurgeryService.Domain.Tests.Surgery.Fixtures;
using static TorchSharp.torch;

namespace SurgeryService.Domain.Tests.Surgery;

public sealed class GuardRailTests(ITestOutputHelper output)
{
    /// <summary>Blobs whose inputs are multiplied by <paramref name="scale"/>, as raw 0-255 pixels would be.</summary>
    private static (TensorDataset Train, TensorDataset Test) Unscaled(double scale)
    {
        var (train, test) = Blobs();
        using (train)
        using (test)
        {
            return (new TensorDataset(train.Inputs * scale, train.Labels.alias(), 4), new TensorDataset(test.Inputs * scale, test.Labels.alias(), 4));
        }
    }

    private static Mlp TrainedModel(TensorDataset train, TensorDataset test)
    {
        manual_seed(11);
        var model = new Mlp(32, 24, 4);
        using var dense = new SurgeryTrainer(model, [], Settings(200) with { CRate = null });
        dense.Run(train, test, new RecordingObserver());
        return model;
    }

    [Fact]
    public void DivergenceIsRolledBackWithATenthOfTheLearningRateAndTheRunRecovers()
    {
        var (train, test) = Unscaled(10);
        using var _train = train;
        using var _test = test;
        using var model = TrainedModel(train, test);
        var settings = Settings(300) with { CRate = 1, LearningRate = 2, EvalInterval = 50, Momentum = 0.9 };
        using var trainer = new SurgeryTrainer(model, PrunableLayers.Discover(model), settings);
        var observer = new RecordingObserver();

        var outcome = trainer.Run(train, test, observer);

        var rollbacks = observer.Events.Where(e => e.Kind == SurgeryEventKind.Rollback).ToList();
        foreach (var e in rollbacks) output.WriteLine($"{e.Iteration}: {e.Message}");
        Assert.NotEmpty(rollbacks);
        Assert.Equal(rollbacks.Count, trainer.Rollbacks);
        Assert.Contains("rolled back", rollbacks[0].Message);
        Assert.True(double.IsFinite(observer.Iterations[^1].Loss));
        Assert.True(outcome.After!.Top1 > 0.5, $"top-1 after recovery {outcome.After.Top1:P1}");
        // The series goes on: no iteration is repeated or skipped by a rollback.
        Assert.Equal(Enumerable.Range(0, 300), observer.Iterations.Select(m => m.Iteration));
        // Later iterations ran at a tenth (or less) of the rate.
        Assert.True(observer.Iterations[^1].LearningRate <= 0.2 + 1e-12);
    }

    [Fact]
    public void DivergenceThatCannotBeRecoveredFailsWithTheCauseAndTheFix()
    {
        var (train, test) = Unscaled(255);
        using var _train = train;
        using var _test = test;
        manual_seed(11);
        using var model = new Mlp(32, 24, 4);
        var settings = Settings(400) with { CRate = 1, LearningRate = 5000, EvalInterval = 50, WeightDecay = 0 };
        using var trainer = new SurgeryTrainer(model, PrunableLayers.Discover(model), settings);
        var observer = new RecordingObserver();

        var error = Assert.Throws<TrainingDivergedException>(() => trainer.Run(train, test, observer));

        output.WriteLine(error.Message);
        Assert.Equal("Training diverged", error.Title);
        Assert.Contains("learningRate", error.Message);
        Assert.Contains("preprocessing.scale", error.Message); // inputs in [-700, 700] look unscaled
        Assert.Equal(DivergenceGuard.MaxRollbacks, trainer.Rollbacks);
    }

    [Fact]
    public void AFirstPruneThatKeepsUnderOnePercentOfALayerIsNamedBeforeTheFirstIteration()
    {
        var (train, test) = Blobs();
        using var _train = train;
        using var _test = test;
        using var model = TrainedModel(train, test);
        var settings = Settings(5) with { Layers = [new LayerSettings { Pattern = "fc1", CRate = 6 }] };
        using var trainer = new SurgeryTrainer(model, PrunableLayers.Discover(model), settings);
        var observer = new RecordingObserver();

        trainer.Run(train, test, observer);

        var warning = Assert.Single(observer.Events, e => e.Kind == SurgeryEventKind.Warning);
        output.WriteLine(warning.Message);
        Assert.Equal(0, warning.Iteration);
        Assert.StartsWith("layer fc1: its first prune keeps", warning.Message);
        Assert.Contains("cRate", warning.Message);
    }
}
