using System.Text.Json.Serialization;

namespace SurgeryService.Domain.Surgery;

[JsonConverter(typeof(JsonStringEnumConverter<SurgeryMethod>))]
public enum SurgeryMethod
{
    /// <summary>Dynamic Network Surgery (Guo et al. 2016): prune and splice inside one retraining run.</summary>
    Dns,

    /// <summary>Han et al. 2015: iterative prune-then-retrain with fixed masks, no splicing.</summary>
    Magnitude,
}

/// <summary>Caffe's learning-rate policies.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<LearningRatePolicy>))]
public enum LearningRatePolicy
{
    /// <summary><c>lr</c>.</summary>
    Fixed,

    /// <summary><c>lr * lr_gamma ^ floor(iter / lr_step)</c>.</summary>
    Step,

    /// <summary><c>lr * (1 + lr_gamma * iter) ^ (-lr_power)</c>.</summary>
    Inv,
}

[JsonConverter(typeof(JsonStringEnumConverter<PruningPhases>))]
public enum PruningPhases
{
    /// <summary>Every prunable layer from the first iteration.</summary>
    All,

    /// <summary>Convolutions during the first half of the iterations, fully connected layers in the second.</summary>
    ConvThenFc,
}

/// <summary>What steps the dense weights (docs/algorithm.md#optimizers).</summary>
[JsonConverter(typeof(JsonStringEnumConverter<OptimizerChoice>))]
public enum OptimizerChoice
{
    /// <summary>Caffe's SGD with momentum, as the released DNS code trains.</summary>
    Sgd,

    /// <summary>Adam (Kingma and Ba 2015), with the cut connections' gradients and moments masked.</summary>
    Adam,
}

[JsonConverter(typeof(JsonStringEnumConverter<DeviceChoice>))]
public enum DeviceChoice
{
    Auto,
    Cpu,
    Cuda,
}

/// <summary>
/// Overrides for the layers whose name matches <see cref="Pattern"/>: the exact layer or parameter name, or a glob with
/// <c>*</c> (e.g. <c>conv*</c>). The first matching entry wins.
/// </summary>
public sealed record LayerSettings
{
    public required string Pattern { get; init; }

    /// <summary>
    /// This layer's c_rate, in standard deviations of |w| (-10 to 100; a negative one
    /// sets the threshold below mean |w|); default: the job's <c>cRate</c>.
    /// </summary>
    public double? CRate { get; init; }

    public int? IterStop { get; init; }

    /// <summary>This layer's mask-update gamma, per iteration (0 to 100); default: the job's <c>gamma</c>.</summary>
    public double? Gamma { get; init; }

    /// <summary>This layer's mask-update power, an exponent (0 to 10); default: the job's <c>power</c>.</summary>
    public double? Power { get; init; }

    public bool Matches(string layerName, string weightParameter) =>
        LayerPattern.IsMatch(Pattern, layerName) || LayerPattern.IsMatch(Pattern, weightParameter);
}

/// <summary>
/// Every setting of one surgery (docs/algorithm.md#defaults-and-settings). Serialises to JSON as the Api's request body.
/// </summary>
public sealed record SurgerySettings
{
    public SurgeryMethod Method { get; init; } = SurgeryMethod.Dns;

    /// <summary>The paper's default c_rate, used in fixed-threshold mode by layers that name none.</summary>
    public const double DefaultCRate = 3;

    /// <summary>
    /// c_rate of every layer: threshold = mean|w| + c_rate * std|w| (the paper's fixed-threshold mode), in standard
    /// deviations of |w|, -10 to 100 (the paper allows a negative c_rate; the threshold never goes below 0). When
    /// neither this nor any layer entry names one, the job runs in budget mode
    /// (<see cref="Target"/>).
    /// </summary>
    public double? CRate { get; init; }

    /// <summary>
    /// Budget mode: the most compressed model within an accuracy budget, with per-layer thresholds found by the search.
    /// Used when set, and (with its defaults) when no c_rate is named anywhere (<see cref="Jobs.JobKind.Of"/>).
    /// </summary>
    public SurgeryTarget? Target { get; init; }

    /// <summary>
    /// A job that only measures per-layer sensitivity (<see cref="Surgery.Sensitivity"/>): nothing is trained and no model
    /// is delivered. Set by <c>POST /api/jobs/sensitivity</c>.
    /// </summary>
    public SensitivitySettings? Sensitivity { get; init; }

    /// <summary>
    /// Probability schedule of a mask update: sigma(iter) = (1 + gamma * iter) ^ (-power). Gamma is per iteration,
    /// 0 to 100; default 0.001.
    /// </summary>
    public double Gamma { get; init; } = 0.001;

    /// <summary>The exponent of the mask-update schedule (see <see cref="Gamma"/>), 0 to 10; default 1.</summary>
    public double Power { get; init; } = 1;

    /// <summary>Iteration after which convolution masks are frozen.</summary>
    public int ConvIterStop { get; init; } = 10000;

    /// <summary>Iteration after which fully connected masks are frozen.</summary>
    public int FcIterStop { get; init; } = 8000;

    /// <summary>Per-layer overrides, the first whose pattern matches a layer wins; at most <see cref="MaxLayers"/> (256) entries; none by default.</summary>
    public IReadOnlyList<LayerSettings> Layers { get; init; } = [];

    /// <summary>Most entries <see cref="Layers"/> may have: patterns cover many layers, so a model never needs more.</summary>
    public const int MaxLayers = 256;

    public int Iterations { get; init; } = 20000;
    public int BatchSize { get; init; } = 64;

    /// <summary>Samples per evaluation batch for this <see cref="BatchSize"/> (<see cref="EvaluationBatchFor"/>).</summary>
    public int EvaluationBatch => EvaluationBatchFor(BatchSize);

    /// <summary>Most samples per evaluation batch.</summary>
    public const int MaxEvaluationBatch = 128;

    /// <summary>
    /// Samples per evaluation batch: twice the training batch, at most <see cref="MaxEvaluationBatch"/>. A forward pass
    /// without gradients holds about half of what a training step holds per sample, so evaluating never needs more
    /// memory than training, and a smaller <c>batchSize</c> lowers both. The cap is measured (docs/benchmarks.md#evaluation-batch):
    /// on a CPU, MNIST CNNs evaluated 6,000 images 4-9x faster in batches of 64-128 than of 1,000 (whose activations
    /// leave the caches), and MLPs at the same speed.
    /// </summary>
    public static int EvaluationBatchFor(int batchSize) => Math.Clamp(2 * batchSize, 1, MaxEvaluationBatch);

    /// <summary>
    /// The base learning rate, greater than 0 and at most 10000. Default (null): the learning-rate probe picks it from
    /// the starting model before training (docs/algorithm.md#learning-rate-probe); a rate named here is used as given.
    /// </summary>
    public double? LearningRate { get; init; }

    /// <summary>
    /// The rate a trainer starts from before any probe has run, and the usual rate of SGD on inputs scaled to about
    /// [0, 1]; the probe's answer replaces it.
    /// </summary>
    public const double FallbackLearningRate = 0.01;

    /// <summary>
    /// <c>sgd</c> (default; Caffe's SGD with <see cref="Momentum"/>, as the paper trains) or <c>adam</c> (beta 0.9 and
    /// 0.999; <see cref="Momentum"/> is not used). Either way the optimizer never moves a connection the mask has cut
    /// unless the method may splice it back (docs/algorithm.md#optimizers).
    /// </summary>
    public OptimizerChoice Optimizer { get; init; } = OptimizerChoice.Sgd;

    public LearningRatePolicy LrPolicy { get; init; } = LearningRatePolicy.Inv;

    /// <summary>
    /// Caffe's <c>lr_gamma</c>: the factor per step (<c>step</c>) or the decay per iteration (<c>inv</c>), 0 to 10;
    /// default 0.0001.
    /// </summary>
    public double LrGamma { get; init; } = 1e-4;

    /// <summary>Caffe's <c>lr_power</c>, the exponent of the <c>inv</c> policy, 0 to 10; default 0.75.</summary>
    public double LrPower { get; init; } = 0.75;

    public int LrStepSize { get; init; } = 10000;
    public double Momentum { get; init; } = 0.9;

    /// <summary>L2 weight decay, a factor on the weights added to their gradient, 0 to 1; default 0.0005.</summary>
    public double WeightDecay { get; init; } = 5e-4;

    /// <summary>Whether biases are pruned with their layer's weights (true) or train unpruned (false); default false.</summary>
    public bool PruneBiases { get; init; }

    /// <summary>
    /// Whether embedding tables (an ONNX Gather over a stored [vocabulary, dimension] table, as token embeddings export)
    /// are pruned like the other layers; default false: they train unpruned, since a cut entry of a lookup table
    /// zeroes one coordinate of one token's vector, which saves no computation.
    /// </summary>
    public bool PruneEmbeddings { get; init; }

    /// <summary>Biases learn at this multiple of the learning rate (Caffe's LeNet uses <c>lr_mult: 2</c>).</summary>
    public double BiasLrMultiplier { get; init; } = 1;
    public PruningPhases Phases { get; init; } = PruningPhases.All;

    /// <summary>Magnitude method only: prune-then-retrain rounds; the threshold multiplier grows to c_rate over them.</summary>
    public int MagnitudeRounds { get; init; } = 5;

    public int EvalInterval { get; init; } = 1000;
    public int Seed { get; init; } = 1;
    public DeviceChoice Device { get; init; } = DeviceChoice.Auto;

    /// <summary>Throws a <see cref="SurgeryException"/> that names every bad setting.</summary>
    public void Validate()
    {
        var errors = ValidationErrors();
        if (errors.Count > 0)
        {
            throw new SurgerySettingsException(errors);
        }
    }

    /// <summary>Setting name -> problem, empty when valid.</summary>
    public IReadOnlyDictionary<string, string> ValidationErrors()
    {
        var errors = new Dictionary<string, string>();
        void Check(bool ok, string name, string problem)
        {
            if (!ok) errors.TryAdd(name, problem);
        }
        // The documented ranges: wide enough for every schedule in the paper and Caffe's solvers, narrow enough that no
        // value overflows the arithmetic it enters (NaN and 1e300 fail every check).
        static bool InRange(double value, double min, double max) => value >= min && value <= max;
        const double MinCRate = -10, MaxCRate = 100, MaxGamma = 100, MaxPower = 10;

        Check(CRate is null || InRange(CRate.Value, MinCRate, MaxCRate), "cRate", $"must be between {MinCRate} and {MaxCRate}");
        if (Target is not null)
        {
            Check(CRate is null && Layers.All(l => l.CRate is null), "target",
                "cannot be combined with cRate: budget mode chooses every layer's threshold itself; remove target or the cRates");
            foreach (var (name, problem) in Target.ValidationErrors(Iterations)) Check(false, "target." + name, problem);
        }
        if (Sensitivity is not null)
        {
            Check(Target is null && CRate is null && Layers.All(l => l.CRate is null), "sensitivity",
                "cannot be combined with target or cRate: a sensitivity analysis prunes each layer alone and trains nothing");
            foreach (var (name, problem) in Sensitivity.ValidationErrors()) Check(false, "sensitivity." + name, problem);
        }
        Check(InRange(Gamma, 0, MaxGamma), "gamma", $"must be between 0 and {MaxGamma}");
        Check(InRange(Power, 0, MaxPower), "power", $"must be between 0 and {MaxPower}");
        Check(ConvIterStop >= 0, "convIterStop", "must be >= 0");
        Check(FcIterStop >= 0, "fcIterStop", "must be >= 0");
        Check(Iterations is > 0 and <= 10_000_000, "iterations", "must be between 1 and 10000000");
        Check(BatchSize is > 0 and <= 65536, "batchSize", "must be between 1 and 65536");
        Check(LearningRate is not { } rate || (InRange(rate, 0, 10_000) && rate > 0), "learningRate", "must be greater than 0 and at most 10000");
        Check(InRange(LrGamma, 0, 10), "lrGamma", "must be between 0 and 10");
        Check(InRange(LrPower, 0, 10), "lrPower", "must be between 0 and 10");
        Check(LrStepSize > 0, "lrStepSize", "must be > 0");
        Check(double.IsFinite(Momentum) && Momentum is >= 0 and < 1, "momentum", "must be in [0, 1)");
        Check(InRange(WeightDecay, 0, 1), "weightDecay", "must be between 0 and 1");
        Check(double.IsFinite(BiasLrMultiplier) && BiasLrMultiplier is >= 0 and <= 100, "biasLrMultiplier", "must be between 0 and 100");
        Check(MagnitudeRounds is > 0 and <= 100, "magnitudeRounds", "must be between 1 and 100");
        Check(EvalInterval > 0, "evalInterval", "must be > 0");
        Check(Enum.IsDefined(Method), "method", "must be 'dns' or 'magnitude'");
        Check(Enum.IsDefined(Optimizer), "optimizer", "must be 'sgd' or 'adam'");
        Check(Enum.IsDefined(LrPolicy), "lrPolicy", "must be 'fixed', 'step' or 'inv'");
        Check(Enum.IsDefined(Phases), "phases", "must be 'all' or 'convThenFc'");
        Check(Enum.IsDefined(Device), "device", "must be 'auto', 'cpu' or 'cuda'");
        Check(Layers.Count <= MaxLayers, "layers", $"has {Layers.Count} entries; at most {MaxLayers} (a pattern such as \"conv*\" covers many layers)");
        for (var i = 0; i < Math.Min(Layers.Count, MaxLayers); i++)
        {
            var layer = Layers[i];
            Check(!string.IsNullOrWhiteSpace(layer.Pattern), $"layers[{i}].pattern", "is required");
            if (layer.Pattern is not null && StoredText.Problem(layer.Pattern, ColumnLimits.Name) is { } pattern) Check(false, $"layers[{i}].pattern", pattern);
            Check(layer.CRate is null || InRange(layer.CRate.Value, MinCRate, MaxCRate), $"layers[{i}].cRate", $"must be between {MinCRate} and {MaxCRate}");
            Check(layer.IterStop is null or >= 0, $"layers[{i}].iterStop", "must be >= 0");
            Check(layer.Gamma is null || InRange(layer.Gamma.Value, 0, MaxGamma), $"layers[{i}].gamma", $"must be between 0 and {MaxGamma}");
            Check(layer.Power is null || InRange(layer.Power.Value, 0, MaxPower), $"layers[{i}].power", $"must be between 0 and {MaxPower}");
        }
        return errors;
    }
}

/// <summary>Invalid settings: <see cref="Errors"/> maps each bad setting's name to its problem.</summary>
public sealed class SurgerySettingsException(IReadOnlyDictionary<string, string> errors)
    : SurgeryException("Invalid surgery settings",
        string.Join("; ", errors.Select(e => $"{e.Key} {e.Value}")), ErrorKind.BadInput)
{
    public IReadOnlyDictionary<string, string> Errors { get; } = errors;
}

/// <summary>
/// What a budget-mode job aims for: the most compressed model whose validation top-1 is at most
/// <see cref="MaxAccuracyDrop"/> points below the starting model's, measured on <see cref="Validation"/> of the training
/// samples held out (seeded, never trained on).
/// </summary>
public sealed record SurgeryTarget
{
    /// <summary>Most validation top-1 the compressed model may lose, in percentage points.</summary>
    public double MaxAccuracyDrop { get; init; } = 0.5;

    /// <summary>Compression the job must reach for <c>budgetMet</c>; the search goes as far as the budget allows anyway.</summary>
    public double? MinCompression { get; init; }

    /// <summary>Training iterations of the whole search (all stages and the final fine-tune); default: <c>iterations</c>.</summary>
    public int? MaxIterations { get; init; }

    /// <summary>
    /// Wall-clock minutes the job may run, counted from its first start (a resumed attempt goes on counting), 1 to 10080
    /// (a week); fractions allowed. The search fits its stages and fine-tune to the pace it measures
    /// (docs/algorithm.md#time-budget) and never trains past <see cref="MaxIterations"/>. Default: none (no time limit).
    /// </summary>
    public double? MaxMinutes { get; init; }

    /// <summary>The longest time budget: a week.</summary>
    public const double MaxTimeBudgetMinutes = 10_080;

    /// <summary>Share of the training samples held out for validation (at most 10,000 samples).</summary>
    public double Validation { get; init; } = 0.1;

    public const int MaxValidationSamples = 10_000;

    /// <summary>The validation split is the same samples for every job on a dataset, whatever its training seed.</summary>
    public const int ValidationSplitSeed = 1;

    /// <summary>Samples held out of <paramref name="trainCount"/> training samples.</summary>
    public int ValidationCount(long trainCount) => ValidationCount(Validation, trainCount);

    /// <summary>Samples a share of <paramref name="validation"/> holds out of <paramref name="trainCount"/> training samples.</summary>
    public static int ValidationCount(double validation, long trainCount) =>
        (int)Math.Clamp(Math.Round(trainCount * validation), Math.Min(1, trainCount - 1), Math.Min(MaxValidationSamples, trainCount - 1));

    /// <summary>The problem with a validation share, or null.</summary>
    public static string? ValidationShareProblem(double validation) =>
        !double.IsFinite(validation) || validation is <= 0 or > 0.5 ? "must be a share of the training samples in (0, 0.5]" : null;

    /// <summary>Field name (relative to <c>target</c>) -> problem.</summary>
    public IEnumerable<(string Name, string Problem)> ValidationErrors(int iterations)
    {
        if (!double.IsFinite(MaxAccuracyDrop) || MaxAccuracyDrop is < 0 or > 100)
            yield return ("maxAccuracyDrop", "must be between 0 and 100 (top-1 percentage points)");
        if (MinCompression is { } c && (!double.IsFinite(c) || c < 1 || c > 1e6))
            yield return ("minCompression", "must be between 1 and 1000000");
        if (MaxIterations is { } m && m is < 100 or > 10_000_000)
            yield return ("maxIterations", "must be between 100 and 10000000");
        if (MaxMinutes is { } minutes && !(minutes is >= 1 and <= MaxTimeBudgetMinutes))
            yield return ("maxMinutes", $"must be between 1 and {MaxTimeBudgetMinutes} (wall-clock minutes from the job's start)");
        if (ValidationShareProblem(Validation) is { } validation) yield return ("validation", validation);
    }
}

/// <summary>
/// A sensitivity-only job: each prunable layer alone pruned by magnitude to <see cref="Surgery.Sensitivity.Ladder"/>'s
/// kept shares and evaluated on <see cref="Validation"/> of the training samples, held out the same way as in budget mode.
/// </summary>
public sealed record SensitivitySettings
{
    /// <summary>Share of the training samples held out for validation (at most 10,000 samples); the same split as budget mode.</summary>
    public double Validation { get; init; } = 0.1;

    /// <summary>Field name (relative to <c>sensitivity</c>) -> problem.</summary>
    public IEnumerable<(string Name, string Problem)> ValidationErrors()
    {
        if (SurgeryTarget.ValidationShareProblem(Validation) is { } validation) yield return ("validation", validation);
    }
}
