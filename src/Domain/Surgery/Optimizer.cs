using TorchSharp;
using static TorchSharp.torch;
using SurgeryService.Domain.Torch;

namespace SurgeryService.Domain.Surgery;

/// <summary>
/// Steps the tensors that train (the masked layers' dense <c>W</c>, every other parameter) by their gradients. The loop
/// (<see cref="SurgeryTrainer"/>) hands each tensor once, then calls <see cref="Step"/> after every backward pass.
/// </summary>
public interface IOptimizer : IDisposable
{
    /// <summary>
    /// Trains <paramref name="weight"/> on what <paramref name="gradient"/> returns at each step (null: no step). Where
    /// <paramref name="frozen"/> returns a 0/1 mask, its zeros neither move nor keep optimizer state (a connection cut for
    /// good, docs/algorithm.md#the-comparison-baseline).
    /// </summary>
    void Add(Tensor weight, Func<Tensor?> gradient, bool bias, Func<Tensor?>? frozen = null);

    /// <summary>
    /// Whether a cut connection may keep training on the straight-through gradient (DNS's step 4) under this optimizer.
    /// When not, the trainer hands every masked tensor's mask as <c>frozen</c>, whatever the method.
    /// </summary>
    bool TrainsCutWeights { get; }

    void Step(double learningRate);

    /// <summary>The state the optimizer keeps for <paramref name="weight"/>, in a fixed order, for checkpoints to write and read in place.</summary>
    IReadOnlyList<Tensor> State(Tensor weight);
}

/// <summary>The one place an <see cref="OptimizerChoice"/> becomes its <see cref="IOptimizer"/>.</summary>
public static class Optimizers
{
    public static IOptimizer For(SurgerySettings settings) => settings.Optimizer switch
    {
        OptimizerChoice.Adam => new MaskedAdam(settings.WeightDecay, settings.BiasLrMultiplier),
        _ => new CaffeSgd(settings.Momentum, settings.WeightDecay, settings.BiasLrMultiplier),
    };
}

/// <summary>
/// Caffe's SGD (the released DNS code trains with it): <c>v = m v + lr (g + wd w)</c>, <c>w -= v</c>, biases at
/// <see cref="SurgerySettings.BiasLrMultiplier"/> times the rate. TorchSharp's <c>torch.optim.SGD</c> puts the rate
/// elsewhere (<c>v = m v + g</c>, <c>w -= lr v</c>), which differs whenever the rate changes, so it is not used here.
/// </summary>
public sealed class CaffeSgd(double momentum, double weightDecay, double biasLrMultiplier) : IOptimizer
{
    public bool TrainsCutWeights => true;

    private readonly List<Entry> _entries = [];
    private readonly Dictionary<Tensor, Entry> _byWeight = new(ReferenceEqualityComparer.Instance);


    public void Add(Tensor weight, Func<Tensor?> gradient, bool bias, Func<Tensor?>? frozen = null)
    {
        var entry = new Entry(weight, gradient, bias, frozen, zeros_like(weight).DetachFromDisposeScope());
        _entries.Add(entry);
        _byWeight.Add(weight, entry);
    }

    public IReadOnlyList<Tensor> State(Tensor weight) => [_byWeight[weight].Velocity];

    public void Step(double learningRate)
    {
        using var _ = no_grad();
        // Scalars are made and disposed here, not converted implicitly per call: an implicit Scalar's native handle is
        // freed by its finalizer, which can run while LibTorch still reads it (docs/operations.md#troubleshooting).
        using var momentumScalar = momentum.ToScalar();
        using var decay = weightDecay.ToScalar();
        using var weightLr = learningRate.ToScalar();
        // Caffe's LeNet prototxts train biases at lr_mult 2; the setting makes that a choice.
        using var biasLr = (learningRate * biasLrMultiplier).ToScalar();
        var decays = weightDecay != 0;
        foreach (var (weight, gradient, bias, frozen, velocity) in _entries)
        {
            var grad = gradient();
            if (grad is null) continue;
            var keep = frozen?.Invoke();
            if (decays) grad.add_(weight, decay);
            if (keep is not null)
            {
                grad.mul_(keep);
                velocity.mul_(keep);
            }
            velocity.mul_(momentumScalar).add_(grad, bias ? biasLr : weightLr);
            weight.sub_(velocity);
        }
    }

    public void Dispose()
    {
        foreach (var entry in _entries) entry.Velocity.Dispose();
    }

    private sealed record Entry(Tensor Weight, Func<Tensor?> Gradient, bool Bias, Func<Tensor?>? Frozen, Tensor Velocity);
}

/// <summary>
/// Adam as <c>torch.optim.Adam</c> computes it (L2 weight decay added to the gradient, bias-corrected moments,
/// <c>w -= lr m^ / (sqrt(v^) + eps)</c>), on the trainer's dense tensors with the masks applied
/// (docs/algorithm.md#optimizers). Written out rather than wrapping <c>torch.optim.Adam</c>: the dense shadow weights are
/// not module parameters, and a cut entry's moments must be zeroed with its gradient. Adam's step is normalised per
/// entry, so a cut weight with a tiny straight-through gradient would still move by about the rate every iteration and
/// soon be spliced back; cut entries therefore neither move nor keep moments (<see cref="TrainsCutWeights"/> is false).
/// </summary>
public sealed class MaskedAdam(double weightDecay, double biasLrMultiplier, double beta1 = 0.9, double beta2 = 0.999,
    double epsilon = 1e-8) : IOptimizer
{
    private readonly List<Entry> _entries = [];
    private readonly Dictionary<Tensor, Entry> _byWeight = new(ReferenceEqualityComparer.Instance);

    public bool TrainsCutWeights => false;

    public void Add(Tensor weight, Func<Tensor?> gradient, bool bias, Func<Tensor?>? frozen = null)
    {
        var entry = new Entry(weight, gradient, bias, frozen, zeros_like(weight).DetachFromDisposeScope(),
            zeros_like(weight).DetachFromDisposeScope(), zeros(1, float64).DetachFromDisposeScope());
        _entries.Add(entry);
        _byWeight.Add(weight, entry);
    }

    /// <summary>The first and second moments and the entry's step count (a one-element tensor, so checkpoints hold it).</summary>
    public IReadOnlyList<Tensor> State(Tensor weight)
    {
        var entry = _byWeight[weight];
        return [entry.First, entry.Second, entry.Steps];
    }

    public void Step(double learningRate)
    {
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        using var decay = weightDecay.ToScalar();
        using var b1 = beta1.ToScalar();
        using var oneMinusB1 = (1 - beta1).ToScalar();
        using var b2 = beta2.ToScalar();
        using var oneMinusB2 = (1 - beta2).ToScalar();
        using var eps = epsilon.ToScalar();
        foreach (var (weight, gradient, bias, frozen, first, second, steps) in _entries)
        {
            var grad = gradient();
            if (grad is null) continue;
            var keep = frozen?.Invoke();
            if (weightDecay != 0) grad.add_(weight, decay);
            if (keep is not null)
            {
                grad.mul_(keep);
                first.mul_(keep);
                second.mul_(keep);
            }
            var t = steps.add_(Scalars.One, Scalars.One).item<double>();
            first.mul_(b1).add_(grad, oneMinusB1);
            second.mul_(b2).addcmul_(grad, grad, oneMinusB2);
            var rate = learningRate * (bias ? biasLrMultiplier : 1) / (1 - Math.Pow(beta1, t));
            using var stepSize = (-rate).ToScalar();
            using var correction = Math.Sqrt(1 - Math.Pow(beta2, t)).ToScalar();
            // A cut entry has zero moments, so its step is 0 / (0 + eps): it stays exactly where it is.
            var denominator = second.sqrt().div_(correction).add_(eps, Scalars.One);
            weight.addcdiv_(first, denominator, stepSize);
        }
    }

    public void Dispose()
    {
        foreach (var entry in _entries)
        {
            entry.First.Dispose();
            entry.Second.Dispose();
            entry.Steps.Dispose();
        }
    }

    private sealed record Entry(Tensor Weight, Func<Tensor?> Gradient, bool Bias, Func<Tensor?>? Frozen, Tensor First, Tensor Second,
        Tensor Steps);
}
