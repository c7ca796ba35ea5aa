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

    public void Dispose()
    {
        Inputs.Dispose();
        Labels.Dispose();
    }
}
