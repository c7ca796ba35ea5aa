using SurgeryService.Domain.Datasets;
using static TorchSharp.torch;

namespace SurgeryService.Domain.Jobs;

/// <summary>Turns a stored data set into the model's inputs: sample limits, then <see cref="InputPreprocessing"/>.</summary>
public static class JobInputs
{
    /// <summary>
    /// A problem (for a 422) when samples of <paramref name="sampleShape"/> cannot feed a model whose sample shape is
    /// <paramref name="inputShape"/> (-1 for a symbolic dimension), or null when they can.
    /// </summary>
    public static string? ShapeProblem(long[] sampleShape, long[] inputShape)
    {
        if (inputShape.Length == 0) return null;
        var values = sampleShape.Aggregate(1L, (a, b) => a * b);
        var known = inputShape.Where(d => d > 0).Aggregate(1L, (a, b) => a * b);
        var symbolic = inputShape.Count(d => d <= 0);
        var fits = symbolic == 0 ? known == values : values % known == 0;
        return fits
            ? null
            : $"the dataset's samples have shape [{string.Join(", ", sampleShape)}] ({values} values) but the model takes " +
              $"[{string.Join(", ", inputShape.Select(d => d > 0 ? d.ToString(System.Globalization.CultureInfo.InvariantCulture) : "?"))}]";
    }

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
