using SurgeryService.Domain.Datasets;
using SurgeryService.Domain.Models;
using SurgeryService.Domain.Surgery;

namespace SurgeryService.Domain.Jobs;

/// <summary>
/// What a job adds to a worker's memory at its peak, estimated at submit from the model and the settings
/// (docs/operations.md#job-memory):
/// <list type="bullet">
/// <item><see cref="WeightMultiple"/> times the float32 weight bytes: the stored file and its parsed graph, the module's
/// parameters and gradients, the masked layers' dense weights, masks and work tensors, the optimizer's velocity, the
/// last good snapshot, checkpoints being written, the exported results, and the garbage of all of these that the
/// collector has not yet taken back;</item>
/// <item>the activations of the larger of a training batch (<see cref="BackwardFactor"/> times the activation bytes per
/// sample times the batch size) and an evaluation batch (<see cref="SurgerySettings.EvaluationBatchFor"/>: twice the
/// batch size, at most 128 samples, whose forward keeps every value until it returns);</item>
/// <item>the dataset's samples as float32, twice (as read, and as prepared for the model).</item>
/// </list>
/// </summary>
public sealed record JobMemoryEstimate(long WeightBytes, long ActivationBytes, long DatasetBytes)
{
    /// <summary>
    /// Peak worker memory per byte of weights, measured (docs/operations.md#job-memory): a 12.9M-parameter MLP in the real
    /// Worker peaked at 25.5x its weight bytes above the idle worker in fixed mode and 29.9x in budget mode, with a
    /// checkpoint every 10 iterations (JobMemoryTests); ResNet-18 at 31-36x and VGG11-BN at 23.5x in the engine alone,
    /// activations included (bench -- large). 40 covers each with a margin.
    /// </summary>
    public const double WeightMultiple = 40;

    /// <summary>The backward pass holds a gradient per saved activation, about as large again.</summary>
    public const double BackwardFactor = 2;

    public long TotalBytes => WeightBytes + ActivationBytes + DatasetBytes;

    /// <summary>The estimate for a job on <paramref name="model"/> and <paramref name="dataset"/> with these settings.</summary>
    public static JobMemoryEstimate For(ModelEntry model, DatasetEntry dataset, SurgerySettings settings, JobPreprocessing preprocessing)
    {
        var train = Math.Min(dataset.TrainCount, preprocessing.TrainLimit ?? long.MaxValue);
        var test = Math.Min(dataset.TestCount, preprocessing.TestLimit ?? long.MaxValue);
        var sampleElements = dataset.SampleShape.Aggregate(1L, (a, b) => a * Math.Max(1, b));
        return Of(model.ParameterCount, model.ActivationBytesPerSample, settings.BatchSize, train, test, sampleElements);
    }

    /// <summary>The estimate from the numbers it is made of.</summary>
    public static JobMemoryEstimate Of(long parameters, long activationBytesPerSample, int batchSize, long trainSamples, long testSamples,
        long sampleElements)
    {
        var training = BackwardFactor * activationBytesPerSample * Math.Min(batchSize, Math.Max(1, trainSamples));
        var evaluation = (double)activationBytesPerSample * Math.Min(SurgerySettings.EvaluationBatchFor(batchSize), trainSamples + testSamples);
        return new JobMemoryEstimate(
            (long)(WeightMultiple * parameters * sizeof(float)),
            (long)Math.Max(training, evaluation),
            2 * (trainSamples + testSamples) * sampleElements * sizeof(float));
    }

    /// <summary>Why the job does not fit <paramref name="limitBytes"/>, and what to change; null when it fits.</summary>
    public string? Problem(long limitBytes, int batchSize)
    {
        if (TotalBytes <= limitBytes) return null;
        var fix = ActivationBytes > WeightBytes
            ? $"lower batchSize ({batchSize}: activations grow with it) or use a smaller input size"
            : $"the weights dominate: use a smaller model, or a worker with more memory and a higher Jobs:MaxJobMemoryBytes " +
              $"(a lower batchSize or input size saves at most the {Mb(ActivationBytes)} of activations)";
        return $"the job would need about {Mb(TotalBytes)} of worker memory at its peak ({Mb(WeightBytes)} for the weights, " +
               $"{WeightMultiple}x their size; {Mb(ActivationBytes)} for activations; {Mb(DatasetBytes)} for the dataset), over the " +
               $"limit of {Mb(limitBytes)} (Jobs:MaxJobMemoryBytes): {fix}";
    }

    /// <summary>
    /// Bytes per parameter of the training state a snapshot holds, at most: the dense weight, its mask (stored as bool),
    /// and the optimizer's state (SGD's velocity; Adam's two moments).
    /// </summary>
    public static long SnapshotBytesPerParameter(OptimizerChoice optimizer) => optimizer == OptimizerChoice.Adam ? 13 : 9;

    /// <summary>What a snapshot adds to its tensors' bytes at most: names, shapes, thresholds (hundreds of bytes per layer).</summary>
    public const long SnapshotHeaderBytes = 1 << 20;

    /// <summary>
    /// Why the model's training state cannot be snapshotted, or null: the divergence guard, budget mode's best states and
    /// the learning-rate probe each keep the state in one array, which holds at most <see cref="Array.MaxLength"/> bytes
    /// (about 238M parameters with SGD, 165M with Adam). A limit of this version, said at submit rather than at the job's
    /// first snapshot.
    /// </summary>
    public static string? SnapshotProblem(long parameters, OptimizerChoice optimizer)
    {
        var bytes = parameters * SnapshotBytesPerParameter(optimizer) + SnapshotHeaderBytes;
        if (bytes <= Array.MaxLength) return null;
        return $"the model's training state (about {Mb(bytes)} for {parameters:N0} parameters with {optimizer.ToString().ToLowerInvariant()}) " +
               $"is over the {Mb(Array.MaxLength)} that one in-memory snapshot of this version can hold: use a model with fewer parameters" +
               (optimizer == OptimizerChoice.Adam ? ", or optimizer 'sgd', which keeps less state per parameter" : "");
    }

    private static string Mb(long bytes) => FormattableString.Invariant($"{bytes / 1048576.0:N0} MB");
}
