using System.Diagnostics;
using TorchSharp;
using Parameter = TorchSharp.Modules.Parameter;
using SurgeryService.Domain.Datasets;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace SurgeryService.Domain.Surgery;

/// <summary>
/// Retrains a module with Dynamic Network Surgery (or the magnitude baseline) on a labelled dataset: the training loop,
/// Caffe's SGD and learning-rate policies, evaluation, events, checkpoints and cancellation. The per-layer rules live in
/// <see cref="DynamicNetworkSurgery"/>. With no prunable layers it is plain dense training.
/// Runs synchronously on the calling thread (TorchSharp's dispose scopes are thread-static).
/// </summary>
public sealed class SurgeryTrainer : IDisposable
{
    private const int EvaluationBatch = 1000;
    private readonly Module<Tensor, Tensor> _model;
    private readonly SurgerySettings _settings;
    private readonly List<DynamicNetworkSurgery> _layers = [];
    private readonly List<(string Name, Parameter Parameter, Tensor Velocity)> _plain = [];
    private readonly Generator _random;
    private Tensor? _permutation;
    private long _permutationEpoch = -1;

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
            : throw new SurgeryException("Unknown layer", $"the model has no parameter named '{name}'", 422);

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

    /// <summary>
    /// Trains from <see cref="Iteration"/> to the settings' iteration count, or until cancelled (checked between
    /// iterations). Afterwards the module's parameters hold <c>W ⊙ T</c> with exact zeros.
    /// </summary>
    public SurgeryOutcome Run(TensorDataset train, TensorDataset test, ISurgeryObserver observer,
        int checkpointInterval = 0, CancellationToken cancellationToken = default)
    {
        if (train.Count == 0) throw new SurgeryException("Bad dataset", "the training set is empty");
        var before = Iteration == 0 && test.Count > 0 ? Evaluate(test) : null;
        if (before is not null) observer.OnEvaluation(before);

        var cancelled = false;
        while (Iteration < _settings.Iterations)
        {
            if (cancellationToken.IsCancellationRequested)
            {
                cancelled = true;
                break;
            }
            observer.OnIteration(Step(train));
            if (Iteration % _settings.EvalInterval == 0 && Iteration < _settings.Iterations && test.Count > 0)
            {
                observer.OnEvaluation(Evaluate(test));
            }
            if (checkpointInterval > 0 && Iteration % checkpointInterval == 0)
            {
                observer.OnCheckpointDue(this);
            }
        }

        foreach (var layer in _layers) layer.WriteDeliveredWeights();
        EvaluationMetrics? after = null;
        if (!cancelled && test.Count > 0)
        {
            after = Evaluate(test);
            observer.OnEvaluation(after);
        }
        return new SurgeryOutcome(Iteration, cancelled, before, after, LayerResults());
    }

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
        var momentum = _settings.Momentum;
        var decay = _settings.WeightDecay;
        foreach (var layer in _layers)
        {
            foreach (var m in layer.Masked)
            {
                var grad = m.Parameter.grad;
                if (grad is null) continue;
                // Spec step 5: dL/d(W ⊙ T) reaches every entry of the dense W (straight-through).
                var keep = _settings.Method == SurgeryMethod.Magnitude ? m.Mask : null;
                Update(m.Dense, grad, m.Velocity, keep);
            }
        }
        foreach (var (_, parameter, velocity) in _plain)
        {
            var grad = parameter.grad;
            if (grad is not null) Update(parameter, grad, velocity, null);
        }

        void Update(Tensor weight, Tensor grad, Tensor velocity, Tensor? keep)
        {
            if (decay != 0) grad.add_(weight, decay);
            if (keep is not null) grad.mul_(keep); // magnitude baseline: pruned weights stay exactly zero
            velocity.mul_(momentum).add_(grad, lr);
            weight.sub_(velocity);
        }
    }

    private double LearningRate(int iteration) => _settings.LrPolicy switch
    {
        LearningRatePolicy.Step => _settings.LearningRate * Math.Pow(_settings.LrGamma, iteration / _settings.LrStepSize),
        LearningRatePolicy.Inv => _settings.LearningRate * Math.Pow(1 + _settings.LrGamma * iteration, -_settings.LrPower),
        _ => _settings.LearningRate,
    };

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
                "device 'cuda' was requested but this worker has no CUDA device; use 'auto' or 'cpu'", 422),
            DeviceChoice.Cuda => CUDA,
            DeviceChoice.Auto when cuda => CUDA,
            _ => CPU,
        };
    }

    // ---- Checkpoints: everything a resumed run needs (dns-spec.md: thresholds must be saved, never recomputed) ----

    private const string CheckpointMagic = "DNS-CKPT-2";

    public void SaveCheckpoint(Stream stream)
    {
        using var writer = new BinaryWriter(stream, System.Text.Encoding.UTF8, leaveOpen: true);
        writer.Write(CheckpointMagic);
        writer.Write(Iteration);
        writer.Write(_layers.Count);
        foreach (var layer in _layers)
        {
            writer.Write(layer.Layer.Name);
            writer.Write(layer.PruneBelow);
            writer.Write(layer.SpliceAbove);
            writer.Write(layer.StartStd);
            writer.Write(layer.PrunedTotal);
            writer.Write(layer.SplicedTotal);
            foreach (var m in layer.Masked)
            {
                TensorIO.Write(writer, m.Dense);
                using (var mask = m.Mask.ne(0f)) TensorIO.Write(writer, mask); // stored as bool
                TensorIO.Write(writer, m.Velocity);
            }
        }
        writer.Write(_plain.Count);
        foreach (var (name, parameter, velocity) in _plain)
        {
            writer.Write(name);
            TensorIO.Write(writer, parameter);
            TensorIO.Write(writer, velocity);
        }
        var buffers = _model.named_buffers().ToList();
        writer.Write(buffers.Count);
        foreach (var (name, buffer) in buffers)
        {
            writer.Write(name);
            TensorIO.Write(writer, buffer);
        }
    }

    /// <summary>Restores a checkpoint written by a trainer with the same model, layers and settings.</summary>
    public void LoadCheckpoint(Stream stream)
    {
        using var reader = new BinaryReader(stream, System.Text.Encoding.UTF8, leaveOpen: true);
        void Expect(bool ok, string what)
        {
            if (!ok) throw new SurgeryException("Bad checkpoint", $"the checkpoint does not match this run: {what}", 409);
        }

        Expect(reader.ReadString() == CheckpointMagic, "unknown format");
        var iteration = reader.ReadInt32();
        Expect(reader.ReadInt32() == _layers.Count, "layer count differs");
        using var _ = no_grad();
        foreach (var layer in _layers)
        {
            Expect(reader.ReadString() == layer.Layer.Name, $"layer {layer.Layer.Name} missing");
            layer.SetThresholds(reader.ReadSingle(), reader.ReadSingle());
            layer.StartStd = reader.ReadSingle();
            layer.PrunedTotal = reader.ReadInt64();
            layer.SplicedTotal = reader.ReadInt64();
            foreach (var m in layer.Masked)
            {
                TensorIO.ReadInto(reader, m.Dense);
                using var mask = m.Mask.ne(0f);
                TensorIO.ReadInto(reader, mask);
                m.Mask.copy_(mask);
                TensorIO.ReadInto(reader, m.Velocity);
            }
            layer.RecountMask();
            layer.WriteMaskedWeights();
        }
        Expect(reader.ReadInt32() == _plain.Count, "parameter count differs");
        foreach (var (name, parameter, velocity) in _plain)
        {
            Expect(reader.ReadString() == name, $"parameter {name} missing");
            TensorIO.ReadInto(reader, parameter);
            TensorIO.ReadInto(reader, velocity);
        }
        var buffers = _model.named_buffers().ToDictionary(b => b.name, b => b.buffer);
        var bufferCount = reader.ReadInt32();
        for (var i = 0; i < bufferCount; i++)
        {
            var name = reader.ReadString();
            Expect(buffers.TryGetValue(name, out var buffer), $"buffer {name} missing");
            TensorIO.ReadInto(reader, buffer!);
        }
        Iteration = iteration;
    }

    public void Dispose()
    {
        foreach (var layer in _layers) layer.Dispose();
        foreach (var (_, _, velocity) in _plain) velocity.Dispose();
        _permutation?.Dispose();
        _random.Dispose();
    }
}

/// <summary>Raw tensor (de)serialisation for checkpoints: shape, element type, bytes.</summary>
internal static class TensorIO
{
    public static void Write(BinaryWriter writer, Tensor tensor)
    {
        using var cpu = tensor.detach().cpu().contiguous();
        writer.Write(cpu.shape.Length);
        foreach (var d in cpu.shape) writer.Write(d);
        writer.Write((int)cpu.dtype);
        var bytes = cpu.bytes;
        writer.Write(bytes.Length);
        writer.Write(bytes);
    }

    public static void ReadInto(BinaryReader reader, Tensor target)
    {
        var shape = new long[reader.ReadInt32()];
        for (var i = 0; i < shape.Length; i++) shape[i] = reader.ReadInt64();
        var dtype = (ScalarType)reader.ReadInt32();
        var bytes = reader.ReadBytes(reader.ReadInt32());
        if (!shape.SequenceEqual(target.shape) || dtype != target.dtype)
        {
            throw new SurgeryException("Bad checkpoint", "a tensor in the checkpoint has another shape or type than the model's", 409);
        }
        using var cpu = empty(shape, dtype);
        cpu.bytes = bytes;
        using var _ = no_grad();
        target.copy_(cpu);
    }
}
