using TorchSharp;
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
        Parameter[] masked = bias is not null && pruneBias ? [weight, bias] : [weight];
        if (masked.Any(p => p.dtype != weight.dtype || p.device_type != weight.device_type || p.device_index != weight.device_index))
        {
            throw new ArgumentException($"layer {layer.Name}: the weight and the bias differ in type or device");
        }

        // The weight and the pruned bias share one flat buffer each for W, T and the update's working memory, so a mask
        // update is a handful of kernel calls per layer, not per tensor (a bias is too small to pay for its own calls).
        var size = masked.Sum(p => p.numel());
        _dense = empty(size, weight.dtype, weight.device).DetachFromDisposeScope();
        _mask = ones(size, weight.dtype, weight.device).DetachFromDisposeScope();
        _spare = empty(size, weight.dtype, weight.device).DetachFromDisposeScope();
        _scratch = empty(size, weight.dtype, weight.device).DetachFromDisposeScope();
        long offset = 0;
        var tensors = new List<MaskedTensor>();
        foreach (var parameter in masked)
        {
            tensors.Add(new MaskedTensor(parameter, _dense, _mask, _spare, offset));
            offset += parameter.numel();
        }
        Masked = tensors;
        MaskedKept = size;
        Weight = tensors[0];
        if (bias is not null && pruneBias)
        {
            Bias = tensors[1];
        }
        else if (bias is not null)
        {
            UnprunedBias = bias;
        }
    }

    // W, T, the next T and working memory of every masked tensor of the layer, end to end (weight, then bias).
    private readonly Tensor _dense;
    private Tensor _mask;
    private Tensor _spare;
    private readonly Tensor _scratch;

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
    public long Kept => MaskedKept + (UnprunedBias?.numel() ?? 0);

    /// <summary>The ones in the layer's masks, maintained by every change of a mask.</summary>
    private long MaskedKept { get; set; }

    public long PrunedTotal { get; internal set; }
    public long SplicedTotal { get; internal set; }

    public long Total => Weight.Dense.numel() + (Bias?.Dense.numel() ?? UnprunedBias?.numel() ?? 0);

    /// <summary>
    /// The fewest connections the budget search lets the layer keep: one per output unit (a convolution's output
    /// channels; a matrix's smaller side, whichever way round its graph stores it). Fewer leave units with no input at
    /// all: a 320-weight first convolution cut to 0.11% left a network at chance.
    /// </summary>
    public long MinKept
    {
        get
        {
            var shape = Weight.Dense.shape;
            var units = shape.Length switch
            {
                0 => 1,
                1 => shape[0],
                _ when Layer.Kind == LayerKind.Convolution => shape[0],
                _ => Math.Min(shape[0], shape[1]),
            };
            return Math.Min(Total, units);
        }
    }

    /// <summary>The weight, then the bias when it is pruned.</summary>
    internal IReadOnlyList<MaskedTensor> Masked { get; }

    /// <summary>
    /// Spec step 2, once at surgery start: from the nonzero entries of W (and b when biases are pruned),
    /// <c>mu = mean|w|</c>, <c>sd = sqrt(mean(w^2) - mu^2)</c>, <c>t = max(mu + c * sd, 0)</c>, <c>a = 0.9 t</c>, <c>b = 1.1 t</c>.
    /// </summary>
    internal void FixThresholds()
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var nonzero = _dense.masked_select(_dense.ne(0)).abs().to(float64);
        double mu = 0, sd = 0;
        if (nonzero.numel() > 0)
        {
            mu = nonzero.mean().item<double>();
            sd = Math.Sqrt(Math.Max(nonzero.pow(2).mean().item<double>() - mu * mu, 0));
        }
        var t = Math.Max(mu + Rule.CRate * sd, 0);
        SetThresholds((float)(0.9 * t), (float)(1.1 * t));
        StartStd = nonzero.numel() > 0 ? (float)_dense.to(float64).std(unbiased: false).item<double>() : 0f;
    }

    /// <summary>
    /// Budget mode (dns-spec.md, "Budget mode"): the thresholds for keeping <paramref name="keptFraction"/> of the layer,
    /// from its |w| distribution now (the dense shadow weights, cut entries included). The prune threshold <c>a</c> is the
    /// (1 - k) quantile of |w|, with the paper's band around it (<c>t = a / 0.9</c>, <c>b = 1.1 t</c>), and the mask is set
    /// to the first prune's result, <c>T = |w| &gt; a</c>: the layer then keeps exactly the requested share, where putting
    /// <c>t</c> itself at the quantile would keep more (for Gaussian weights 13.9% when 10% is asked). The magnitude method
    /// cuts for good instead (<c>T = T ∧ |w| &gt; a</c>, zeroing the cut weights). Returns the paper's equivalent c_rate.
    /// </summary>
    internal LayerCalibration Calibrate(double keptFraction, bool magnitude)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var n = _dense.numel();
        var keep = Math.Clamp((long)Math.Round(keptFraction * n), 1, n);
        var magnitudes = _dense.abs();
        var a = keep == n ? 0f : magnitudes.kthvalue(n - keep, 0, false).values.item<float>();
        var cRate = EquivalentCRate(a / 0.9);
        var before = MaskedKept;
        if (magnitude)
        {
            SetThresholds(a, a);
            _mask.mul_(magnitudes.gt(a));
            var cut = RecountMask();
            _dense.mul_(_mask);
            foreach (var m in Masked) m.Velocity.mul_(m.Mask);
            PrunedTotal += cut;
        }
        else
        {
            SetThresholds(a, (float)(a / 0.9 * 1.1));
            var next = magnitudes.gt(a).to(_mask.dtype);
            var stayed = Overlap(next, _mask);
            _mask.copy_(next);
            RecountMask();
            PrunedTotal += before - stayed;
            SplicedTotal += MaskedKept - stayed;
        }
        WriteMaskedWeights();
        return new LayerCalibration(Layer.Name, keptFraction, a / 0.9, cRate, MaskedKept, n);
    }

    /// <summary>The paper's c_rate that gives threshold <paramref name="t"/>: <c>(t - mean|w|) / std|w|</c> over the nonzero weights.</summary>
    private double EquivalentCRate(double t)
    {
        using var scope = NewDisposeScope();
        var nonzero = _dense.masked_select(_dense.ne(0)).abs().to(float64);
        if (nonzero.numel() == 0) return 0;
        var mu = nonzero.mean().item<double>();
        var sd = Math.Sqrt(Math.Max(nonzero.pow(2).mean().item<double>() - mu * mu, 0));
        return sd == 0 ? 0 : (t - mu) / sd;
    }

    /// <summary>
    /// Sensitivity analysis: the module computes with this layer pruned by magnitude alone to
    /// <paramref name="keptFraction"/> of its dense weights, ignoring the mask, until <see cref="WriteMaskedWeights"/>.
    /// </summary>
    internal void WriteMagnitudePruned(double keptFraction)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var n = _dense.numel();
        var keep = Math.Clamp((long)Math.Round(keptFraction * n), 1, n);
        var a = keep == n ? -1f : _dense.abs().kthvalue(n - keep, 0, false).values.item<float>();
        foreach (var m in Masked)
        {
            m.Parameter.copy_(m.Dense).mul_(m.Dense.abs().gt(a));
        }
    }

    /// <summary>The share of the layer's masked entries with |w| above <paramref name="cut"/> (what a first prune there keeps).</summary>
    internal double ShareAbove(float cut)
    {
        using var scope = NewDisposeScope();
        return _dense.abs().gt(cut).sum().item<long>() / (double)_dense.numel();
    }

    internal void SetThresholds(float pruneBelow, float spliceAbove)
    {
        // UpdateMask relies on b + (a - b) == a in float, which holds for a <= b <= 2a (0.9t and 1.1t; a == b).
        if (!(pruneBelow <= spliceAbove && pruneBelow - spliceAbove + spliceAbove == pruneBelow))
        {
            throw new ArgumentException($"thresholds {pruneBelow} and {spliceAbove} are not a hysteresis band");
        }
        PruneBelow = pruneBelow;
        SpliceAbove = spliceAbove;
    }

    /// <summary>
    /// Spec step 3, when the layer's draw says so: <c>T=1, |w| &lt;= a -> 0</c> (pruned); <c>T=0, |w| &gt; b -> 1</c> (spliced).
    /// </summary>
    internal (long Pruned, long Spliced) UpdateMask()
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        // Both rules with their hysteresis in one comparison: a kept entry survives while |w| > a, a cut one comes back
        // once |w| > b. So T' = |w| > (T ? a : b), on float masks (LibTorch's bool kernels are several times slower) and
        // in preallocated buffers (a fresh large tensor per update costs more in page faults than the arithmetic). The
        // per-entry threshold b + (a - b) T T is exact: T T = T for 0/1, and a - b is exact because a and b lie within a
        // factor of two of each other (Sterbenz), so b + (a - b) gives back a.
        using var spliceAbove = SpliceAbove.ToScalar(); // explicit Scalars: see SurgeryTrainer.SgdStep
        using var band = (PruneBelow - SpliceAbove).ToScalar();
        var threshold = _scratch.fill_(spliceAbove).addcmul_(_mask, _mask, band);
        var kept = _spare.copy_(_dense).abs_().gt_(threshold);
        var after = Count(kept);
        var stayed = Overlap(kept, _mask);
        var pruned = MaskedKept - stayed;
        var spliced = after - stayed;
        (_mask, _spare) = (_spare, _mask);
        foreach (var m in Masked) m.SwapInSpare();
        MaskedKept = after;
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
        _mask.mul_(_dense.abs().ge_(cut));
        var pruned = RecountMask();
        _dense.mul_(_mask);
        foreach (var m in Masked) m.Velocity.mul_(m.Mask);
        PrunedTotal += pruned;
        return pruned;
    }

    /// <summary>
    /// Spec step 4, every iteration: the module computes with <c>W ⊙ T</c>. A cut negative weight may be written as
    /// -0, which computes the same; <see cref="WriteDeliveredWeights"/> writes the exact zeros a user receives.
    /// </summary>
    internal void WriteMaskedWeights()
    {
        using var _ = no_grad();
        foreach (var m in Masked)
        {
            m.Parameter.copy_(m.Dense).mul_(m.Mask);
        }
    }

    /// <summary>Spec step 6: the deployed weights, <c>W ⊙ T</c> with every pruned entry exactly +0.</summary>
    internal void WriteDeliveredWeights()
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        foreach (var m in Masked)
        {
            m.Parameter.copy_(m.Dense).masked_fill_(m.Mask.eq(0f), 0f);
        }
    }

    /// <summary>
    /// Counts the masks' ones after a change other than <see cref="UpdateMask"/> (a magnitude cut, a checkpoint); returns
    /// how many fewer there are.
    /// </summary>
    internal long RecountMask()
    {
        var before = MaskedKept;
        MaskedKept = Count(_mask);
        return before - MaskedKept;
    }

    /// <summary>
    /// The ones in a 0/1 mask. A float sum of 0/1 values is exact while every partial sum fits the mantissa (2^24
    /// entries); larger tensors sum in double.
    /// </summary>
    private static long Count(Tensor mask) => mask.numel() <= 1 << 24
        ? (long)mask.sum().item<float>()
        : (long)mask.sum(type: float64).item<double>();

    /// <summary>Entries that are 1 in both flat masks, exact as in <see cref="Count"/>.</summary>
    private static long Overlap(Tensor first, Tensor second) => first.numel() <= 1 << 24
        ? (long)first.dot(second).item<float>()
        : (long)first.to(float64).dot(second.to(float64)).item<double>();

    /// <summary>Nonzero parameters the deployed layer holds (weights, and biases whether pruned or not).</summary>
    internal long CountKept()
    {
        using var scope = NewDisposeScope();
        var kept = MaskedKept;
        if (UnprunedBias is not null) kept += UnprunedBias.count_nonzero().item<long>();
        return kept;
    }

    public void Dispose()
    {
        foreach (var m in Masked) m.Dispose();
        _dense.Dispose();
        _mask.Dispose();
        _spare.Dispose();
        _scratch.Dispose();
    }

    /// <summary>
    /// A module parameter with its dense shadow <c>W</c>, its mask <c>T</c> (1 or 0, in the weight's type, shape and
    /// device: elementwise float kernels are the fast ones in LibTorch) and the optimizer's momentum. <c>W</c> and
    /// <c>T</c> are views into the layer's flat buffers.
    /// </summary>
    internal sealed class MaskedTensor : IDisposable
    {
        public MaskedTensor(Parameter parameter, Tensor dense, Tensor mask, Tensor spare, long offset)
        {
            Parameter = parameter;
            Tensor View(Tensor flat) => flat.narrow(0, offset, parameter.numel()).view(parameter.shape).DetachFromDisposeScope();
            Dense = View(dense);
            Dense.copy_(parameter.detach());
            Mask = View(mask);
            _spare = View(spare);
            Velocity = zeros_like(parameter).DetachFromDisposeScope();
        }

        private Tensor _spare;

        public Parameter Parameter { get; }
        public Tensor Dense { get; }

        /// <summary><c>T</c>: 1 where the connection is kept, 0 where it is cut.</summary>
        public Tensor Mask { get; private set; }

        /// <summary>The optimizer's momentum for <see cref="Dense"/>.</summary>
        public Tensor Velocity { get; }

        /// <summary>Follows the layer, whose next mask (computed in its spare buffer) has become the mask.</summary>
        public void SwapInSpare() => (Mask, _spare) = (_spare, Mask);

        public void Dispose()
        {
            Dense.Dispose();
            Mask.Dispose();
            _spare.Dispose();
            Velocity.Dispose();
        }
    }
}

/// <summary>A layer's calibrated thresholds in budget mode: the kept share asked for, <c>t</c>, and the paper's equivalent c_rate.</summary>
public sealed record LayerCalibration(string Layer, double KeptFraction, double Threshold, double CRate, long Kept, long Total);

/// <summary>A layer's resolved settings: the defaults for its kind, overridden by the first matching layer entry.</summary>
internal sealed record LayerRule(double CRate, double Gamma, double Power, int IterStop)
{
    public static LayerRule For(PrunableLayer layer, SurgerySettings settings)
    {
        var overrides = settings.Layers.FirstOrDefault(l => l.Matches(layer.Name, layer.WeightParameter));
        var iterStop = layer.Kind == LayerKind.Convolution ? settings.ConvIterStop : settings.FcIterStop;
        return new LayerRule(
            overrides?.CRate ?? settings.CRate ?? SurgerySettings.DefaultCRate,
            overrides?.Gamma ?? settings.Gamma,
            overrides?.Power ?? settings.Power,
            overrides?.IterStop ?? iterStop);
    }

    /// <summary>Spec step 3: the probability of a mask update, <c>sigma(iter) = (1 + gamma * iter) ^ (-power)</c>.</summary>
    public double Sigma(int iteration) => Math.Pow(1 + Gamma * iteration, -Power);
}
