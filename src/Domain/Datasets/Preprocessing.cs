using System.Text.Json.Serialization;
using TorchSharp;
using static TorchSharp.torch;
using SurgeryService.Domain.Torch;

namespace SurgeryService.Domain.Datasets;

/// <summary>How a data set's samples are laid out: channels first (NCHW, the data sets' own layout) or last (NHWC).</summary>
[JsonConverter(typeof(JsonStringEnumConverter<InputLayout>))]
public enum InputLayout
{
    Nchw,
    Nhwc,
}

/// <summary>
/// The input transformation a job applies before feeding a model, since models are trained on differently scaled
/// inputs (raw 0-255 pixels, 0-1, mean/std normalised): <c>x' = (x * Scale + Offset - Mean[c]) / Std[c]</c>, then the
/// layout the model expects, then the model's sample shape (e.g. [784] for a flat input). The defaults feed the data
/// set's raw values unchanged.
/// </summary>
public sealed record InputPreprocessing
{
    public double Scale { get; init; } = 1;
    public double Offset { get; init; }

    /// <summary>Per-channel mean subtracted after scale and offset (channel = dimension 1 of the data set's samples).</summary>
    public IReadOnlyList<float>? Mean { get; init; }

    /// <summary>Per-channel standard deviation divided by after the mean.</summary>
    public IReadOnlyList<float>? Std { get; init; }

    public InputLayout Layout { get; init; } = InputLayout.Nchw;

    public static InputPreprocessing Raw { get; } = new();

    /// <summary>
    /// A new data set (the caller owns it) with transformed inputs shaped for a model whose sample shape is
    /// <paramref name="modelSampleShape"/> (-1 for symbolic dimensions; null keeps the shape).
    /// </summary>
    public TensorDataset Apply(TensorDataset dataset, IReadOnlyList<long>? modelSampleShape = null)
    {
        Validate(dataset);
        using var scope = NewDisposeScope();
        var x = dataset.Inputs.to_type(ScalarType.Float32);
        if (Scale != 1) x = x.Times(Scale);
        if (Offset != 0) x = x.Plus(Offset);
        var channelShape = new long[] { 1, -1 }.Concat(Enumerable.Repeat(1L, dataset.Inputs.shape.Length - 2)).ToArray();
        if (Mean is not null) x = x - torch.tensor(Mean.ToArray()).reshape(channelShape);
        if (Std is not null) x = x / torch.tensor(Std.ToArray()).reshape(channelShape);
        if (Layout == InputLayout.Nhwc && x.dim() >= 3)
        {
            x = x.permute(new long[] { 0 }.Concat(Enumerable.Range(2, (int)x.dim() - 2).Select(d => (long)d)).Append(1).ToArray());
        }
        if (modelSampleShape is not null)
        {
            x = FitShape(x, modelSampleShape, dataset.SampleShape);
        }
        var inputs = x.contiguous().clone().MoveToOuterDisposeScope();
        var labels = dataset.Labels.clone().MoveToOuterDisposeScope();
        return new TensorDataset(inputs, labels, dataset.ClassCount);
    }

    private void Validate(TensorDataset dataset)
    {
        var channels = dataset.Inputs.shape.Length > 1 ? dataset.Inputs.shape[1] : 1;
        if (!double.IsFinite(Scale) || !double.IsFinite(Offset))
        {
            throw new SurgeryException("Bad preprocessing", "scale and offset must be finite numbers");
        }
        foreach (var (values, name) in new[] { (Mean, "mean"), (Std, "std") })
        {
            if (values is not null && values.Count != channels)
            {
                throw new SurgeryException("Bad preprocessing",
                    $"{name} has {values.Count} values but the data set's samples have {channels} channel(s)");
            }
        }
        if (Std is not null && Std.Any(s => !(s > 0)))
        {
            throw new SurgeryException("Bad preprocessing", "every std value must be > 0");
        }
    }

    private Tensor FitShape(Tensor x, IReadOnlyList<long> modelShape, long[] datasetShape)
    {
        var target = SampleShapes.Target(x.shape[1..], modelShape)
            ?? throw new SurgeryException("Dataset does not fit the model", SampleShapes.Describe(datasetShape, Layout, modelShape));
        return target.SequenceEqual(x.shape[1..]) ? x : x.reshape([x.shape[0], .. target]);
    }
}
