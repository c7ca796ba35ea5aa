using SurgeryService.Domain;
using SurgeryService.Domain.Surgery;
using TorchSharp;
using static SurgeryService.Domain.Tests.Surgery.Fixtures;
using static TorchSharp.torch;

namespace SurgeryService.Domain.Tests.Surgery;

public sealed class SurgeryTrainerTests : IDisposable
{
    private readonly SurgeryService.Domain.Datasets.TensorDataset train;
    private readonly SurgeryService.Domain.Datasets.TensorDataset test;

    public SurgeryTrainerTests() => (train, test) = Blobs();

    public void Dispose()
    {
        train.Dispose();
        test.Dispose();
    }

    private static Mlp NewModel(int seed = 11)
    {
        manual_seed(seed);
        return new Mlp(32, 24, 4);
    }

    [Fact]
    public void GradientReachesMaskedWeightsWhileModuleSeesZeros()
    {
        using var model = NewModel();
        var settings = Settings(iterations: 1) with { CRate = 1 };
        using var trainer = new SurgeryTrainer(model, PrunableLayers.Discover(model), settings);
        var fc1 = trainer.Layers.Single(l => l.Layer.Name == "fc1");
        var before = Values(fc1.Weight.Dense);

        trainer.Run(train, test, new RecordingObserver());

        var mask = Values(fc1.Weight.Mask);
        var after = Values(fc1.Weight.Dense);
        var deployed = Values(fc1.Weight.Parameter);
        var pruned = Enumerable.Range(0, mask.Length).Where(i => mask[i] == 0).ToList();
        Assert.NotEmpty(pruned);
        Assert.Contains(pruned, i => after[i] != before[i]); // straight-through: pruned entries still learn
        Assert.All(pruned, i => Assert.Equal(0f, deployed[i])); // the module only ever sees W ⊙ T
    }

    [Fact]
    public void MasksStopChangingAfterIterStop()
    {
        using var model = NewModel();
        var observer = new RecordingObserver();
        using var trainer = new SurgeryTrainer(model, PrunableLayers.Discover(model), Settings(60) with { FcIterStop = 20, Gamma = 0 });

        trainer.Run(train, test, observer);

        Assert.All(observer.Iterations.Where(m => m.Iteration < 20), m => Assert.All(m.Layers, l => Assert.True(l.MaskUpdated)));
        Assert.All(observer.Iterations.Where(m => m.Iteration >= 20), m => Assert.All(m.Layers, l => Assert.False(l.MaskUpdated)));
    }

    [Fact]
    public void MaskUpdatesBecomeRarerAsSigmaDecays()
    {
        using var model = NewModel();
        var observer = new RecordingObserver();
        using var trainer = new SurgeryTrainer(model, PrunableLayers.Discover(model), Settings(400) with { Gamma = 0.05, FcIterStop = 10000 });

        trainer.Run(train, test, observer);

        int Updates(int from, int to) => observer.Iterations.Where(m => m.Iteration >= from && m.Iteration < to)
            .Sum(m => m.Layers.Count(l => l.MaskUpdated));
        // sigma(0..50) >= 0.29, sigma(350..400) <= 0.054: expected ~2x50x0.5 updates early vs ~2x50x0.05 late.
        Assert.True(Updates(0, 50) > 3 * Updates(350, 400), $"early {Updates(0, 50)}, late {Updates(350, 400)}");
    }

    [Fact]
    public void BiasesArePrunedOnlyWhenTheSettingSaysSo()
    {
        using var plainModel = NewModel();
        using var prunedModel = NewModel();
        var settings = Settings(30) with { CRate = 1.5 };

        using var plain = new SurgeryTrainer(plainModel, PrunableLayers.Discover(plainModel), settings);
        using var pruned = new SurgeryTrainer(prunedModel, PrunableLayers.Discover(prunedModel), settings with { PruneBiases = true });
        plain.Run(train, test, new RecordingObserver());
        pruned.Run(train, test, new RecordingObserver());

        Assert.All(plain.Layers, l => Assert.Null(l.Bias));
        Assert.Equal(0, plainModel.named_parameters().Where(p => p.name.EndsWith("bias")).Sum(p => (p.parameter == 0).sum().item<long>()));
        Assert.Contains(pruned.Layers, l => Values(l.Bias!.Mask).Contains(0f));
        Assert.True(prunedModel.named_parameters().Where(p => p.name.EndsWith("bias")).Sum(p => (p.parameter == 0).sum().item<long>()) > 0);
    }

    [Fact]
    public void MagnitudeMethodNeverSplicesAndKeepsPrunedWeightsAtExactZero()
    {
        using var model = NewModel();
        var observer = new RecordingObserver();
        using var trainer = new SurgeryTrainer(model, PrunableLayers.Discover(model),
            Settings(100) with { Method = SurgeryMethod.Magnitude, MagnitudeRounds = 4, CRate = 1.5 });

        var outcome = trainer.Run(train, test, observer);

        Assert.All(observer.Iterations, m => Assert.All(m.Layers, l => Assert.Equal(0, l.Spliced)));
        Assert.Equal(4, observer.Iterations.Count(m => m.Layers[0].MaskUpdated)); // one prune per round
        Assert.True(outcome.Kept < outcome.Total);
        foreach (var layer in trainer.Layers)
        {
            var mask = Values(layer.Weight.Mask);
            var dense = Values(layer.Weight.Dense);
            Assert.All(Enumerable.Range(0, mask.Length).Where(i => mask[i] == 0), i => Assert.Equal(0f, dense[i]));
        }
        // Kept counts never grow: no splicing.
        var kept = observer.Iterations.Select(m => m.Kept).ToList();
        Assert.True(kept.Zip(kept.Skip(1)).All(p => p.Second <= p.First));
    }

    [Fact]
    public void ConvThenFcPhasesLeaveFullyConnectedMasksAloneInTheFirstHalf()
    {
        using var model = NewModel();
        var observer = new RecordingObserver();
        var layers = PrunableLayers.Discover(model).Select((l, i) => i == 0 ? l with { Kind = LayerKind.Convolution } : l).ToList();
        using var trainer = new SurgeryTrainer(model, layers, Settings(40) with { Phases = PruningPhases.ConvThenFc, Gamma = 0 });

        trainer.Run(train, test, observer);

        Assert.All(observer.Iterations.Where(m => m.Iteration < 20), m => Assert.False(m.Layers[1].MaskUpdated));
        Assert.All(observer.Iterations.Where(m => m.Iteration >= 20), m => Assert.False(m.Layers[0].MaskUpdated));
        Assert.All(observer.Iterations.Where(m => m.Iteration >= 20), m => Assert.True(m.Layers[1].MaskUpdated));
    }

    [Fact]
    public void RunResumedFromCheckpointEndsIdenticalToUninterruptedRun()
    {
        var settings = Settings(60) with { WeightDecay = 1e-4, Momentum = 0.9, PruneBiases = true };

        using var straightModel = NewModel();
        using var straight = new SurgeryTrainer(straightModel, PrunableLayers.Discover(straightModel), settings);
        straight.Run(train, test, new RecordingObserver());

        using var checkpoint = new MemoryStream();
        using (var firstModel = NewModel())
        using (var first = new SurgeryTrainer(firstModel, PrunableLayers.Discover(firstModel), settings))
        using (var cts = new CancellationTokenSource())
        {
            var outcome = first.Run(train, test, new RecordingObserver { OnEachIteration = m => { if (m.Iteration == 24) cts.Cancel(); } },
                cancellationToken: cts.Token);
            Assert.True(outcome.Cancelled);
            first.SaveCheckpoint(checkpoint);
        }
        checkpoint.Position = 0;
        using var resumedModel = NewModel(seed: 99); // different initial weights: everything must come from the checkpoint
        using var resumed = new SurgeryTrainer(resumedModel, PrunableLayers.Discover(resumedModel), settings);
        resumed.LoadCheckpoint(checkpoint);
        var observer = new RecordingObserver();
        resumed.Run(train, test, observer);

        Assert.Equal(25, observer.Iterations[0].Iteration);
        for (var k = 0; k < straight.Layers.Count; k++)
        {
            Assert.Equal(Values(straight.Layers[k].Weight.Mask), Values(resumed.Layers[k].Weight.Mask));
            Assert.Equal(Values(straight.Layers[k].Weight.Dense), Values(resumed.Layers[k].Weight.Dense));
            Assert.Equal(Values(straight.Layers[k].Bias!.Mask), Values(resumed.Layers[k].Bias!.Mask));
            Assert.Equal(straight.Layers[k].Kept, resumed.Layers[k].Kept);
            Assert.Equal(straight.Layers[k].PruneBelow, resumed.Layers[k].PruneBelow);
        }
        foreach (var ((name, a), (_, b)) in straightModel.named_parameters().Zip(resumedModel.named_parameters()))
        {
            Assert.True(Values(a).SequenceEqual(Values(b)), $"parameter {name} differs");
        }
    }

    [Fact]
    public void ASnapshotReplacingAnEarlierOneOfTheRunIsWrittenIntoItsArrayAndRestoresItsOwnState()
    {
        using var model = NewModel();
        using var trainer = new SurgeryTrainer(model, PrunableLayers.Discover(model), Settings(20));
        trainer.Run(train, test, new RecordingObserver());
        var first = trainer.Snapshot();
        var firstCopy = first.ToArray();
        using (TorchSharp.torch.no_grad()) trainer.Layers[0].Weight.Dense.add_(TorchSharp.torch.ones_like(trainer.Layers[0].Weight.Dense));
        var weights = Values(trainer.Layers[0].Weight.Dense);

        var second = trainer.Snapshot(replacing: first);

        Assert.Same(first, second);
        Assert.NotEqual(firstCopy, second);
        trainer.Restore(firstCopy);
        Assert.NotEqual(weights, Values(trainer.Layers[0].Weight.Dense));
        trainer.Restore(second);
        Assert.Equal(weights, Values(trainer.Layers[0].Weight.Dense));
        Assert.Equal(20, trainer.Iteration);
        // An array of another size (not a snapshot of this run) is left alone.
        var other = new byte[7];
        Assert.NotSame(other, trainer.Snapshot(replacing: other));
        Assert.Equal(new byte[7], other);
    }

    [Theory]
    [InlineData(OptimizerChoice.Sgd)]
    [InlineData(OptimizerChoice.Adam)]
    public void ASnapshotTakesAtMostTheBytesPerParameterThatASubmitChecksAgainstTheArrayLimit(OptimizerChoice optimizer)
    {
        manual_seed(3);
        using var model = new Mlp(32, 2048, 4); // 75,780 parameters
        using var trainer = new SurgeryTrainer(model, PrunableLayers.Discover(model), Settings(5) with { Optimizer = optimizer, PruneBiases = true });
        trainer.Run(train, test, new RecordingObserver());

        var bytes = trainer.Snapshot().LongLength;
        var parameters = model.parameters().Sum(p => p.numel());

        var perParameter = SurgeryService.Domain.Jobs.JobMemoryEstimate.SnapshotBytesPerParameter(optimizer);
        Assert.InRange(bytes, (perParameter - 0.5) * parameters, perParameter * parameters + SurgeryService.Domain.Jobs.JobMemoryEstimate.SnapshotHeaderBytes);
    }

    [Fact]
    public void RunsTrainingAtOnceOnTwoThreadsEndAsEachEndsAlone()
    {
        // A worker may run several jobs at once: each run's dropout draws from its own generator, never from the other's.
        var settings = Settings(150) with { PruneBiases = true };
        float[][] Parameters(Mlp model) => model.parameters().Select(p => Values(p)).ToArray();

        var alone = new List<float[][]>();
        foreach (var seed in new[] { 1, 2 })
        {
            using var model = NewModel();
            using var trainer = new SurgeryTrainer(model, PrunableLayers.Discover(model), settings with { Seed = seed });
            trainer.Run(train, test, new RecordingObserver());
            alone.Add(Parameters(model));
        }

        using var model1 = NewModel();
        using var model2 = NewModel();
        using var trainer1 = new SurgeryTrainer(model1, PrunableLayers.Discover(model1), settings with { Seed = 1 });
        using var trainer2 = new SurgeryTrainer(model2, PrunableLayers.Discover(model2), settings with { Seed = 2 });
        using var lockstep = new Barrier(2); // both runs start every iteration together, so their steps overlap
        var failures = new List<Exception>();
        var threads = new[] { trainer1, trainer2 }.Select(trainer => new Thread(() =>
        {
            try
            {
                var observer = new RecordingObserver { OnEachIteration = _ => lockstep.SignalAndWait(TimeSpan.FromSeconds(60)) };
                trainer.Run(train, test, observer);
            }
            catch (Exception e)
            {
                lock (failures) failures.Add(e);
                lockstep.RemoveParticipant();
            }
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());

        Assert.Empty(failures);
        Assert.Equal(alone[0], Parameters(model1));
        Assert.Equal(alone[1], Parameters(model2));
        Assert.NotEqual(alone[0], alone[1]); // the seeds differ, so a mix-up of the two streams would show
    }

    [Fact]
    public void CancelledRunStopsBetweenIterationsAndCanStillWriteItsCheckpoint()
    {
        using var model = NewModel();
        using var cts = new CancellationTokenSource();
        using var trainer = new SurgeryTrainer(model, PrunableLayers.Discover(model), Settings(1000));

        var outcome = trainer.Run(train, test,
            new RecordingObserver { OnEachIteration = m => { if (m.Iteration == 9) cts.Cancel(); } }, cancellationToken: cts.Token);
        using var checkpoint = new MemoryStream();
        trainer.SaveCheckpoint(checkpoint);

        Assert.True(outcome.Cancelled);
        Assert.Equal(10, outcome.Iterations);
        Assert.Equal(10, trainer.Iteration);
        Assert.True(checkpoint.Length > 0);
    }

    [Fact]
    public void CheckpointIsOfferedEveryInterval()
    {
        using var model = NewModel();
        var due = new List<int>();
        using var trainer = new SurgeryTrainer(model, PrunableLayers.Discover(model), Settings(25));

        trainer.Run(train, test, new RecordingObserver { OnCheckpoint = t => due.Add(t.Iteration) }, checkpointInterval: 10);

        Assert.Equal([10, 20], due);
    }

    [Fact]
    public void CheckpointFromAnotherModelIsRefused()
    {
        using var model = NewModel();
        using var trainer = new SurgeryTrainer(model, PrunableLayers.Discover(model), Settings(5));
        using var checkpoint = new MemoryStream();
        trainer.SaveCheckpoint(checkpoint);
        checkpoint.Position = 0;
        using var other = new Mlp(32, 16, 4);
        using var otherTrainer = new SurgeryTrainer(other, PrunableLayers.Discover(other), Settings(5));

        var error = Assert.Throws<SurgeryException>(() => otherTrainer.LoadCheckpoint(checkpoint));
        Assert.Contains("checkpoint", error.Message);
    }

    [Fact]
    public void SurgeryPrunesASmallNetworkHardAndKeepsItsAccuracy()
    {
        using var model = NewModel();
        using (var dense = new SurgeryTrainer(model, [], Settings(300)))
        {
            var denseOutcome = dense.Run(train, test, new RecordingObserver());
            Assert.True(denseOutcome.After!.Top1 > 0.95, $"dense accuracy {denseOutcome.After.Top1}");
        }
        var observer = new RecordingObserver();
        using var surgery = new SurgeryTrainer(model, PrunableLayers.Discover(model), Settings(600) with { CRate = 1.5, FcIterStop = 400 });

        var outcome = surgery.Run(train, test, observer);

        Assert.True(outcome.Compression >= 5, $"compression {outcome.Compression:F1}x");
        Assert.True(outcome.After!.Top1 >= 0.95, $"accuracy {outcome.After.Top1}");
        Assert.Contains(observer.Iterations, m => m.Layers.Any(l => l.Spliced > 0)); // splicing happens
        var zeros = model.named_parameters().Where(p => p.name.EndsWith("weight")).Sum(p => (p.parameter == 0).sum().item<long>());
        Assert.Equal(outcome.Total - outcome.Kept, zeros + model.named_parameters()
            .Where(p => p.name.EndsWith("bias")).Sum(p => (p.parameter == 0).sum().item<long>()));
    }

    [Fact]
    public void EvaluationReportsTop5OnlyWithMoreThanFiveClasses()
    {
        var (train4, test4) = Blobs(classes: 4);
        var (train8, test8) = Blobs(classes: 8);
        using var a = train4; using var b = test4; using var c = train8; using var d = test8;
        manual_seed(1);
        using var four = new Mlp(32, 16, 4);
        using var eight = new Mlp(32, 16, 8);

        var m4 = new SurgeryTrainer(four, [], Settings(1)).Evaluate(test4);
        var m8 = new SurgeryTrainer(eight, [], Settings(1)).Evaluate(test8);

        Assert.Null(m4.Top5);
        Assert.NotNull(m8.Top5);
    }

    [Fact]
    public void EvaluationGivesTheSameFiguresInBatchesOfAnySize()
    {
        var (unused, held) = Blobs(test: 300); // 300: not a multiple of 2, 14 or 128, so every run has a short last batch
        using var a = unused; using var b = held;
        manual_seed(1);
        using var model = new Mlp(32, 16, 4);

        var figures = new[] { 1, 7, 64, 500 }.Select(batch =>
        {
            using var trainer = new SurgeryTrainer(model, [], Settings(1) with { BatchSize = batch });
            return (Batch: trainer.Settings.EvaluationBatch, Metrics: trainer.Evaluate(held));
        }).ToList();

        Assert.Equal([2, 14, 128, 128], figures.Select(f => f.Batch));
        foreach (var (_, metrics) in figures.Skip(1))
        {
            Assert.Equal(figures[0].Metrics.Top1, metrics.Top1);
            Assert.Equal(figures[0].Metrics.Loss, metrics.Loss, 5);
        }
    }

    [Fact]
    public void LiveTensorCountStaysFlatOverHundredsOfIterations()
    {
        using var model = NewModel();
        using var trainer = new SurgeryTrainer(model, PrunableLayers.Discover(model), Settings(400) with { EvalInterval = 50 });
        var live = new List<long>();

        trainer.Run(train, test, new RecordingObserver
        {
            OnEachIteration = m => { if (m.Iteration % 50 == 49) live.Add(DisposeScopeManager.Statistics.ThreadTotalLiveCount); },
        });

        Assert.Equal(8, live.Count);
        Assert.True(live.Max() - live.Min() <= 2, "live tensors grew: " + string.Join(", ", live));
    }

    [Theory]
    [InlineData(LearningRatePolicy.Fixed, 9, 0.1)]
    [InlineData(LearningRatePolicy.Step, 9, 0.1 * 0.5 * 0.5)] // floor(9 / 4) = 2 steps
    [InlineData(LearningRatePolicy.Inv, 9, 0.1 * 0.78125)] // lr (1 + gamma iter) ^ -power, power chosen below
    public void LearningRateFollowsCaffePolicies(LearningRatePolicy policy, int iteration, double expected)
    {
        using var model = NewModel();
        var power = Math.Log(1 / 0.78125) / Math.Log(1 + 0.5 * 9); // makes Inv's factor at iteration 9 exactly 0.78125
        var observer = new RecordingObserver();
        using var trainer = new SurgeryTrainer(model, [], Settings(10) with
        {
            LearningRate = 0.1, LrPolicy = policy, LrGamma = 0.5, LrStepSize = 4, LrPower = power,
        });

        trainer.Run(train, test, observer);

        Assert.Equal(expected, observer.Iterations[iteration].LearningRate, 12);
        Assert.Equal(0.1, observer.Iterations[0].LearningRate, 12);
    }

    [Fact]
    public void InvalidSettingsAreRefusedWithTheSettingNamed()
    {
        var settings = new SurgerySettings { BatchSize = 0, Momentum = 1.5, Layers = [new LayerSettings { Pattern = "", CRate = double.NaN }] };

        var error = Assert.Throws<SurgerySettingsException>(settings.Validate);

        Assert.Contains("batchSize", error.Errors.Keys);
        Assert.Contains("momentum", error.Errors.Keys);
        Assert.Contains("layers[0].pattern", error.Errors.Keys);
        Assert.Contains("layers[0].cRate", error.Errors.Keys);
        Assert.Contains("batchSize", error.Message);
        Assert.Equal(ErrorKind.BadInput, error.Kind);
    }

    [Fact]
    public void SettingsRoundTripThroughJson()
    {
        var settings = Settings() with { Method = SurgeryMethod.Magnitude, Layers = [new LayerSettings { Pattern = "fc1", CRate = 2 }] };

        var json = System.Text.Json.JsonSerializer.Serialize(settings);
        var back = System.Text.Json.JsonSerializer.Deserialize<SurgerySettings>(json)!;

        Assert.Contains("\"Magnitude\"", json);
        Assert.Equal(settings with { Layers = [] }, back with { Layers = [] });
        Assert.Equal(settings.Layers, back.Layers);
    }
}
