using System.Diagnostics;
using TorchSharp;
using Parameter = TorchSharp.Modules.Parameter;
using SurgeryService.Domain.Datasets;
using SurgeryService.Domain.Torch;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace SurgeryService.Domain.Surgery;

/// <summary>
/// Retrains a module with Dynamic Network Surgery (or the magnitude baseline) on a labelled dataset: the training loop,
/// Caffe's SGD and learning-rate policies, evaluation, events, checkpoints and cancellation. The per-layer rules live in
/// <see cref="DynamicNetworkSurgery"/>. With no prunable layers it is plain dense training.
/// Runs synchronously on the calling thread (TorchSharp's dispose scopes are thread-static).
/// </summary>
public sealed partial class SurgeryTrainer : ICheckpointSource, IDisposable
{
    private const int EvaluationBatch = 1000;
    private readonly Module<Tensor, Tensor> _model;
    private readonly SurgerySettings _settings;
    private readonly List<DynamicNetworkSurgery> _layers = [];
    private readonly List<(string Name, Parameter Parameter, Tensor Velocity)> _plain = [];
    private readonly Generator _random;
    private Tensor? _permutation;
    private long _permutationEpoch = -1;
    private readonly HashSet<string> _biases;
    private SurgeryStage? _stage;
    private DivergenceGuard? _guard;
    private byte[]? _lastGood;
    private double _learningRateScale = 1;
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

        var parameters = _model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        Parameter Find(string name) => parameters.TryGetValue(name, out var p)
            ? p
            : throw new SurgeryException("Unknown layer", $"the model has no parameter named '{name}'", ErrorKind.BadInput);

        var masked = new HashSet<string>();
        foreach (var layer in layers)
        {
            var bias = layer.BiasParameter is null ? null : Find(layer.BiasParameter);
            _layers.Add(new DynamicNetworkSurgery(layer, Find(layer.WeightParameter), bias, settings.PruneBiases,
                LayerRule.For(layer, settings)));
            masked.Add(layer.WeightParameter);
            if (bias is not null && settings.PruneBiases) masked.Add(layer.BiasParameter!);
        }
        foreach (var (name, parameter) in parameters.Where(p => !masked.Contains(p.Key) && p.Value.requires_grad))
        {
            _plain.Add((name, parameter, zeros_like(parameter).DetachFromDisposeScope()));
        }
        _biases = layers.Where(l => l.BiasParameter is not null).Select(l => l.BiasParameter!)
            .Concat(parameters.Keys.Where(n => n.EndsWith("bias", StringComparison.OrdinalIgnoreCase)))
            .ToHashSet();
        foreach (var layer in _layers)
        {
            layer.FixThresholds();
        }
        _random = new Generator(0); // a CPU generator whatever the device: TorchSharp makes no other kind
    }

    public Device Device { get; }

    /// <summary>Iterations completed so far (the next iteration's index).</summary>
    public int Iteration { get; private set; }

    public IReadOnlyList<DynamicNetworkSurgery> Layers => _layers;

    /// <summary>Times training diverged and was rolled back to its last good state with a tenth of the learning rate.</summary>
    public int Rollbacks { get; private set; }

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
        var before = Iteration == 0 && test.Count > 0 ? Evaluate(test) : null;
        if (before is not null) observer.OnEvaluation(before);
        if (Iteration == 0) WarnAboutFirstPrunes(observer);
        StartGuard(train, before);

        var cancelled = RunUntil(_settings.Iterations, train, test, observer, checkpointInterval, this, cancellationToken);

        foreach (var layer in _layers) layer.WriteDeliveredWeights();
        EvaluationMetrics? after = null;
        if (!cancelled && test.Count > 0)
        {
            after = Evaluate(test);
            observer.OnEvaluation(after);
        }
        return new SurgeryOutcome(Iteration, cancelled, before, after, LayerResults());
    }

    /// <summary>
    /// Trains until iteration <paramref name="end"/>: evaluations on <paramref name="evaluation"/> every eval interval,
    /// checkpoints of <paramref name="checkpoint"/> every checkpoint interval, divergence checks after every iteration
    /// and evaluation. Returns whether it was cancelled.
    /// </summary>
    internal bool RunUntil(int end, TensorDataset train, TensorDataset evaluation, ISurgeryObserver observer,
        int checkpointInterval, ICheckpointSource checkpoint, CancellationToken cancellationToken)
    {
        while (Iteration < end)
        {
            if (cancellationToken.IsCancellationRequested) return true;
            var metrics = Step(train);
            observer.OnIteration(metrics);
            var divergence = _guard?.OnIteration(metrics.Iteration, metrics.Loss);
            if (divergence is null && Iteration % _settings.EvalInterval == 0 && Iteration < end && evaluation.Count > 0)
            {
                var evaluated = Evaluate(evaluation);
                observer.OnEvaluation(evaluated);
                // In a budget-mode stage accuracy is the stage's verdict to give; only a broken loss is divergence there.
                divergence = _guard?.OnEvaluation(evaluated, KeptShare(), judgeAccuracy: _stage is null);
                if (divergence is null) _lastGood = Snapshot();
            }
            if (divergence is not null) RollBack(divergence, observer);
            if (checkpointInterval > 0 && Iteration % checkpointInterval == 0)
            {
                observer.OnCheckpointDue(checkpoint);
            }
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
        if (start is not null) _guard = new DivergenceGuard(start.Loss, start.Top1, train.ClassCount);
        _lastGood = Snapshot();
    }

    /// <summary>Guard rail: a layer whose first prune would keep under 1% of it is named before the first iteration.</summary>
    private void WarnAboutFirstPrunes(ISurgeryObserver observer)
    {
        foreach (var layer in _layers)
        {
            var cut = _settings.Method == SurgeryMethod.Dns
                ? layer.PruneBelow
                : (float)(layer.Rule.CRate / _settings.MagnitudeRounds * layer.StartStd);
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
    private void RollBack(Divergence divergence, ISurgeryObserver observer)
    {
        var lr = LearningRate(divergence.Iteration);
        var cause = divergence.Describe(lr, _inputMin, _inputMax, _settings.IsBudgetMode);
        if (Rollbacks >= DivergenceGuard.MaxRollbacks || _lastGood is null)
        {
            throw new SurgeryException("Training diverged",
                $"{cause} (after {Rollbacks} rollbacks to the last good state, each with a tenth of the learning rate)", ErrorKind.BadInput);
        }
        // The snapshot holds the weights to go back to; the count of rollbacks and the rate's scale go on from now.
        var (iteration, rollbacks, scale) = (Iteration, Rollbacks, _learningRateScale);
        Restore(_lastGood);
        Iteration = iteration;
        Rollbacks = rollbacks + 1;
        _learningRateScale = scale / 10;
        _guard?.Reset();
        observer.OnEvent(new SurgeryEvent(iteration, SurgeryEventKind.Rollback,
            $"{cause}; rolled back to the last good state, learning rate now x{_learningRateScale:g3} (rollback {Rollbacks} of {DivergenceGuard.MaxRollbacks})"));
    }

    /// <summary>Kept share of the prunable weights, for divergence messages.</summary>
    private double KeptShare()
    {
        var total = _layers.Sum(l => l.Total);
        return total == 0 ? 1 : (double)_layers.Sum(l => l.Kept) / total;
    }

    /// <summary>Budget mode: from here on the schedules restart, and masks update for <paramref name="maskIterations"/> iterations.</summary>
    internal void BeginStage(int length, int maskIterations)
    {
        _stage = new SurgeryStage(Iteration, Iteration + length, maskIterations);
    }

    internal SurgeryStage? Stage => _stage;

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

    /// <summary>The whole training state in memory (a checkpoint).</summary>
    internal byte[] Snapshot()
    {
        using var scope = NewDisposeScope();
        using var memory = new MemoryStream();
        SaveCheckpoint(memory);
        return memory.ToArray();
    }

    /// <summary>Restores a <see cref="Snapshot"/>, iteration count included.</summary>
    internal void Restore(byte[] snapshot) => LoadCheckpoint(new MemoryStream(snapshot));

    /// <summary>Sets the iteration count after a <see cref="Restore"/> that should not rewind the metric series.</summary>
    internal void SetIteration(int iteration) => Iteration = iteration;

    /// <summary>After <see cref="Restore"/> in a search: the restored state is the one to roll back to.</summary>
    internal void MarkGood() => _lastGood = Snapshot();

    /// <summary>One training iteration: mask updates, forward with <c>W ⊙ T</c>, backward, SGD on the dense weights.</summary>
    private IterationMetrics Step(TensorDataset train)
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
            stats[k] = UpdateMask(_layers[k], k, iteration);
            _layers[k].WriteMaskedWeights();
        }

        var (inputs, labels) = Batch(train, iteration);
        _model.train();
        _model.zero_grad();
        var loss = nn.functional.cross_entropy(_model.forward(inputs), labels);
        loss.backward();
        var lr = LearningRate(iteration);
        SgdStep(lr);
        Iteration = iteration + 1;
        return new IterationMetrics(iteration, loss.item<float>(), lr, stats);
    }

    private LayerIterationStats UpdateMask(DynamicNetworkSurgery layer, int index, int iteration)
    {
        long pruned = 0, spliced = 0;
        var updated = false;
        if (_stage is { } stage)
        {
            // Budget mode: thresholds were calibrated at the stage's start (the magnitude method cut there for good);
            // DNS keeps updating with the paper's stochastic schedule, restarted, for the stage's mask iterations.
            var inStage = iteration - stage.Start;
            if (_settings.Method == SurgeryMethod.Dns && inStage < stage.MaskIterations
                && layer.Rule.Sigma(inStage) > UniformDraw(index, iteration))
            {
                (pruned, spliced) = layer.UpdateMask();
                updated = true;
            }
            return new LayerIterationStats(layer.Layer.Name, layer.Kept, layer.Total, pruned, spliced, updated);
        }
        var (start, end) = PhaseWindow(_settings, layer.Layer.Kind);
        var local = iteration - start;
        if (iteration >= start && iteration < end)
        {
            if (_settings.Method == SurgeryMethod.Dns)
            {
                // Spec step 3: one draw per layer per iteration; updates stop at iter_stop.
                if (layer.Rule.Sigma(local) > UniformDraw(index, iteration) && local < layer.Rule.IterStop)
                {
                    (pruned, spliced) = layer.UpdateMask();
                    updated = true;
                }
            }
            else
            {
                // Han et al.: prune at the start of each round with a growing quality parameter, then retrain.
                var rounds = _settings.MagnitudeRounds;
                var length = end - start;
                for (var r = 0; r < rounds; r++)
                {
                    if (local != (int)((long)r * length / rounds)) continue;
                    var cut = (float)(layer.Rule.CRate * (r + 1) / rounds * layer.StartStd);
                    pruned = layer.PruneByMagnitude(cut);
                    updated = true;
                }
            }
        }
        return new LayerIterationStats(layer.Layer.Name, layer.Kept, layer.Total, pruned, spliced, updated);
    }

    /// <summary>The iterations in which a layer's mask may change (dns-spec.md: phases for deep networks).</summary>
    private static (int Start, int End) PhaseWindow(SurgerySettings settings, LayerKind kind)
    {
        if (settings.Phases == PruningPhases.All) return (0, settings.Iterations);
        var half = settings.Iterations / 2;
        return kind == LayerKind.Convolution ? (0, half) : (half, settings.Iterations);
    }

    /// <summary>
    /// The expected share of (layer, iteration) pairs in which a DNS run updates a mask: sigma(iter) summed over each
    /// layer's window up to its iter_stop, over layers times iterations. How often a run pays for mask updates.
    /// </summary>
    public static double ExpectedMaskUpdateShare(SurgerySettings settings, IReadOnlyList<PrunableLayer> layers)
    {
        if (settings.Method != SurgeryMethod.Dns || layers.Count == 0) return 0;
        double updates = 0;
        foreach (var layer in layers)
        {
            var rule = LayerRule.For(layer, settings);
            var (start, end) = PhaseWindow(settings, layer.Kind);
            for (var local = 0; local < Math.Min(rule.IterStop, end - start); local++) updates += rule.Sigma(local);
        }
        return updates / layers.Count / settings.Iterations;
    }

    /// <summary>Caffe's SGD: <c>v = m v + lr (g + wd w)</c>, <c>w -= v</c>; masked layers step their dense weights.</summary>
    private void SgdStep(double lr)
    {
        using var _ = no_grad();
        // Scalars are made and disposed here, not converted implicitly per call: an implicit Scalar's native handle is
        // freed by its finalizer, which can run while LibTorch still reads it (seen as "Expected false to be true" in
        // c10::Scalar::toDouble after ~40000 iterations, when snapshots made garbage collections frequent).
        using var momentum = _settings.Momentum.ToScalar();
        using var decay = _settings.WeightDecay.ToScalar();
        using var weightLr = lr.ToScalar();
        // Caffe's LeNet prototxts train biases at lr_mult 2; the setting makes that a choice.
        using var biasLr = (lr * _settings.BiasLrMultiplier).ToScalar();
        var decays = _settings.WeightDecay != 0;
        foreach (var layer in _layers)
        {
            foreach (var m in layer.Masked)
            {
                var grad = m.Parameter.grad;
                if (grad is null) continue;
                // Spec step 5: dL/d(W ⊙ T) reaches every entry of the dense W (straight-through).
                var keep = _settings.Method == SurgeryMethod.Magnitude ? m.Mask : null;
                Update(m.Dense, grad, m.Velocity, keep, m == layer.Bias ? biasLr : weightLr);
            }
        }
        foreach (var (name, parameter, velocity) in _plain)
        {
            var grad = parameter.grad;
            if (grad is not null) Update(parameter, grad, velocity, null, _biases.Contains(name) ? biasLr : weightLr);
        }

        void Update(Tensor weight, Tensor grad, Tensor velocity, Tensor? keep, Scalar lr)
        {
            if (decays) grad.add_(weight, decay);
            if (keep is not null) grad.mul_(keep); // magnitude baseline: pruned weights stay exactly zero
            velocity.mul_(momentum).add_(grad, lr);
            weight.sub_(velocity);
        }
    }

    /// <summary>The policy's rate, restarted at each budget-mode stage and annealed there, times the rollbacks' scale.</summary>
    private double LearningRate(int iteration)
    {
        var local = iteration - (_stage?.Start ?? 0);
        var rate = _settings.LrPolicy switch
        {
            LearningRatePolicy.Step => _settings.LearningRate * Math.Pow(_settings.LrGamma, local / _settings.LrStepSize),
            LearningRatePolicy.Inv => _settings.LearningRate * Math.Pow(1 + _settings.LrGamma * local, -_settings.LrPower),
            _ => _settings.LearningRate,
        };
        return rate * StageAnnealing(iteration) * _learningRateScale;
    }

    /// <summary>
    /// Budget mode: once a stage's masks are frozen, the rate falls along a half cosine towards zero at the stage's end
    /// (the whole fine-tune is one such fall). A stage is judged by one evaluation at its end, and a user's schedule
    /// (e.g. a step every 10,000 iterations) never decays within a stage of a few thousand: at a constant rate that
    /// evaluation measures SGD's noise as much as the mask (LeNet-5's validation error moved between 1.23% and 1.40%
    /// from one evaluation to the next at 0.01), and a stage missed its floor by one image. The next stage restarts at
    /// the full rate (a warm restart, as in SGDR).
    /// </summary>
    private double StageAnnealing(int iteration)
    {
        if (_stage is not { } stage) return 1;
        var frozenFrom = stage.Start + stage.MaskIterations;
        var frozen = stage.End - frozenFrom;
        if (iteration < frozenFrom || frozen <= 0) return 1;
        return 0.5 * (1 + Math.Cos(Math.PI * Math.Min(1.0, (double)(iteration - frozenFrom) / frozen)));
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
        if (epoch != _permutationEpoch)
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
        for (long start = 0; start < test.Count; start += EvaluationBatch)
        {
            using var batchScope = NewDisposeScope();
            var length = Math.Min(EvaluationBatch, test.Count - start);
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

    /// <summary>A uniform draw in [0, 1) that depends only on (seed, layer, iteration), so resumed runs draw the same.</summary>
    private double UniformDraw(int layer, int iteration)
    {
        var x = unchecked((ulong)_settings.Seed * 0x9E3779B97F4A7C15UL + (ulong)layer * 0xBF58476D1CE4E5B9UL + (ulong)iteration);
        x = unchecked((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9UL);
        x = unchecked((x ^ (x >> 27)) * 0x94D049BB133111EBUL);
        x ^= x >> 31;
        return (x >> 11) * (1.0 / (1UL << 53));
    }

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
        foreach (var (_, _, velocity) in _plain) velocity.Dispose();
        _permutation?.Dispose();
        _random.Dispose();
    }
}
