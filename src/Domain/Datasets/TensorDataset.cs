using TorchSharp;
using static TorchSharp.torch;

namespace SurgeryService.Domain.Datasets;

/// <summary>
/// A labelled data set held as two tensors: inputs <c>[N, ...]</c> (float32) and labels <c>[N]</c> (int64).
/// Owns its tensors.
/// </summary>
public sealed class TensorDataset : IDisposable
{
    public TensorDataset(Tensor inputs, Tensor labels, int classCount)
    {
        if (inputs.shape[0] != labels.shape[0])
        {
            throw new SurgeryException("Bad dataset",
                $"the dataset has {inputs.shape[0]} inputs but {labels.shape[0]} labels");
        }
        Inputs = inputs.DetachFromDisposeScope();
        Labels = labels.DetachFromDisposeScope();
        ClassCount = classCount;
    }

    public Tensor Inputs { get; }
    public Tensor Labels { get; }
    public int ClassCount { get; }
    public long Count => Inputs.shape[0];

    /// <summary>The shape of one sample, without the leading batch dimension.</summary>
    public long[] SampleShape => Inputs.shape[1..];

    /// <summary>
    /// Holds <paramref name="count"/> samples out, chosen by a permutation seeded with <paramref name="seed"/>: returns the
    /// rest (to train on) and the held-out samples (to validate on), both new datasets in the original order.
    /// </summary>
    public (TensorDataset Remaining, TensorDataset HeldOut) Split(int count, int seed)
    {
        if (count <= 0 || count >= Count)
        {
            throw new SurgeryException("Bad dataset",
                $"cannot hold {count} of {Count} training samples out for validation: at least one must remain on each side");
        }
        using var scope = NewDisposeScope();
        using var generator = new Generator(unchecked((ulong)(seed * 104_729L + 17)));
        var order = randperm(Count, generator: generator);
        var heldOut = order.narrow(0, 0, count).sort().Values;
        var rest = order.narrow(0, count, Count - count).sort().Values;
        return (new TensorDataset(Inputs.index_select(0, rest), Labels.index_select(0, rest), ClassCount),
            new TensorDataset(Inputs.index_select(0, heldOut), Labels.index_select(0, heldOut), ClassCount));
    }

    public void Dispose()
    {
        Inputs.Dispose();
        Labels.Dispose();
    }
}
