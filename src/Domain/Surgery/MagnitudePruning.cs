using static TorchSharp.torch;
using SurgeryService.Domain.Torch;

namespace SurgeryService.Domain.Surgery;

/// <summary>
/// The comparison baseline, iterative magnitude pruning (Han et al. 2015; docs/algorithm.md#the-comparison-baseline):
/// <paramref name="rounds"/> times in a layer's window, cut every kept weight with <c>|w| &lt; q * std(W)</c>, q growing to
/// the layer's c_rate, and retrain in between with the mask fixed. A cut is for good: the weight is zeroed and never
/// spliced back.
/// </summary>
public sealed class MagnitudePruning(int rounds) : IPruningMethod
{
    public string Name => "magnitude";

    private int Rounds { get; } = rounds;

    public bool Splices => false;

    /// <summary>The layer's scale, <c>std(W)</c> at surgery start, and the first round's cut.</summary>
    public void Start(MaskedLayer layer)
    {
        layer.StartStd = layer.Statistics().Std;
        var cut = Cut(layer, 0);
        layer.SetThresholds(cut, cut);
    }

    /// <summary>Cuts every kept weight with <c>|w| &lt; cut</c> (the layer's current threshold) for good.</summary>
    public (long Pruned, long Spliced) UpdateMask(MaskedLayer layer)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        layer.Mask.mul_(layer.Dense.abs().AtLeast(layer.PruneBelow));
        var pruned = layer.RecountMask();
        layer.Dense.mul_(layer.Mask);
        layer.PrunedTotal += pruned;
        return (pruned, 0);
    }

    /// <summary>
    /// Budget mode: cuts, for good, every weight at or below the (1 - k) quantile of |w| (<c>T = T ∧ |w| &gt; a</c>), so the
    /// layer keeps the requested share; the stage then retrains the survivors.
    /// </summary>
    public LayerCalibration Calibrate(MaskedLayer layer, double keptFraction)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var a = Math.Max(layer.QuantileCut(keptFraction).Cut, 0f);
        var cRate = layer.EquivalentCRate(a / 0.9);
        layer.SetThresholds(a, a);
        layer.Mask.mul_(layer.Dense.abs().Above(a));
        layer.PrunedTotal += layer.RecountMask();
        layer.Dense.mul_(layer.Mask);
        layer.WriteMaskedWeights();
        return new LayerCalibration(layer.Layer.Name, keptFraction, a / 0.9, cRate, layer.MaskedKept, layer.Dense.numel());
    }

    /// <summary>A round starts at each <c>r / rounds</c> of a layer's phase window.</summary>
    public IMaskSchedule Schedule(SurgerySettings settings, IReadOnlyList<PrunableLayer> layers) =>
        new RoundSchedule(this, layers.Select(l => MaskSchedules.PhaseWindow(settings, l.Kind)).ToList());

    /// <summary>A budget stage: the calibration cut for good; the stage only retrains.</summary>
    public IMaskSchedule StageSchedule(SurgeryStage stage, SurgerySettings settings, IReadOnlyList<PrunableLayer> layers) =>
        MaskSchedules.Frozen;

    /// <summary>Round <paramref name="round"/>'s cut: <c>q std(W)</c> with <c>q = c_rate (round + 1) / rounds</c>.</summary>
    private float Cut(MaskedLayer layer, int round) => (float)(layer.Rule.CRate * (round + 1) / Rounds * layer.StartStd);

    /// <summary>Due at the start of each round of a layer's window, with that round's cut as the layer's threshold.</summary>
    private sealed class RoundSchedule(MagnitudePruning method, IReadOnlyList<(int Start, int End)> windows) : IMaskSchedule
    {
        public bool Due(int index, MaskedLayer layer, int iteration)
        {
            if (Round(index, iteration) is not { } round) return false;
            var cut = method.Cut(layer, round);
            layer.SetThresholds(cut, cut);
            return true;
        }

        public double UpdateProbability(int index, int iteration) => Round(index, iteration) is null ? 0 : 1;

        /// <summary>The round that starts at <paramref name="iteration"/> in the layer's window, if one does.</summary>
        private int? Round(int index, int iteration)
        {
            var (start, end) = windows[index];
            if (iteration < start || iteration >= end) return null;
            var local = iteration - start;
            var length = end - start;
            // In a window shorter than the rounds several start together; the highest cut is what they leave.
            for (var r = method.Rounds - 1; r >= 0; r--)
            {
                if (local == (int)((long)r * length / method.Rounds)) return r;
            }
            return null;
        }
    }
}
