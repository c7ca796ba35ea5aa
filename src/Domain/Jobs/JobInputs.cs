using SurgeryService.Domain.Datasets;
using static TorchSharp.torch;

namespace SurgeryService.Domain.Jobs;

/// <summary>A job's samples as model inputs; <see cref="Validation"/> is the dataset's own validation split, when it has one.</summary>
public sealed record JobSamples(TensorDataset Train, TensorDataset Test, TensorDataset? Validation) : IDisposable
{
    public void Dispose()
    {
        Train.Dispose();
        Test.Dispose();
        Validation?.Dispose();
    }
}

/// <summary>Turns a stored data set into the model's inputs: sample limits, then <see cref="InputPreprocessing"/>.</summary>
public static class JobInputs
{
    public static JobSamples Prepare(DatasetTensors data, DatasetEntry dataset, JobPreprocessing preprocessing, long[] inputShape)
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
        // The validation split is used whole: it is what the dataset's author set aside for model selection.
        return new JobSamples(Make(data.TrainInputs, data.TrainLabels, preprocessing.TrainLimit),
            Make(data.TestInputs, data.TestLabels, preprocessing.TestLimit),
            data.ValidationInputs is { } x && data.ValidationLabels is { } y ? Make(x, y, null) : null);
    }
}
