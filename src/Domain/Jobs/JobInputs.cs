using SurgeryService.Domain.Datasets;
using static TorchSharp.torch;

namespace SurgeryService.Domain.Jobs;

/// <summary>Turns a stored data set into the model's inputs: sample limits, then <see cref="InputPreprocessing"/>.</summary>
public static class JobInputs
{
    public static (TensorDataset Train, TensorDataset Test) Prepare(
        DatasetTensors data, DatasetEntry dataset, JobPreprocessing preprocessing, long[] inputShape)
    {
        var channels = data.TrainInputs.dim() > 1 ? data.TrainInputs.shape[1] : 1;
        var transform = preprocessing.ToInput(dataset.InputType, channels);
        TensorDataset Make(Tensor inputs, Tensor labels, int? limit)
        {
            using var scope = NewDisposeScope();
            if (limit is { } n && n < inputs.shape[0])
            {
                inputs = inputs.narrow(0, 0, n);
                labels = labels.narrow(0, 0, n);
            }
            using var raw = new TensorDataset(inputs.alias(), labels.alias(), dataset.ClassCount);
            return transform.Apply(raw, inputShape.Length == 0 ? null : inputShape);
        }
        return (Make(data.TrainInputs, data.TrainLabels, preprocessing.TrainLimit),
            Make(data.TestInputs, data.TestLabels, preprocessing.TestLimit));
    }
}
