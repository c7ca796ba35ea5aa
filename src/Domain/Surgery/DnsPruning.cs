using TorchSharp;
using static TorchSharp.torch;
using SurgeryService.Domain.Torch;

namespace SurgeryService.Domain.Surgery;

/// <summary>
/// Dynamic Network Surgery (Guo, Yao, Chen 2016; docs/algorithm.md), rule by rule: thresholds fixed once at surgery
/// start (step 2), the stochastic schedule of mask updates (<see cref="SigmaSchedule"/>, step 3) and the update itself,
/// which prunes and splices with hysteresis (step 3). Cut weights keep training (step 5, straight-through), which is what
/// lets a connection cut too early come back.
/// </summary>
public sealed class DnsPruning : IPruningMethod
{
    public string Name => "dns";

    public bool Splices => true;

    /// <summary>
    /// Step 2 (docs/algorithm.md#per-prunable-layer), once at surgery start: from the nonzero entries of W (and b when biases are
    /// pruned), <c>mu = mean|w|</c>, <c>sd = sqrt(mean(w^2) - mu^2)</c>, <c>t = max(mu + c * sd, 0)</c>, <c>a = 0.9 t</c>,
    /// <c>b = 1.1 t</c>.
    /// </summary>
    public void Start(MaskedLayer layer)
    {
        var (mu, sd, std) = layer.Statistics();
        var t = Math.Max(mu + layer.Rule.CRate * sd, 0);
        layer.SetThresholds((float)(0.9 * t), (float)(1.1 * t));
        layer.StartStd = std;
    }

    /// <summary>
    /// Step 3 (docs/algorithm.md#mask-update), when the layer's draw says so: <c>T=1, |w| &lt;= a -> 0</c> (pruned);
    /// <c>T=0, |w| &gt; b -> 1</c> (spliced); otherwise unchanged.
    /// </summary>
    public (long Pruned, long Spliced) UpdateMask(MaskedLayer layer)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        // Both rules with their hysteresis in one comparison: a kept entry survives while |w| > a, a cut one comes back
        // once |w| > b. So T' = |w| > (T ? a : b), on float masks (LibTorch's bool kernels are several times slower) and
        // in preallocated buffers (a fresh large tensor per update costs more in page faults than the arithmetic). The
        // per-entry threshold b + (a - b) T T is exact: T T = T for 0/1, and a - b is exact because a and b lie within a
        // factor of two of each other (Sterbenz), so b + (a - b) gives back a.
        using var spliceAbove = layer.SpliceAbove.ToScalar(); // explicit Scalars: see CaffeSgd.Step
        using var band = (layer.PruneBelow - layer.SpliceAbove).ToScalar();
        var threshold = layer.Scratch.fill_(spliceAbove).addcmul_(layer.Mask, layer.Mask, band);
        var kept = layer.Spare.copy_(layer.Dense).abs_().gt_(threshold);
        var after = MaskedLayer.Count(kept);
        var stayed = MaskedLayer.Overlap(kept, layer.Mask);
        var pruned = layer.MaskedKept - stayed;
        var spliced = after - stayed;
        layer.SwapInSpare(after);
        layer.PrunedTotal += pruned;
        layer.SplicedTotal += spliced;
        return (pruned, spliced);
    }

    /// <summary>
    /// Budget mode (docs/algorithm.md#budget-mode): the prune threshold <c>a</c> is the (1 - k) quantile of |w|, with the
    /// paper's band around it (<c>t = a / 0.9</c>, <c>b = 1.1 t</c>), and the mask is set to the first prune's result,
    /// <c>T = |w| &gt; a</c>: the layer then keeps exactly the requested share, where putting <c>t</c> itself at the
    /// quantile would keep more (for Gaussian weights 13.9% when 10% is asked). Cut weights keep their values, so the
    /// stage's updates may splice them back.
    /// </summary>
    public LayerCalibration Calibrate(MaskedLayer layer, double keptFraction)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var a = Math.Max(layer.QuantileCut(keptFraction).Cut, 0f);
        var cRate = layer.EquivalentCRate(a / 0.9);
        var before = layer.MaskedKept;
        layer.SetThresholds(a, (float)(a / 0.9 * 1.1));
        var next = layer.Dense.abs().Above(a).to(layer.Mask.dtype);
        var stayed = MaskedLayer.Overlap(next, layer.Mask);
        layer.Mask.copy_(next);
        layer.RecountMask();
        layer.PrunedTotal += before - stayed;
        layer.SplicedTotal += layer.MaskedKept - stayed;
        layer.WriteMaskedWeights();
        return new LayerCalibration(layer.Layer.Name, keptFraction, a / 0.9, cRate, layer.MaskedKept, layer.Dense.numel());
    }

    /// <summary>Step 3's schedule: each layer in its phase window, until its iter_stop.</summary>
    public IMaskSchedule Schedule(SurgerySettings settings, IReadOnlyList<PrunableLayer> layers) =>
        new SigmaSchedule(settings.Seed, layers.Select(layer =>
        {
            var rule = LayerRule.For(layer, settings);
            var (start, end) = MaskSchedules.PhaseWindow(settings, layer.Kind);
            return new SigmaSchedule.Window(start, end, rule.IterStop, rule);
        }).ToList());

    /// <summary>A budget stage: the paper's schedule restarted at the stage's start, for the stage's mask iterations.</summary>
    public IMaskSchedule StageSchedule(SurgeryStage stage, SurgerySettings settings, IReadOnlyList<PrunableLayer> layers) =>
        new SigmaSchedule(settings.Seed, layers
            .Select(layer => new SigmaSchedule.Window(stage.Start, stage.End, stage.MaskIterations, LayerRule.For(layer, settings)))
            .ToList());

    /// <summary>
    /// Step 3's "when": one draw <c>r ~ U[0,1]</c> per layer per iteration; the mask updates when <c>sigma(iter) &gt; r</c>
    /// and <c>iter &lt; iter_stop</c>, counting iterations from the start of the layer's window.
    /// </summary>
    internal sealed class SigmaSchedule(int seed, IReadOnlyList<SigmaSchedule.Window> windows) : IMaskSchedule
    {
        /// <summary>A layer's iterations <c>[Start, End)</c>, of which the first <c>IterStop</c> may update its mask.</summary>
        public sealed record Window(int Start, int End, int IterStop, LayerRule Rule);

        public bool Due(int index, MaskedLayer layer, int iteration) =>
            UpdateProbability(index, iteration) > MaskSchedules.UniformDraw(seed, index, iteration);

        public double UpdateProbability(int index, int iteration)
        {
            var window = windows[index];
            var local = iteration - window.Start;
            return iteration >= window.Start && iteration < window.End && local < window.IterStop ? window.Rule.Sigma(local) : 0;
        }
    }
}
