using static TorchSharp.torch;
using Parameter = TorchSharp.Modules.Parameter;

namespace SurgeryService.Domain.Surgery;

/// <summary>
/// The surgery state of one prunable layer, rule by rule as in <c>shared/dns-spec.md</c>: the dense shadow weights
/// <c>W</c>, the binary masks <c>T</c>, the thresholds fixed at surgery start, and the mask update. The module's own
/// parameters only ever receive <c>W ⊙ T</c>; the optimizer steps the dense <c>W</c> (straight-through, spec step 5).
/// </summary>
public sealed class DynamicNetworkSurgery : IDisposable
{
    internal DynamicNetworkSurgery(PrunableLayer layer, Parameter weight, Parameter? bias, bool pruneBias, LayerRule rule)
    {
        Layer = layer;
        Rule = rule;
        using var _ = no_grad();
        Weight = new MaskedTensor(weight);
        if (bias is not null && pruneBias)
        {
            Bias = new MaskedTensor(bias);
        }
        else if (bias is not null)
        {
            UnprunedBias = bias;
        }
    }

    public PrunableLayer Layer { get; }
    internal LayerRule Rule { get; }
    internal MaskedTensor Weight { get; }

    /// <summary>The bias, when biases are pruned (settings); otherwise it trains as an ordinary parameter.</summary>
    internal MaskedTensor? Bias { get; }

    private Parameter? UnprunedBias { get; }

    /// <summary>Prune at or below this magnitude (<c>a_k = 0.9 t</c>; the magnitude method's current cut).</summary>
    public float PruneBelow { get; private set; }

    /// <summary>Splice back above this magnitude (<c>b_k = 1.1 t</c>).</summary>
    public float SpliceAbove { get; private set; }

    /// <summary>The population standard deviation of the layer's weights at surgery start (magnitude method).</summary>
    public float StartStd { get; internal set; }

    /// <summary>Connections the masks keep, plus the unpruned bias: the per-iteration count, from the masks.</summary>
    public long Kept => Masked.Sum(m => m.KeptCount) + (UnprunedBias?.numel() ?? 0);

    public long PrunedTotal { get; internal set; }
    public long SplicedTotal { get; internal set; }

    public long Total => Weight.Dense.numel() + (Bias?.Dense.numel() ?? UnprunedBias?.numel() ?? 0);

    internal IEnumerable<MaskedTensor> Masked => Bias is null ? [Weight] : [Weight, Bias];

    /// <summary>
    /// Spec step 2, once at surgery start: from the nonzero entries of W (and b when biases are pruned),
    /// <c>mu = mean|w|</c>, <c>sd = sqrt(mean(w^2) - mu^2)</c>, <c>t = max(mu + c * sd, 0)</c>, <c>a = 0.9 t</c>, <c>b = 1.1 t</c>.
    /// </summary>
    internal void FixThresholds()
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var values = cat(Masked.Select(m => m.Dense.flatten()).ToList());
        var nonzero = values.masked_select(values.ne(0)).abs().to(float64);
        double mu = 0, sd = 0;
        if (nonzero.numel() > 0)
        {
            mu = nonzero.mean().item<double>();
            sd = Math.Sqrt(Math.Max(nonzero.pow(2).mean().item<double>() - mu * mu, 0));
        }
        var t = Math.Max(mu + Rule.CRate * sd, 0);
        SetThresholds((float)(0.9 * t), (float)(1.1 * t));
        StartStd = nonzero.numel() > 0 ? (float)values.to(float64).std(unbiased: false).item<double>() : 0f;
    }

    internal void SetThresholds(float pruneBelow, float spliceAbove)
    {
        PruneBelow = pruneBelow;
        SpliceAbove = spliceAbove;
        foreach (var m in Masked) m.SetThresholds(pruneBelow, spliceAbove);
    }

    /// <summary>
    /// Spec step 3, when the layer's draw says so: <c>T=1, |w| &lt;= a -> 0</c> (pruned); <c>T=0, |w| &gt; b -> 1</c> (spliced).
    /// </summary>
    internal (long Pruned, long Spliced) UpdateMask()
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        long pruned = 0, spliced = 0;
        foreach (var m in Masked)
        {
            // Both rules with their hysteresis in one comparison: a kept entry survives while |w| > a, a cut one
            // comes back once |w| > b. So T' = |w| > (T ? a : b).
            var threshold = where(m.Mask, m.PruneBelow, m.SpliceAbove);
            var kept = m.Dense.abs().gt(threshold);
            var after = kept.count_nonzero().item<long>();
            var splicedHere = kept.gt(m.Mask).count_nonzero().item<long>(); // T' = 1 where T = 0
            spliced += splicedHere;
            pruned += m.KeptCount - after + splicedHere;
            m.SetMask(kept, after);
        }
        PrunedTotal += pruned;
        SplicedTotal += spliced;
        return (pruned, spliced);
    }

    /// <summary>
    /// The magnitude baseline (Han et al. 2015): cut every kept weight with <c>|w| &lt; cut</c> for good. The dense weights
    /// and their momentum are zeroed with the mask, so pruned entries stay exactly zero; nothing is spliced.
    /// </summary>
    internal long PruneByMagnitude(float cut)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        SetThresholds(cut, cut);
        long pruned = 0;
        foreach (var m in Masked)
        {
            var kept = m.Mask.logical_and(m.Dense.abs().ge(cut));
            var before = m.KeptCount;
            m.SetMask(kept);
            pruned += before - m.KeptCount;
            m.Dense.masked_fill_(m.Cut, 0f);
            m.Velocity.masked_fill_(m.Cut, 0f);
        }
        PrunedTotal += pruned;
        return pruned;
    }

    /// <summary>Spec step 4: the module computes with <c>W ⊙ T</c>. Pruned entries are exact zeros.</summary>
    internal void WriteMaskedWeights()
    {
        using var _ = no_grad();
        foreach (var m in Masked)
        {
            m.Parameter.copy_(m.Dense).masked_fill_(m.Cut, 0f);
        }
    }

    /// <summary>Nonzero parameters the deployed layer holds (weights, and biases whether pruned or not).</summary>
    internal long CountKept()
    {
        using var scope = NewDisposeScope();
        var kept = Masked.Sum(m => m.KeptCount);
        if (UnprunedBias is not null) kept += UnprunedBias.count_nonzero().item<long>();
        return kept;
    }

    public void Dispose()
    {
        foreach (var m in Masked) m.Dispose();
    }

    /// <summary>
    /// A module parameter with its dense shadow <c>W</c> and its mask <c>T</c> (bool, same shape and device), kept with
    /// its complement so that writing <c>W ⊙ T</c> every iteration costs one copy and one fill.
    /// </summary>
    internal sealed class MaskedTensor : IDisposable
    {
        public MaskedTensor(Parameter parameter)
        {
            Parameter = parameter;
            Dense = parameter.detach().clone().DetachFromDisposeScope();
            Mask = ones_like(parameter, dtype: @bool).DetachFromDisposeScope();
            Cut = zeros_like(parameter, dtype: @bool).DetachFromDisposeScope();
            Velocity = zeros_like(parameter).DetachFromDisposeScope();
            PruneBelow = tensor(0f, device: Dense.device).DetachFromDisposeScope();
            SpliceAbove = tensor(0f, device: Dense.device).DetachFromDisposeScope();
            KeptCount = parameter.numel();
        }

        public Parameter Parameter { get; }
        public Tensor Dense { get; }

        /// <summary><c>T</c>: true where the connection is kept.</summary>
        public Tensor Mask { get; private set; }

        /// <summary><c>not T</c>: true where the connection is cut.</summary>
        public Tensor Cut { get; private set; }

        /// <summary>Entries of <see cref="Mask"/> that are true, maintained by <see cref="SetMask"/>.</summary>
        public long KeptCount { get; private set; }

        /// <summary>The layer's thresholds as 0-dim tensors on the weights' device.</summary>
        public Tensor PruneBelow { get; private set; }

        public Tensor SpliceAbove { get; private set; }

        /// <summary>Replaces the mask; takes ownership of <paramref name="kept"/> (a bool tensor of the weight's shape).</summary>
        public void SetMask(Tensor kept, long? keptCount = null)
        {
            Mask.Dispose();
            Cut.Dispose();
            Mask = kept.DetachFromDisposeScope();
            Cut = kept.logical_not().DetachFromDisposeScope();
            KeptCount = keptCount ?? kept.count_nonzero().item<long>();
        }

        public void SetThresholds(float pruneBelow, float spliceAbove)
        {
            PruneBelow.Dispose();
            SpliceAbove.Dispose();
            PruneBelow = tensor(pruneBelow, device: Dense.device).DetachFromDisposeScope();
            SpliceAbove = tensor(spliceAbove, device: Dense.device).DetachFromDisposeScope();
        }

        /// <summary>The optimizer's momentum for <see cref="Dense"/>.</summary>
        public Tensor Velocity { get; }

        public void Dispose()
        {
            Dense.Dispose();
            Mask.Dispose();
            Cut.Dispose();
            Velocity.Dispose();
            PruneBelow.Dispose();
            SpliceAbove.Dispose();
        }
    }
}

/// <summary>A layer's resolved settings: the defaults for its kind, overridden by the first matching layer entry.</summary>
internal sealed record LayerRule(double CRate, double Gamma, double Power, int IterStop)
{
    public static LayerRule For(PrunableLayer layer, SurgerySettings settings)
    {
        var overrides = settings.Layers.FirstOrDefault(l => l.Matches(layer.Name, layer.WeightParameter));
        var iterStop = layer.Kind == LayerKind.Convolution ? settings.ConvIterStop : settings.FcIterStop;
        return new LayerRule(
            overrides?.CRate ?? settings.CRate,
            overrides?.Gamma ?? settings.Gamma,
            overrides?.Power ?? settings.Power,
            overrides?.IterStop ?? iterStop);
    }

    /// <summary>Spec step 3: the probability of a mask update, <c>sigma(iter) = (1 + gamma * iter) ^ (-power)</c>.</summary>
    public double Sigma(int iteration) => Math.Pow(1 + Gamma * iteration, -Power);
}
