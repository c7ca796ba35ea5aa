namespace SurgeryService.Domain.Surgery;

/// <summary>
/// A pruning method: how a layer's mask follows from its weights (torch.nn.utils.prune's <c>compute_mask</c>, a Distiller
/// pruner). The layer (<see cref="MaskedLayer"/>), the trainer's loop and the schedules are shared by every method, so
/// another method is another class behind this interface and one more entry in <see cref="PruningMethods"/>.
/// </summary>
public interface IPruningMethod
{
    /// <summary>The method's name in requests, reports, result file names and ONNX metadata.</summary>
    string Name { get; }

    /// <summary>
    /// Whether a cut connection keeps training and may come back. A method that cuts for good gets the cut entries'
    /// gradients and optimizer state masked, so they stay exactly zero.
    /// </summary>
    bool Splices { get; }

    /// <summary>At surgery start, from the trained dense weights: the layer's thresholds (saved in every checkpoint).</summary>
    void Start(MaskedLayer layer);

    /// <summary>One mask update from the layer's weights and thresholds; returns how many connections it cut and restored.</summary>
    (long Pruned, long Spliced) UpdateMask(MaskedLayer layer);

    /// <summary>
    /// Budget mode (docs/algorithm.md#budget-mode): thresholds and mask that keep <paramref name="keptFraction"/> of the
    /// layer, from its |w| distribution now.
    /// </summary>
    LayerCalibration Calibrate(MaskedLayer layer, double keptFraction);

    /// <summary>When masks update in the paper's fixed-threshold mode.</summary>
    IMaskSchedule Schedule(SurgerySettings settings, IReadOnlyList<PrunableLayer> layers);

    /// <summary>When masks update inside one stage of the budget search.</summary>
    IMaskSchedule StageSchedule(SurgeryStage stage, SurgerySettings settings, IReadOnlyList<PrunableLayer> layers);
}

/// <summary>The one place a <see cref="SurgeryMethod"/> becomes its <see cref="IPruningMethod"/> (and so its name).</summary>
public static class PruningMethods
{
    /// <summary>The method <paramref name="settings"/> name, with its settings.</summary>
    public static IPruningMethod For(SurgerySettings settings) => settings.Method switch
    {
        SurgeryMethod.Dns => new DnsPruning(),
        SurgeryMethod.Magnitude => new MagnitudePruning(settings.MagnitudeRounds),
        var method => throw new ArgumentOutOfRangeException(nameof(settings), method, "no such pruning method"),
    };

    /// <summary>The method's name: <c>dns</c>, <c>magnitude</c>.</summary>
    public static string Name(this SurgeryMethod method) => For(new SurgerySettings { Method = method }).Name;

    /// <summary>The method called <paramref name="name"/> (any case), or null.</summary>
    public static SurgeryMethod? Parse(string name)
    {
        foreach (var method in Enum.GetValues<SurgeryMethod>())
        {
            if (string.Equals(method.Name(), name, StringComparison.OrdinalIgnoreCase)) return method;
        }
        return null;
    }
}
