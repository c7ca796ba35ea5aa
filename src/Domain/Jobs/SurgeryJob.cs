using SurgeryService.Domain.Datasets;
using SurgeryService.Domain.Surgery;

namespace SurgeryService.Domain.Jobs;

/// <summary>A surgery job as stored in PostgreSQL: what was asked, where it stands, and what it produced.</summary>
public sealed class SurgeryJob
{
    public Guid Id { get; set; }
    public required string TenantId { get; set; }

    /// <summary>Null once the model is deleted after the job finished.</summary>
    public Guid? ModelId { get; set; }

    public Guid? DatasetId { get; set; }
    public required SurgerySettings Settings { get; set; }
    public required JobPreprocessing Preprocessing { get; set; }

    /// <summary>Hangfire queue: <c>cpu</c> or <c>gpu</c>.</summary>
    public required string Queue { get; set; }

    /// <summary>Iterations between checkpoints (and so the most work a lost worker costs).</summary>
    public int CheckpointInterval { get; set; }

    public JobState State { get; set; }
    public string? HangfireJobId { get; set; }

    /// <summary>Set by the cancel endpoint; the running job polls it and stops at the next iteration.</summary>
    public bool CancelRequested { get; set; }

    /// <summary>How many times a worker started this job (more than one after a lost worker or a retry).</summary>
    public int Attempts { get; set; }

    public int Iteration { get; set; }
    public int TotalIterations { get; set; }
    public double? Loss { get; set; }
    public long? Kept { get; set; }
    public long? Total { get; set; }
    public double? LastTop1 { get; set; }
    public double? LastTop5 { get; set; }
    public double? Top1Before { get; set; }
    public double? Top1After { get; set; }

    /// <summary>Prunable layers in the order of the per-layer arrays of <see cref="JobMetric"/>.</summary>
    public List<string> LayerNames { get; set; } = [];

    /// <summary>Weights (and biases) per prunable layer, in the order of <see cref="LayerNames"/>.</summary>
    public List<long> LayerTotals { get; set; } = [];

    public Guid? CheckpointArtifactId { get; set; }
    public int CheckpointIteration { get; set; }

    /// <summary>The checkpoint iteration the latest attempt resumed from, when it did.</summary>
    public int? ResumedFromIteration { get; set; }

    public Guid? ResultOnnxArtifactId { get; set; }
    public Guid? ResultOnnxSparseArtifactId { get; set; }
    public Guid? ResultTorchSharpArtifactId { get; set; }

    public string? Error { get; set; }
    public DateTimeOffset CreatedAt { get; set; }
    public DateTimeOffset? StartedAt { get; set; }
    public DateTimeOffset? FinishedAt { get; set; }
    public DateTimeOffset UpdatedAt { get; set; }

    public bool IsFinished => State is JobState.Succeeded or JobState.Failed or JobState.Cancelled;
}

/// <summary>
/// How dataset inputs become model inputs: <c>x' = (x * scale + offset - mean[c]) / std[c]</c>, then the layout, then
/// the model's input shape (see <see cref="InputPreprocessing"/>), on the first <see cref="TrainLimit"/> /
/// <see cref="TestLimit"/> samples.
/// </summary>
public sealed record JobPreprocessing
{
    /// <summary>Multiplier applied first; by default 1/255 for uint8 inputs (pixels to [0, 1]) and 1 otherwise.</summary>
    public double? Scale { get; init; }

    public double Offset { get; init; }

    /// <summary>One value for every channel, or one per channel (dimension 1 of the samples).</summary>
    public IReadOnlyList<double> Mean { get; init; } = [];

    public IReadOnlyList<double> Std { get; init; } = [];

    /// <summary>Channels first (the datasets' layout) or last, as the model expects.</summary>
    public InputLayout Layout { get; init; } = InputLayout.Nchw;

    /// <summary>Use only the first N training samples (quick trials); all when null.</summary>
    public int? TrainLimit { get; init; }

    /// <summary>Use only the first N test samples; all when null.</summary>
    public int? TestLimit { get; init; }

    /// <summary>Range of preprocessing magnitudes: far inside float32's (1e-38 to 3e38), so inputs stay finite.</summary>
    private const double MinMagnitude = 1e-12, MaxMagnitude = 1e12;

    public IReadOnlyDictionary<string, string> ValidationErrors()
    {
        var errors = new Dictionary<string, string>();
        // Every value becomes float32 and multiplies or shifts inputs: keep it where float32 stays finite and nonzero.
        if (Scale is { } scale && !(Math.Abs(scale) is >= MinMagnitude and <= MaxMagnitude))
        {
            errors["preprocessing.scale"] = $"must be a number whose magnitude is between {MinMagnitude} and {MaxMagnitude}";
        }
        if (!(Math.Abs(Offset) <= MaxMagnitude)) errors["preprocessing.offset"] = $"must be a number between -{MaxMagnitude} and {MaxMagnitude}";
        if (Mean.Any(m => !(Math.Abs(m) <= MaxMagnitude))) errors["preprocessing.mean"] = $"must hold numbers between -{MaxMagnitude} and {MaxMagnitude}";
        if (Std.Any(s => s is not (>= MinMagnitude and <= MaxMagnitude)))
        {
            errors["preprocessing.std"] = $"must hold numbers between {MinMagnitude} and {MaxMagnitude}";
        }
        if (Mean.Count > 1 && Std.Count > 1 && Mean.Count != Std.Count) errors["preprocessing.std"] = "must have as many values as mean";
        if (!Enum.IsDefined(Layout)) errors["preprocessing.layout"] = "must be 'nchw' or 'nhwc'";
        if (TrainLimit is <= 0) errors["preprocessing.trainLimit"] = "must be > 0";
        if (TestLimit is <= 0) errors["preprocessing.testLimit"] = "must be > 0";
        return errors;
    }

    /// <summary>The engine-side transformation for samples with <paramref name="channels"/> channels.</summary>
    public InputPreprocessing ToInput(string inputType, long channels)
    {
        IReadOnlyList<float>? PerChannel(IReadOnlyList<double> values) => values.Count switch
        {
            0 => null,
            1 => Enumerable.Repeat((float)values[0], (int)channels).ToList(),
            _ => values.Select(v => (float)v).ToList(),
        };
        return new InputPreprocessing
        {
            Scale = Scale ?? (inputType == "uint8" ? 1.0 / 255 : 1.0),
            Offset = Offset,
            Mean = PerChannel(Mean),
            Std = PerChannel(Std),
            Layout = Layout,
        };
    }
}
