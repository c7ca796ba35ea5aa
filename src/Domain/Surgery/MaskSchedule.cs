namespace SurgeryService.Domain.Surgery;

/// <summary>
/// When layers' masks update (a Distiller pruning policy): the trainer asks at the start of every iteration, for every
/// layer, before the forward pass. Which schedule runs is the pruning method's and the job kind's choice.
/// </summary>
public interface IMaskSchedule
{
    /// <summary>
    /// Whether layer <paramref name="index"/> updates its mask at the start of <paramref name="iteration"/>. A schedule
    /// that raises the cut over rounds (the magnitude baseline) sets the layer's thresholds for the update it allows.
    /// </summary>
    bool Due(int index, MaskedLayer layer, int iteration);

    /// <summary>The probability that <see cref="Due"/> says yes for layer <paramref name="index"/> at <paramref name="iteration"/>.</summary>
    double UpdateProbability(int index, int iteration);
}

public static class MaskSchedules
{
    /// <summary>Masks stay as they are (a fine-tune, or a method that cut for good at calibration).</summary>
    public static IMaskSchedule Frozen { get; } = new FrozenSchedule();

    /// <summary>
    /// The iterations in which a layer's mask may change (docs/algorithm.md#defaults-and-settings: phases for deep
    /// networks): every layer all along, or convolutions in the first half and fully connected layers in the second.
    /// </summary>
    internal static (int Start, int End) PhaseWindow(SurgerySettings settings, LayerKind kind)
    {
        if (settings.Phases == PruningPhases.All) return (0, settings.Iterations);
        var half = settings.Iterations / 2;
        return kind == LayerKind.Convolution ? (0, half) : (half, settings.Iterations);
    }

    /// <summary>
    /// The expected share of (layer, iteration) pairs in which a run with <paramref name="settings"/> updates a mask in
    /// the paper's fixed mode: how often it pays for mask updates.
    /// </summary>
    public static double ExpectedUpdateShare(SurgerySettings settings, IReadOnlyList<PrunableLayer> layers)
    {
        if (layers.Count == 0) return 0;
        var schedule = PruningMethods.For(settings).Schedule(settings, layers);
        double updates = 0;
        for (var k = 0; k < layers.Count; k++)
        {
            for (var iteration = 0; iteration < settings.Iterations; iteration++) updates += schedule.UpdateProbability(k, iteration);
        }
        return updates / layers.Count / settings.Iterations;
    }

    /// <summary>A uniform draw in [0, 1) that depends only on (seed, layer, iteration), so resumed runs draw the same.</summary>
    internal static double UniformDraw(int seed, int layer, int iteration)
    {
        var x = unchecked((ulong)seed * 0x9E3779B97F4A7C15UL + (ulong)layer * 0xBF58476D1CE4E5B9UL + (ulong)iteration);
        x = unchecked((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9UL);
        x = unchecked((x ^ (x >> 27)) * 0x94D049BB133111EBUL);
        x ^= x >> 31;
        return (x >> 11) * (1.0 / (1UL << 53));
    }

    private sealed class FrozenSchedule : IMaskSchedule
    {
        public bool Due(int index, MaskedLayer layer, int iteration) => false;

        public double UpdateProbability(int index, int iteration) => 0;
    }
}
