using TorchSharp;
using static TorchSharp.torch;
using Parameter = TorchSharp.Modules.Parameter;
using SurgeryService.Domain.Torch;

namespace SurgeryService.Domain.Surgery;

/// <summary>
/// One prunable layer under surgery, whatever the pruning method (docs/algorithm.md#per-prunable-layer): the dense shadow
/// weights <c>W</c>, the binary masks <c>T</c>, the layer's thresholds and the counts of its mask changes. The module's own
/// parameters only ever receive <c>W ⊙ T</c>; the optimizer steps the dense <c>W</c> (straight-through, step 5). How the
/// mask changes is the method's (<see cref="IPruningMethod"/>); this type only holds and writes it.
/// </summary>
public sealed class MaskedLayer : IDisposable
{
    /// <summary>
    /// A layer of <paramref name="weight"/> (or of the block of it that the layer's <see cref="PrunableLayer.Slice"/>
    /// names: the bias of a block is never pruned, since it does not split along the block).
    /// </summary>
    internal MaskedLayer(PrunableLayer layer, Parameter weight, Parameter? bias, bool pruneBias, LayerRule rule)
    {
        Layer = layer;
        Rule = rule;
        using var _ = no_grad();
        pruneBias &= layer.Slice is null;
        // A block's view of the weight is the layer's own (disposed with it); its gradient is viewed afresh after each
        // backward pass, in the caller's dispose scope.
        var masked = new List<(Tensor Target, Func<Tensor?> Gradient, bool OwnedView)>();
        if (layer.Slice is { } slice)
        {
            masked.Add((slice.Of(weight).DetachFromDisposeScope(), () => weight.grad is { } g ? slice.Of(g) : null, true));
        }
        else
        {
            masked.Add((weight, () => weight.grad, false));
        }
        if (bias is not null && pruneBias) masked.Add((bias, () => bias.grad, false));
        if (masked.Any(p => p.Target.dtype != weight.dtype || p.Target.device_type != weight.device_type || p.Target.device_index != weight.device_index))
        {
            throw new ArgumentException($"layer {layer.Name}: the weight and the bias differ in type or device");
        }

        // The weight and the pruned bias share one flat buffer each for W, T and the update's working memory, so a mask
        // update is a handful of kernel calls per layer, not per tensor (a bias is too small to pay for its own calls).
        var size = masked.Sum(p => p.Target.numel());
        Dense = empty(size, weight.dtype, weight.device).DetachFromDisposeScope();
        Mask = ones(size, weight.dtype, weight.device).DetachFromDisposeScope();
        Spare = empty(size, weight.dtype, weight.device).DetachFromDisposeScope();
        Scratch = empty(size, weight.dtype, weight.device).DetachFromDisposeScope();
        long offset = 0;
        var tensors = new List<MaskedTensor>();
        foreach (var (target, gradient, ownedView) in masked)
        {
            tensors.Add(new MaskedTensor(target, gradient, Dense, Mask, Spare, offset, ownedView));
            offset += target.numel();
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

    /// <summary><c>W</c> of every masked tensor of the layer, end to end (weight, then bias).</summary>
    internal Tensor Dense { get; }

    /// <summary><c>T</c>, flat like <see cref="Dense"/>.</summary>
    internal Tensor Mask { get; private set; }

    /// <summary>Where a method computes the next mask before <see cref="SwapInSpare"/> makes it the mask.</summary>
    internal Tensor Spare { get; private set; }

    /// <summary>Working memory of a mask update, flat like <see cref="Dense"/>.</summary>
    internal Tensor Scratch { get; }

    public PrunableLayer Layer { get; }
    internal LayerRule Rule { get; }
    internal MaskedTensor Weight { get; }

    /// <summary>The bias, when biases are pruned (settings); otherwise it trains as an ordinary parameter.</summary>
    internal MaskedTensor? Bias { get; }

    private Parameter? UnprunedBias { get; }

    /// <summary>Prune at or below this magnitude (DNS: <c>a_k = 0.9 t</c>; the magnitude method: its current cut).</summary>
    public float PruneBelow { get; private set; }

    /// <summary>Splice back above this magnitude (DNS: <c>b_k = 1.1 t</c>; the magnitude method never splices).</summary>
    public float SpliceAbove { get; private set; }

    /// <summary>The population standard deviation of the layer's weights at surgery start (magnitude method).</summary>
    public float StartStd { get; internal set; }

    /// <summary>Connections the masks keep, plus the unpruned bias: the per-iteration count, from the masks.</summary>
    public long Kept => MaskedKept + (UnprunedBias?.numel() ?? 0);

    /// <summary>The ones in the layer's masks, maintained by every change of a mask.</summary>
    internal long MaskedKept { get; private set; }

    public long PrunedTotal { get; internal set; }
    public long SplicedTotal { get; internal set; }

    public long Total => Weight.Dense.numel() + (Bias?.Dense.numel() ?? UnprunedBias?.numel() ?? 0);

    /// <summary>
    /// The fewest connections the budget search lets the layer keep: one per output unit (a convolution's output
    /// channels; a matrix's smaller side, whichever way round its graph stores it). Fewer leave units with no input at
    /// all (docs/algorithm.md#budget-mode).
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
    /// <c>mean|w|</c> and the population standard deviation of |w| over the nonzero masked entries (docs/algorithm.md#per-prunable-layer),
    /// and the population standard deviation of all of them (the magnitude method's scale).
    /// </summary>
    internal (double MeanAbs, double StdAbs, float Std) Statistics()
    {
        using var scope = NewDisposeScope();
        var nonzero = Dense.masked_select(Dense.NotEqualTo(0)).abs().to(float64);
        if (nonzero.numel() == 0) return (0, 0, 0f);
        var mu = nonzero.mean().item<double>();
        var sd = Math.Sqrt(Math.Max(nonzero.Squared().mean().item<double>() - mu * mu, 0));
        return (mu, sd, (float)Dense.to(float64).std(unbiased: false).item<double>());
    }

    /// <summary>
    /// The magnitude at or below which cutting leaves <paramref name="keptFraction"/> of the layer's masked entries (the
    /// (1 - k) quantile of the dense |w|, cut entries included), or -1 when everything is kept; and the count kept.
    /// </summary>
    internal (float Cut, long Keep) QuantileCut(double keptFraction)
    {
        using var scope = NewDisposeScope();
        var n = Dense.numel();
        var keep = Math.Clamp((long)Math.Round(keptFraction * n), 1, n);
        return (keep == n ? -1f : Dense.abs().kthvalue(n - keep, 0, false).values.item<float>(), keep);
    }

    /// <summary>The paper's c_rate that gives threshold <paramref name="t"/>: <c>(t - mean|w|) / std|w|</c> over the nonzero weights.</summary>
    internal double EquivalentCRate(double t)
    {
        var (mu, sd, _) = Statistics();
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
        var (a, _) = QuantileCut(keptFraction);
        foreach (var m in Masked)
        {
            m.Parameter.copy_(m.Dense).mul_(m.Dense.abs().Above(a));
        }
    }

    /// <summary>The share of the layer's masked entries with |w| above <paramref name="cut"/> (what a first prune there keeps).</summary>
    internal double ShareAbove(float cut)
    {
        using var scope = NewDisposeScope();
        return Dense.abs().Above(cut).sum().item<long>() / (double)Dense.numel();
    }

    internal void SetThresholds(float pruneBelow, float spliceAbove)
    {
        // DNS's update relies on b + (a - b) == a in float, which holds for a <= b <= 2a (0.9t and 1.1t; a == b).
        if (!(pruneBelow <= spliceAbove && pruneBelow - spliceAbove + spliceAbove == pruneBelow))
        {
            throw new ArgumentException($"thresholds {pruneBelow} and {spliceAbove} are not a hysteresis band");
        }
        PruneBelow = pruneBelow;
        SpliceAbove = spliceAbove;
    }

    /// <summary>
    /// Makes <see cref="Spare"/> (where a method computed the next mask, holding <paramref name="kept"/> ones) the mask,
    /// without a copy; the old mask becomes the spare buffer.
    /// </summary>
    internal void SwapInSpare(long kept)
    {
        (Mask, Spare) = (Spare, Mask);
        foreach (var m in Masked) m.SwapInSpare();
        MaskedKept = kept;
    }

    /// <summary>
    /// Step 4 (docs/algorithm.md#per-prunable-layer), every iteration: the module computes with <c>W ⊙ T</c>. A cut
    /// negative weight may be written as -0, which computes the same; <see cref="WriteDeliveredWeights"/> writes the
    /// exact zeros a user receives.
    /// </summary>
    internal void WriteMaskedWeights()
    {
        using var _ = no_grad();
        foreach (var m in Masked)
        {
            m.Parameter.copy_(m.Dense).mul_(m.Mask);
        }
    }

    /// <summary>Step 6: the deployed weights, <c>W ⊙ T</c> with every pruned entry exactly +0.</summary>
    internal void WriteDeliveredWeights()
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        foreach (var m in Masked)
        {
            m.Parameter.copy_(m.Dense).FillWhere_(m.Mask.EqualTo(0), 0);
        }
    }

    /// <summary>
    /// Counts the masks' ones after a change made in place (a magnitude cut, a checkpoint); returns how many fewer there are.
    /// </summary>
    internal long RecountMask()
    {
        var before = MaskedKept;
        MaskedKept = Count(Mask);
        return before - MaskedKept;
    }

    /// <summary>
    /// The ones in a 0/1 mask. A float sum of 0/1 values is exact while every partial sum is an integer the mantissa
    /// holds (up to 2^24), whatever the order of the additions; larger masks are summed in slices of 2^24 entries. Summing
    /// them in double instead converts the whole tensor first: 1.3-1.7 s for VGG11-BN's first fully connected layer
    /// (103M entries) on every mask update, against 0.01 s in slices (docs/benchmarks.md#mask-counts-in-double-and-onednn-at-sse41-2026-12-08).
    /// </summary>
    internal static long Count(Tensor mask) => Sliced(mask, null);

    /// <summary>Entries that are 1 in both flat masks, exact as in <see cref="Count"/>.</summary>
    internal static long Overlap(Tensor first, Tensor second) => Sliced(first, second);

    /// <summary>The sum of <paramref name="first"/>, or its dot product with <paramref name="second"/>, slice by exact slice.</summary>
    private static long Sliced(Tensor first, Tensor? second)
    {
        const long Slice = 1 << 24;
        var n = first.numel();
        long total = 0;
        for (long start = 0; start < n; start += Slice)
        {
            var length = Math.Min(Slice, n - start);
            using var a = first.narrow(0, start, length);
            using var b = second?.narrow(0, start, length);
            using var sum = b is null ? a.sum() : a.dot(b);
            total += (long)sum.item<float>();
        }
        return total;
    }

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
        Dense.Dispose();
        Mask.Dispose();
        Spare.Dispose();
        Scratch.Dispose();
    }

    /// <summary>
    /// A module parameter (or a block of one) with its dense shadow <c>W</c> and its mask <c>T</c> (1 or 0, in the
    /// weight's type, shape and device: elementwise float kernels are the fast ones in LibTorch), views into the layer's
    /// flat buffers.
    /// </summary>
    internal sealed class MaskedTensor : IDisposable
    {
        private readonly bool _ownsParameterView;

        public MaskedTensor(Tensor parameter, Func<Tensor?> gradient, Tensor dense, Tensor mask, Tensor spare, long offset, bool ownedView)
        {
            Parameter = parameter;
            Gradient = gradient;
            _ownsParameterView = ownedView;
            Tensor View(Tensor flat) => flat.narrow(0, offset, parameter.numel()).view(parameter.shape).DetachFromDisposeScope();
            Dense = View(dense);
            Dense.copy_(parameter.detach());
            Mask = View(mask);
            _spare = View(spare);
        }

        private Tensor _spare;

        /// <summary>What the module computes with: the parameter, or the view of its block that this layer masks.</summary>
        public Tensor Parameter { get; }

        /// <summary>dL/d(<see cref="Parameter"/>) after a backward pass (a view of the parameter's gradient for a block).</summary>
        public Func<Tensor?> Gradient { get; }

        public Tensor Dense { get; }

        /// <summary><c>T</c>: 1 where the connection is kept, 0 where it is cut.</summary>
        public Tensor Mask { get; private set; }

        /// <summary>Follows the layer, whose next mask (computed in its spare buffer) has become the mask.</summary>
        public void SwapInSpare() => (Mask, _spare) = (_spare, Mask);

        public void Dispose()
        {
            Dense.Dispose();
            Mask.Dispose();
            _spare.Dispose();
            if (_ownsParameterView) Parameter.Dispose();
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

    /// <summary>Step 3 (docs/algorithm.md#mask-update): the probability of a mask update, <c>sigma(iter) = (1 + gamma * iter) ^ (-power)</c>.</summary>
    public double Sigma(int iteration) => Math.Pow(1 + Gamma * iteration, -Power);
}
