using TorchSharp;
using static TorchSharp.torch;

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

    void Step(double learningRate);

    /// <summary>The state the optimizer keeps for <paramref name="weight"/>, in a fixed order, for checkpoints to write and read in place.</summary>
    IReadOnlyList<Tensor> State(Tensor weight);
}

/// <summary>
/// Caffe's SGD (the released DNS code trains with it): <c>v = m v + lr (g + wd w)</c>, <c>w -= v</c>, biases at
/// <see cref="SurgerySettings.BiasLrMultiplier"/> times the rate. TorchSharp's <c>torch.optim.SGD</c> puts the rate
/// elsewhere (<c>v = m v + g</c>, <c>w -= lr v</c>), which differs whenever the rate changes, so it is not used here.
/// </summary>
public sealed class CaffeSgd(double momentum, double weightDecay, double biasLrMultiplier) : IOptimizer
{
    private readonly List<Entry> _entries = [];
    private readonly Dictionary<Tensor, Entry> _byWeight = new(ReferenceEqualityComparer.Instance);

    public static CaffeSgd For(SurgerySettings settings) => new(settings.Momentum, settings.WeightDecay, settings.BiasLrMultiplier);

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
