using SurgeryService.Domain.Datasets;
using static TorchSharp.torch;

namespace SurgeryService.Domain.Jobs;

/// <summary>Turns a stored data set into the model's inputs: limits, scale, per-channel normalisation, reshape.</summary>
public static class JobInputs
{
    /// <summary>A 422 problem when samples of <paramref name="sampleShape"/> cannot feed a model taking <paramref name="inputShape"/>.</summary>
    public static string? ShapeProblem(long[] sampleShape, long[] inputShape)
    {
        if (inputShape.Length == 0 || inputShape.Any(d => d <= 0)) return null; // dynamic input: the model decides
        long Count(long[] shape) => shape.Aggregate(1L, (a, b) => a * b);
        return Count(sampleShape) == Count(inputShape)
            ? null
            : $"the dataset's samples have shape [{string.Join(", ", sampleShape)}] ({Count(sampleShape)} values) " +
              $"but the model takes [{string.Join(", ", inputShape)}] ({Count(inputShape)} values)";
    }

    public static (TensorDataset Train, TensorDataset Test) Prepare(
        DatasetTensors data, DatasetEntry dataset, JobPreprocessing preprocessing, long[] inputShape)
    {
        using var scope = NewDisposeScope();
        var scale = preprocessing.Scale ?? (dataset.InputType == "uint8" ? 1.0 / 255 : 1.0);
        TensorDataset Make(Tensor inputs, Tensor labels, int? limit)
        {
            if (limit is { } n && n < inputs.shape[0])
            {
                inputs = inputs.narrow(0, 0, n);
                labels = labels.narrow(0, 0, n);
            }
            var x = inputs * scale;
            x = Normalise(x, preprocessing.Mean, isStd: false);
            x = Normalise(x, preprocessing.Std, isStd: true);
            if (ShapeProblem(dataset.SampleShape, inputShape) is { } problem) throw new SurgeryException("Shape mismatch", problem, 422);
            if (inputShape.Length > 0 && inputShape.All(d => d > 0))
            {
                x = x.reshape([x.shape[0], .. inputShape]);
            }
            return new TensorDataset(x.contiguous(), labels.contiguous(), dataset.ClassCount);
        }
        return (Make(data.TrainInputs, data.TrainLabels, preprocessing.TrainLimit),
            Make(data.TestInputs, data.TestLabels, preprocessing.TestLimit));
    }

    private static Tensor Normalise(Tensor x, IReadOnlyList<double> values, bool isStd)
    {
        if (values.Count == 0) return x;
        Tensor v;
        if (values.Count == 1)
        {
            v = tensor(values[0], float32);
        }
        else
        {
            if (x.dim() < 2 || x.shape[1] != values.Count)
            {
                throw new SurgeryException("Bad preprocessing",
                    $"preprocessing.{(isStd ? "std" : "mean")} has {values.Count} values but the samples have " +
                    $"{(x.dim() < 2 ? 1 : x.shape[1])} channels", 422);
            }
            var shape = Enumerable.Repeat(1L, (int)x.dim()).ToArray();
            shape[1] = values.Count;
            v = tensor(values.Select(d => (float)d).ToArray(), float32).view(shape);
        }
        return isStd ? x / v : x - v;
    }
}
