using SurgeryService.Domain.Surgery;

namespace SurgeryService.Domain.Jobs;

/// <summary>
/// What a job does, decided once from its settings (the one place that reads which of their optional parts are set):
/// the paper's fixed thresholds, the budget search, or a sensitivity analysis that trains nothing. A closed set: code
/// that acts on a job switches on these three types.
/// </summary>
public abstract record JobKind
{
    private protected JobKind(SurgerySettings settings) => Settings = settings;

    public SurgerySettings Settings { get; }

    /// <summary>The API's name for the kind (a job's <c>mode</c>).</summary>
    public abstract string Name { get; }

    /// <summary>
    /// A sensitivity analysis when <see cref="SurgerySettings.Sensitivity"/> is set; budget mode when a target is set or
    /// no c_rate is named anywhere (docs/algorithm.md#budget-mode); otherwise the paper's fixed thresholds.
    /// </summary>
    public static JobKind Of(SurgerySettings settings) => settings switch
    {
        { Sensitivity: { } sensitivity } => new SensitivityJob(settings, sensitivity),
        { Target: { } target } => new BudgetJob(settings, target),
        { CRate: null } when settings.Layers.All(l => l.CRate is null) => new BudgetJob(settings, new SurgeryTarget()),
        _ => new FixedJob(settings),
    };
}

/// <summary>The paper's fixed thresholds from the c_rates the job names.</summary>
public sealed record FixedJob : JobKind
{
    internal FixedJob(SurgerySettings settings) : base(settings) { }

    public const string ModeName = "fixed";

    public override string Name => ModeName;
}

/// <summary>Budget mode: the most compressed model within <see cref="Target"/>'s accuracy budget.</summary>
public sealed record BudgetJob : JobKind
{
    internal BudgetJob(SurgerySettings settings, SurgeryTarget target) : base(settings) => Target = target;

    public const string ModeName = "budget";

    public override string Name => ModeName;

    /// <summary>The target given, or the defaults when the job names neither a target nor a c_rate.</summary>
    public SurgeryTarget Target { get; }

    /// <summary>Training iterations of the whole search.</summary>
    public int MaxIterations => Target.MaxIterations ?? Settings.Iterations;
}

/// <summary>Per-layer sensitivity curves only: nothing is trained and no model is delivered.</summary>
public sealed record SensitivityJob : JobKind
{
    internal SensitivityJob(SurgerySettings settings, SensitivitySettings sensitivity) : base(settings) => Sensitivity = sensitivity;

    public const string ModeName = "sensitivity";

    public override string Name => ModeName;

    public SensitivitySettings Sensitivity { get; }
}
