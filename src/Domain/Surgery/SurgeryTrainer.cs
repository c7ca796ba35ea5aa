using System.Diagnostics;
using TorchSharp;
using Parameter = TorchSharp.Modules.Parameter;
using SurgeryService.Domain.Datasets;
using SurgeryService.Domain.Torch;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace SurgeryService.Domain.Surgery;

/// <summary>
/// The training loop of a surgery (docs/algorithm.md#per-prunable-layer): at the start of every iteration the
/// <see cref="IMaskSchedule"/> says which layers' masks the <see cref="IPruningMethod"/> updates; then forward with
/// <c>W ⊙ T</c>, the loss, backward, the gradient handed to the dense weights, and an <see cref="IOptimizer"/> step at the
/// <see cref="ILearningRateSchedule"/>'s rate. Around the loop: evaluation, events, divergence rollback and checkpoints
/// (<see cref="TrainerCheckpoint"/>). With no prunable layers it is plain dense training.
/// Runs synchronously on the calling thread (TorchSharp's dispose scopes are thread-static).
/// </summary>
public sealed class SurgeryTrainer : ICheckpointSource, IDisposable
{
    private readonly Module<Tensor, Tensor> _model;
    private readonly SurgerySettings _settings;
    private readonly List<MaskedLayer> _layers = [];
    private readonly List<(string Name, Parameter Parameter)> _plain = [];
    private readonly IOptimizer _optimizer;
    private readonly Generator _random;
    private Tensor? _permutation;
    private long _permutationEpoch = -1;
    private byte[]? _lastGood;
    private float _inputMin;
    private float _inputMax;

    public SurgeryTrainer(Module<Tensor, Tensor> model, IReadOnlyList<PrunableLayer> layers, SurgerySettings settings)
    {
        settings.Validate();
        Torch.ConvolutionCheck.Ensure();
        _settings = settings;
        Device = ResolveDevice(settings.Device);
        _model = model;
        _model.to(Device);
        Method = PruningMethods.For(settings);
        _optimizer = Optimizers.For(settings);
        BaseLearningRate = settings.LearningRate ?? SurgerySettings.FallbackLearningRate;

        var parameters = _model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        Parameter Find(string name) => parameters.TryGetValue(name, out var p)
            ? p
            : throw new SurgeryException("Unknown layer", $"the model has no parameter named '{name}'", ErrorKind.BadInput);

        var masked = new HashSet<string>();
        foreach (var layer in layers.Where(l => !l.Embedding || settings.PruneEmbeddings))
        {
            var bias = layer.BiasParameter is null ? null : Find(layer.BiasParameter);
            _layers.Add(new MaskedLayer(layer, Find(layer.WeightParameter), bias, settings.PruneBiases,
                LayerRule.For(layer, settings)));
            masked.Add(layer.WeightParameter);
            if (bias is not null && settings.PruneBiases) masked.Add(layer.BiasParameter!);
        }
        var biases = layers.Where(l => l.BiasParameter is not null).Select(l => l.BiasParameter!)
            .Concat(parameters.Keys.Where(n => n.EndsWith("bias", StringComparison.OrdinalIgnoreCase)))
            .ToHashSet();
        foreach (var layer in _layers)
        {
            foreach (var m in layer.Masked)
            {
                // Step 5: dL/d(W ⊙ T) reaches every entry of the dense W (straight-through), unless the method cuts for good.
                _optimizer.Add(m.Dense, m.Gradient, m == layer.Bias,
                    Method.Splices && _optimizer.TrainsCutWeights ? null : () => m.Mask);
            }
        }
        foreach (var (name, parameter) in parameters.Where(p => !masked.Contains(p.Key) && p.Value.requires_grad))
        {
            _plain.Add((name, parameter));
            _optimizer.Add(parameter, () => parameter.grad, biases.Contains(name));
        }
        foreach (var layer in _layers)
        {
            Method.Start(layer);
        }
        _random = new Generator(0); // a CPU generator whatever the device: TorchSharp makes no other kind
    }

    public Device Device { get; }

    /// <summary>How masks follow from weights in this run (the settings' method).</summary>
    public IPruningMethod Method { get; }

    /// <summary>Iterations completed so far (the next iteration's index).</summary>
    public int Iteration { get; internal set; }

    public IReadOnlyList<MaskedLayer> Layers => _layers;

    /// <summary>
    /// The rate the learning-rate policies start from: the settings' <c>learningRate</c>, or the
    /// <see cref="LearningRateProbe"/>'s choice when they name none (saved in checkpoints).
    /// </summary>
    public double BaseLearningRate { get; internal set; }

    /// <summary>Times training diverged and was rolled back to its last good state with a tenth of the learning rate.</summary>
    public int Rollbacks { get; internal set; }

    /// <summary>The rollbacks' factor on the learning rate (a tenth per rollback).</summary>
    internal double LearningRateScale { get; set; } = 1;

    internal DivergenceGuard? Guard { get; set; }

    internal Module<Tensor, Tensor> Model => _model;

    internal SurgerySettings Settings => _settings;

    internal IOptimizer Optimizer => _optimizer;

    /// <summary>The trainable parameters outside the masked layers, by name.</summary>
    internal IReadOnlyList<(string Name, Parameter Parameter)> Plain => _plain;

    /// <summary>The paper's fixed-threshold mode: the method's own schedule and the user's learning-rate policy.</summary>
    public TrainingPlan FixedPlan() =>
        new(Method.Schedule(_settings, _layers.Select(l => l.Layer).ToList()), new CaffeLearningRate(_settings, BaseLearningRate), JudgesAccuracy: true);

    /// <summary>
    /// Trains from <see cref="Iteration"/> to the settings' iteration count, or until cancelled (checked between
    /// iterations), with the paper's fixed thresholds. Afterwards the module's parameters hold <c>W ⊙ T</c> with exact
    /// zeros. Divergence is rolled back (see <see cref="DivergenceGuard"/>); when it cannot be, a
    /// <see cref="SurgeryException"/> names the cause.
    /// </summary>
    public SurgeryOutcome Run(TensorDataset train, TensorDataset test, ISurgeryObserver observer,
        int checkpointInterval = 0, CancellationToken cancellationToken = default)
    {
        if (train.Count == 0) throw new SurgeryException("Bad dataset", "the training set is empty");
        observer.OnSplits(new EvaluationSplits(null, 0, TestSplit.Whole, test.Count));
        if (Iteration == 0) observer.OnPhase(new PhaseUpdate(RunPhase.Evaluating));
        var before = Iteration == 0 && test.Count > 0 ? Evaluate(test) : null;
        if (before is not null) observer.OnEvaluation(before);
        if (Iteration == 0) WarnAboutFirstPrunes(observer);
        // Before the guard keeps its last good state: a rollback goes back to the probe's rate, not the fallback.
        if (Iteration == 0 && _settings.LearningRate is null) ProbeForFixedRun(train, observer, cancellationToken);
        StartGuard(train, before);

        observer.OnPhase(new PhaseUpdate(RunPhase.Training));
        var cancelled = RunUntil(_settings.Iterations, FixedPlan(), train, test, observer, checkpointInterval, this, cancellationToken);

        foreach (var layer in _layers) layer.WriteDeliveredWeights();
        EvaluationMetrics? after = null;
        if (!cancelled && test.Count > 0)
        {
            observer.OnPhase(new PhaseUpdate(RunPhase.Evaluating));
            after = Evaluate(test);
            observer.OnEvaluation(after);
        }
        return new SurgeryOutcome(Iteration, cancelled, before, after, LayerResults());
    }

    /// <summary>
    /// Trains until iteration <paramref name="end"/>: evaluations on <paramref name="evaluation"/> every eval interval,
    /// checkpoints of <paramref name="checkpoint"/> every checkpoint interval, divergence checks after every iteration
    /// and evaluation. <paramref name="interrupt"/>, asked after every iteration (its evaluation and checkpoint done),
    /// ends the run there when it answers true, so the caller can follow a new plan. Returns whether it was cancelled.
    /// </summary>
    internal bool RunUntil(int end, TrainingPlan plan, TensorDataset train, TensorDataset evaluation, ISurgeryObserver observer,
        int checkpointInterval, ICheckpointSource checkpoint, CancellationToken cancellationToken, Func<bool>? interrupt = null)
    {
        while (Iteration < end)
        {
            if (cancellationToken.IsCancellationRequested) return true;
            var metrics = Step(train, plan);
            observer.OnIteration(metrics);
            var divergence = Guard?.OnIteration(metrics.Iteration, metrics.Loss);
            if (divergence is null && Iteration % _settings.EvalInterval == 0 && Iteration < end && evaluation.Count > 0)
            {
                var evaluated = Evaluate(evaluation);
                observer.OnEvaluation(evaluated);
                divergence = Guard?.OnEvaluation(evaluated, KeptShare(), plan.JudgesAccuracy);
                if (divergence is null) _lastGood = Snapshot(_lastGood);
            }
            if (divergence is not null) RollBack(divergence, plan, observer);
            if (checkpointInterval > 0 && Iteration % checkpointInterval == 0)
            {
                observer.OnCheckpointDue(checkpoint);
            }
            if (interrupt?.Invoke() == true) return false;
        }
        return false;
    }

    /// <summary>
    /// Arms divergence detection from the starting model's evaluation (or, on a resumed run, from the baseline the
    /// checkpoint kept) and keeps the current state as the last good one.
    /// </summary>
    internal void StartGuard(TensorDataset train, EvaluationMetrics? start)
    {
        using (var scope = NewDisposeScope())
        {
            _inputMin = train.Inputs.min().item<float>();
            _inputMax = train.Inputs.max().item<float>();
        }
        if (start is not null) Guard = new DivergenceGuard(start.Loss, start.Top1, train.ClassCount);
        _lastGood = Snapshot(_lastGood);
    }

    /// <summary>
    /// The paper's mode with no learningRate: the probe judges each rate on a seeded tenth of the training samples
    /// (at most 2,000; the test split never chooses a setting), training on the others, from the dense start, before the
    /// first iteration.
    /// </summary>
    private void ProbeForFixedRun(TensorDataset train, ISurgeryObserver observer, CancellationToken cancellationToken)
    {
        if (train.Count < 2) return;
        var (rest, held) = train.Split((int)Math.Clamp(train.Count / 10, 1, 2000), SurgeryTarget.ValidationSplitSeed);
        using var _rest = rest;
        using var _held = held;
        var start = Evaluate(held);
        var probe = LearningRateProbe.Run(this, rest, held, start, LearningRateProbe.IterationsFor(_settings.Iterations),
            observer, cancellationToken);
        BaseLearningRate = probe.Chosen;
        Probe = probe;
    }

    /// <summary>What the learning-rate probe tried and chose, when this run probed.</summary>
    public ProbeReport? Probe { get; internal set; }

    /// <summary>
    /// One iteration of the learning-rate probe with <paramref name="plan"/>: trains like <see cref="Step"/> but reports to
    /// no observer; the probe restores the state afterwards. Returns the batch's loss.
    /// </summary>
    internal double ProbeStep(TensorDataset train, TrainingPlan plan) => Step(train, plan).Loss;

    /// <summary>Guard rail: a layer whose first prune would keep under 1% of it is named before the first iteration.</summary>
    private void WarnAboutFirstPrunes(ISurgeryObserver observer)
    {
        foreach (var layer in _layers)
        {
            var cut = layer.PruneBelow;
            var share = layer.ShareAbove(cut);
            if (share >= 0.01) continue;
            observer.OnEvent(new SurgeryEvent(Iteration, SurgeryEventKind.Warning,
                $"layer {layer.Layer.Name}: its first prune keeps {share:P2} of {layer.Total:N0} weights " +
                $"(cRate {layer.Rule.CRate:0.###} puts the threshold at {cut:g3}); lower its cRate, or name no cRate to let " +
                "budget mode choose the thresholds"));
        }
    }

    /// <summary>
    /// Restores the last good state (the start, or the last evaluation that passed) with a tenth of the learning rate;
    /// the iteration count goes on, so the metric series stays one series. After <see cref="DivergenceGuard.MaxRollbacks"/>
    /// rollbacks the run fails with the cause and the fix.
    /// </summary>
    private void RollBack(Divergence divergence, TrainingPlan plan, ISurgeryObserver observer)
    {
        var lr = plan.LearningRate.At(divergence.Iteration) * LearningRateScale;
        var cause = divergence.Describe(lr, _inputMin, _inputMax, budgetMode: !plan.JudgesAccuracy);
        if (Rollbacks >= DivergenceGuard.MaxRollbacks || _lastGood is null)
        {
            throw new TrainingDivergedException(
                $"{cause} (after {Rollbacks} rollbacks to the last good state, each with a tenth of the learning rate)",
                plan.LearningRate.At(divergence.Iteration));
        }
        // The snapshot holds the weights to go back to; the count of rollbacks and the rate's scale go on from now.
        var (iteration, rollbacks, scale) = (Iteration, Rollbacks, LearningRateScale);
        Restore(_lastGood);
        Iteration = iteration;
        Rollbacks = rollbacks + 1;
        LearningRateScale = scale / 10;
        Guard?.Reset();
        observer.OnEvent(new SurgeryEvent(iteration, SurgeryEventKind.Rollback,
            $"{cause}; rolled back to the last good state, learning rate now x{LearningRateScale:g3} (rollback {Rollbacks} of {DivergenceGuard.MaxRollbacks})"));
    }

    /// <summary>Kept share of the prunable weights, for divergence messages.</summary>
    private double KeptShare()
    {
        var total = _layers.Sum(l => l.Total);
        return total == 0 ? 1 : (double)_layers.Sum(l => l.Kept) / total;
    }

    /// <summary>Writes <c>W ⊙ T</c> into the module, as the next iteration will see it (for an evaluation between stages).</summary>
    internal void WriteMaskedWeights()
    {
        foreach (var layer in _layers) layer.WriteMaskedWeights();
    }

    /// <summary>Writes the deployed weights, <c>W ⊙ T</c> with exact zeros.</summary>
    internal void WriteDeliveredWeights()
    {
        foreach (var layer in _layers) layer.WriteDeliveredWeights();
    }

    internal IReadOnlyList<LayerResult> Results() => LayerResults();

    /// <summary>
    /// The whole training state in memory (a checkpoint). Measured first and written into an array of exactly its size:
    /// a growing MemoryStream would hold its old and new buffers and ToArray's copy at once, up to four times the state,
    /// which for a large model is gigabytes on top of the training's own memory. A snapshot that replaces
    /// <paramref name="replacing"/> (its owner's only reference) is written into that array when the sizes match, as they
    /// do between snapshots of one run: the replaced state would otherwise be large-object garbage until a full collection.
    /// When writing fails, the reused array is cleared, so restoring it fails instead of loading half a state.
    /// </summary>
    internal byte[] Snapshot(byte[]? replacing = null)
    {
        using var scope = NewDisposeScope();
        var size = new CountingStream();
        TrainerCheckpoint.Save(this, size, stage: null);
        var bytes = replacing?.LongLength == size.Length ? replacing : new byte[size.Length];
        try
        {
            using var memory = new MemoryStream(bytes, writable: true);
            TrainerCheckpoint.Save(this, memory, stage: null);
            if (memory.Position != bytes.Length) throw new InvalidOperationException("the training state changed while it was saved");
        }
        catch when (ReferenceEquals(bytes, replacing))
        {
            Array.Clear(bytes);
            throw;
        }
        return bytes;
    }

    /// <summary>Restores a <see cref="Snapshot"/>, iteration count included.</summary>
    internal void Restore(byte[] snapshot) => TrainerCheckpoint.Load(this, new MemoryStream(snapshot));

    /// <summary>The whole training state (<see cref="TrainerCheckpoint"/>) of a run in the paper's fixed mode.</summary>
    public void SaveCheckpoint(Stream stream) => TrainerCheckpoint.Save(this, stream, stage: null);

    /// <summary>Restores a checkpoint written by a trainer with the same model, layers and settings.</summary>
    public void LoadCheckpoint(Stream stream) => TrainerCheckpoint.Load(this, stream);

    /// <summary>Sets the iteration count after a <see cref="Restore"/> that should not rewind the metric series.</summary>
    internal void SetIteration(int iteration) => Iteration = iteration;

    /// <summary>After <see cref="Restore"/> in a search: the restored state is the one to roll back to.</summary>
    internal void MarkGood() => _lastGood = Snapshot(_lastGood);

    /// <summary>
    /// One training iteration: the mask updates the plan's schedule calls for, forward with <c>W ⊙ T</c>, backward, the
    /// optimizer's step on the dense weights.
    /// </summary>
    private IterationMetrics Step(TensorDataset train, TrainingPlan plan)
    {
        using var scope = NewDisposeScope();
        var iteration = Iteration;
        // Dropout draws from this run's own generator, seeded from the iteration: reproducible on resume, and never
        // shared with a job training beside it on another thread.
        _random.manual_seed(unchecked(_settings.Seed * 1_000_003L + iteration));
        using var random = TrainingRandom.Use(_random);
        var stats = new LayerIterationStats[_layers.Count];
        for (var k = 0; k < _layers.Count; k++)
        {
            var layer = _layers[k];
            var updated = plan.Masks.Due(k, layer, iteration);
            var (pruned, spliced) = updated ? Method.UpdateMask(layer) : (0, 0);
            stats[k] = new LayerIterationStats(layer.Layer.Name, layer.Kept, layer.Total, pruned, spliced, updated);
            layer.WriteMaskedWeights();
        }

        var (inputs, labels) = Batch(train, iteration);
        _model.train();
        _model.zero_grad();
        var loss = nn.functional.cross_entropy(_model.forward(inputs), labels);
        loss.backward();
        var lr = plan.LearningRate.At(iteration) * LearningRateScale;
        _optimizer.Step(lr);
        Iteration = iteration + 1;
        return new IterationMetrics(iteration, loss.item<float>(), lr, stats);
    }

    /// <summary>
    /// The batch of an iteration follows from the iteration alone: epoch e uses a permutation seeded by (seed, e), so a
    /// resumed run sees exactly the batches an uninterrupted one would.
    /// </summary>
    private (Tensor Inputs, Tensor Labels) Batch(TensorDataset train, int iteration)
    {
        var n = train.Count;
        var size = Math.Min(_settings.BatchSize, n);
        var perEpoch = n / size;
        var epoch = iteration / perEpoch;
        // The cached permutation is of one epoch of one sample count: the learning-rate probe trains on fewer samples.
        if (epoch != _permutationEpoch || _permutation!.shape[0] != n)
        {
            _permutation?.Dispose();
            using var generator = new Generator(unchecked((ulong)(_settings.Seed * 7_919L + epoch)));
            _permutation = randperm(n, generator: generator).DetachFromDisposeScope();
            _permutationEpoch = epoch;
        }
        var indices = _permutation!.narrow(0, iteration % perEpoch * size, size);
        return (train.Inputs.index_select(0, indices).to(Device), train.Labels.index_select(0, indices).to(Device));
    }

    /// <summary>Test loss and top-1 (top-5 with more than 5 classes) accuracy, in eval mode without gradients.</summary>
    public EvaluationMetrics Evaluate(TensorDataset test)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        _model.eval();
        double lossSum = 0;
        long top1 = 0, top5 = 0;
        var withTop5 = test.ClassCount > 5;
        var batch = _settings.EvaluationBatch;
        for (long start = 0; start < test.Count; start += batch)
        {
            using var batchScope = NewDisposeScope();
            var length = Math.Min(batch, test.Count - start);
            var inputs = test.Inputs.narrow(0, start, length).to(Device);
            var labels = test.Labels.narrow(0, start, length).to(Device);
            var output = _model.forward(inputs);
            lossSum += nn.functional.cross_entropy(output, labels, reduction: nn.Reduction.Sum).item<float>();
            top1 += output.argmax(1).eq(labels).sum().item<long>();
            if (withTop5)
            {
                top5 += output.topk(5, dim: 1).indexes.eq(labels.unsqueeze(1)).any(1).sum().item<long>();
            }
        }
        _model.train();
        var count = (double)test.Count;
        return new EvaluationMetrics(Iteration, lossSum / count, top1 / count, withTop5 ? top5 / count : null);
    }

    private IReadOnlyList<LayerResult> LayerResults() =>
        _layers.Select(l => new LayerResult(l.Layer.Name, l.Layer.Kind, l.Total, l.CountKept(), l.PrunedTotal, l.SplicedTotal))
            .ToList();

    private static Device ResolveDevice(DeviceChoice choice)
    {
        var cuda = cuda_is_available();
        return choice switch
        {
            DeviceChoice.Cuda when !cuda => throw new SurgeryException("No GPU",
                "device 'cuda' was requested but this worker has no CUDA device; use 'auto' or 'cpu'", ErrorKind.Unsupported),
            DeviceChoice.Cuda => CUDA,
            DeviceChoice.Auto when cuda => CUDA,
            _ => CPU,
        };
    }

    public void Dispose()
    {
        foreach (var layer in _layers) layer.Dispose();
        _optimizer.Dispose();
        _permutation?.Dispose();
        _random.Dispose();
        _lastGood = null; // a whole copy of the training state: not kept alive by whoever still holds the trainer
    }
}

/// <summary>
/// Training diverged and could not be rolled back any further. <see cref="LearningRate"/>: the rate the run diverged at
/// before the rollbacks' tenths.
/// </summary>
public sealed class TrainingDivergedException(string message, double learningRate)
    : SurgeryException("Training diverged", message, ErrorKind.BadInput)
{
    public double LearningRate { get; } = learningRate;
}
