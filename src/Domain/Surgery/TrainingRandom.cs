using static TorchSharp.torch;
using SurgeryService.Domain.Torch;

namespace SurgeryService.Domain.Surgery;

/// <summary>
/// The random source of stochastic layers (dropout) during a training step. <see cref="SurgeryTrainer"/> owns one
/// (CPU) generator per run, reseeds it from (seed, iteration) before every step and makes it current on its own
/// thread, so a resumed run draws exactly what an uninterrupted one would, and jobs that train at the same time on
/// other threads never draw from each other's stream. Outside a step there is none, and LibTorch's process-wide
/// generator is used.
/// </summary>
public static class TrainingRandom
{
    /// <summary>The generator of the step running on this thread, or null outside one.</summary>
    [ThreadStatic]
    private static Generator? _current;

    /// <summary>
    /// Makes <paramref name="generator"/> current on this thread until the returned scope is disposed.
    /// </summary>
    internal static Scope Use(Generator generator)
    {
        var previous = _current;
        _current = generator;
        return new Scope(previous);
    }

    /// <summary>
    /// Inverted dropout: each element is zeroed with probability <paramref name="ratio"/> and the rest are scaled by
    /// <c>1 / (1 - ratio)</c>, as ONNX's and PyTorch's Dropout train; the mask comes from the current step's generator.
    /// </summary>
    public static Tensor Dropout(Tensor input, double ratio)
    {
        if (ratio <= 0) return input.alias();
        if (ratio >= 1) return input.Times(0);
        using var scope = NewDisposeScope();
        // TorchSharp 0.107 makes only CPU generators: the mask is drawn on the CPU and moved to the input's device.
        var keep = empty(input.shape, float32).bernoulli_(1 - ratio, _current).to(input.dtype, input.device);
        return input.mul(keep).Over(1 - ratio).MoveToOuterDisposeScope();
    }

    internal readonly struct Scope(Generator? previous) : IDisposable
    {
        public void Dispose() => _current = previous;
    }
}
