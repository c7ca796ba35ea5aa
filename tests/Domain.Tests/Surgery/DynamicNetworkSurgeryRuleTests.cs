using SurgeryService.Domain.Surgery;
using static SurgeryService.Domain.Tests.Surgery.Fixtures;
using static TorchSharp.torch;

namespace SurgeryService.Domain.Tests.Surgery;

/// <summary>One test per rule of docs/algorithm.md, on hand-made tensors.</summary>
public class DynamicNetworkSurgeryRuleTests
{
    private static readonly PrunableLayer Fc = new("fc", LayerKind.FullyConnected, "fc.weight", "fc.bias");
    private static readonly DnsPruning Dns = new();

    private static MaskedLayer Surgery(float[] weights, float[]? bias = null, bool pruneBias = false, double cRate = 1)
    {
        var layer = new MaskedLayer(Fc, Parameter(weights), bias is null ? null : Parameter(bias), pruneBias,
            new LayerRule(cRate, Gamma: 1e-3, Power: 1, IterStop: 100));
        Dns.Start(layer);
        return layer;
    }

    [Fact]
    public void ThresholdsComeFromMeanAndStdOfNonzeroMagnitudes()
    {
        // |w| of the nonzero entries: 1, 2, 3, 4 -> mu 2.5, mean(w^2) 7.5, sd sqrt(1.25); c = 1.
        using var layer = Surgery([1, -2, 3, 0, -4]);

        var t = 2.5 + Math.Sqrt(1.25);
        Assert.Equal(0.9 * t, layer.PruneBelow, 5);
        Assert.Equal(1.1 * t, layer.SpliceAbove, 5);
    }

    [Fact]
    public void NegativeThresholdIsClampedToZero()
    {
        using var layer = Surgery([1, -2, 3, -4], cRate: -10);

        Assert.Equal(0f, layer.PruneBelow);
        Assert.Equal(0f, layer.SpliceAbove);
    }

    [Fact]
    public void ThresholdsIncludeBiasesOnlyWhenBiasesArePruned()
    {
        using var without = Surgery([1, -2, 3, -4], bias: [100], pruneBias: false);
        using var with = Surgery([1, -2, 3, -4], bias: [100], pruneBias: true);

        Assert.True(with.PruneBelow > without.PruneBelow);
        Assert.Null(without.Bias);
        Assert.NotNull(with.Bias);
    }

    [Fact]
    public void PrunedBiasSharesTheLayersUpdateAndKeepsItsOwnMask()
    {
        // |values| 1, 2, 3, 4 and 5, 0.5 -> mu 2.5833, sd 1.5921, t 4.1754: a = 3.7579, b = 4.5930.
        using var layer = Surgery([1, -2, 3, -4], bias: [5, -0.5f], pruneBias: true);

        var (pruned, spliced) = Dns.UpdateMask(layer);

        Assert.Equal([0f, 0f, 0f, 1f], Values(layer.Weight.Mask));
        Assert.Equal([1f, 0f], Values(layer.Bias!.Mask));
        Assert.Equal((4, 0), (pruned, spliced));
        Assert.Equal(2, layer.Kept);

        layer.Weight.Dense[3] = tensor(3.0f); // kept, fell below a: pruned
        layer.Bias.Dense[1] = tensor(4.7f); // cut, grew above b: spliced
        (pruned, spliced) = Dns.UpdateMask(layer);
        layer.WriteMaskedWeights();

        Assert.Equal([0f, 0f, 0f, 0f], Values(layer.Weight.Mask));
        Assert.Equal([1f, 1f], Values(layer.Bias.Mask));
        Assert.Equal((1, 1), (pruned, spliced));
        Assert.Equal(2, layer.Kept);
        Assert.Equal([0f, 0f, 0f, 0f], Values(layer.Weight.Parameter).Select(Math.Abs));
        Assert.Equal([5f, 4.7f], Values(layer.Bias.Parameter));
    }

    [Fact]
    public void PrunesKeptWeightAtOrBelowLowerThreshold()
    {
        using var layer = Surgery([1, -2, 3, 0, -4]); // a = 3.2562, b = 3.9798

        var (pruned, spliced) = Dns.UpdateMask(layer);

        Assert.Equal([0f, 0f, 0f, 0f, 1f], Values(layer.Weight.Mask));
        Assert.Equal(4, pruned);
        Assert.Equal(0, spliced);
        Assert.Equal(1, layer.Kept);
    }

    [Fact]
    public void SplicesWeightWhoseMagnitudeGrowsPastUpperThreshold()
    {
        using var layer = Surgery([1, -2, 3, 0, -4]);
        Dns.UpdateMask(layer);
        layer.Weight.Dense[2] = tensor(4.0f); // grew above b = 3.98

        var (pruned, spliced) = Dns.UpdateMask(layer);

        Assert.Equal(1f, Values(layer.Weight.Mask)[2]);
        Assert.Equal((0L, 1L), (pruned, spliced));
        Assert.Equal(1, layer.SplicedTotal);
    }

    [Fact]
    public void LeavesMaskUnchangedInsideHysteresisBand()
    {
        using var layer = Surgery([1, -2, 3, 0, -4]);
        Dns.UpdateMask(layer); // entry 2 pruned, entry 4 kept
        layer.Weight.Dense[2] = tensor(3.5f); // between a and b: stays pruned
        layer.Weight.Dense[4] = tensor(-3.5f); // between a and b: stays kept

        var (pruned, spliced) = Dns.UpdateMask(layer);

        Assert.Equal((0L, 0L), (pruned, spliced));
        Assert.Equal([0f, 0f, 0f, 0f, 1f], Values(layer.Weight.Mask));
    }

    [Fact]
    public void ThresholdsAreExactAtTheBandEdges()
    {
        using var layer = Surgery([1, -2, 3, 0, -4, 5]);
        var a = layer.PruneBelow;
        var b = layer.SpliceAbove;
        Dns.UpdateMask(layer); // kept: -4 and 5
        layer.Weight.Dense[4] = tensor(-a); // |w| == a: pruned
        layer.Weight.Dense[5] = tensor(MathF.BitIncrement(a)); // just above a: kept
        layer.Weight.Dense[1] = tensor(b); // cut, |w| == b: stays cut
        layer.Weight.Dense[2] = tensor(-MathF.BitIncrement(b)); // cut, just above b: spliced

        var (pruned, spliced) = Dns.UpdateMask(layer);

        Assert.Equal([0f, 0f, 1f, 0f, 0f, 1f], Values(layer.Weight.Mask));
        Assert.Equal((1L, 1L), (pruned, spliced));
        Assert.Equal(2, layer.Kept);
    }

    [Fact]
    public void ModuleReceivesMaskedProductWhileDenseWeightsKeepTheirValues()
    {
        using var layer = Surgery([1, -2, 3, 0, -4]);
        Dns.UpdateMask(layer);

        layer.WriteMaskedWeights();

        Assert.Equal([0f, 0f, 0f, 0f, -4f], Values(layer.Weight.Parameter));
        Assert.Equal([1f, -2f, 3f, 0f, -4f], Values(layer.Weight.Dense));
    }

    [Fact]
    public void DeliveredWeightsHoldPositiveZerosWherePruned()
    {
        using var layer = Surgery([1, -2, 3, 0, -4]);
        Dns.UpdateMask(layer);
        layer.WriteMaskedWeights(); // may write -0 for the cut -2

        layer.WriteDeliveredWeights();

        Assert.Equal([0, 0, 0, 0, BitConverter.SingleToInt32Bits(-4f)],
            Values(layer.Weight.Parameter).Select(BitConverter.SingleToInt32Bits));
    }

    [Fact]
    public void SigmaFollowsTheSpecifiedSchedule()
    {
        var rule = new LayerRule(CRate: 3, Gamma: 1e-3, Power: 1, IterStop: 100);

        Assert.Equal(1.0, rule.Sigma(0));
        Assert.Equal(0.5, rule.Sigma(1000), 12);
        Assert.Equal(Math.Pow(1 + 1e-4 * 5000, -2), new LayerRule(3, 1e-4, 2, 100).Sigma(5000), 12);
    }

    [Fact]
    public void PerLayerSettingsOverrideDefaultsByNameOrGlob()
    {
        var settings = new SurgerySettings
        {
            CRate = 3,
            FcIterStop = 8000,
            ConvIterStop = 10000,
            Layers = [new LayerSettings { Pattern = "conv*", CRate = 1 }, new LayerSettings { Pattern = "fc.weight", IterStop = 5 }],
        };

        var conv = LayerRule.For(new PrunableLayer("conv2", LayerKind.Convolution, "conv2.weight", null), settings);
        var fc = LayerRule.For(Fc, settings);
        var other = LayerRule.For(new PrunableLayer("ip", LayerKind.FullyConnected, "ip.weight", null), settings);

        Assert.Equal((1.0, 10000), (conv.CRate, conv.IterStop));
        Assert.Equal((3.0, 5), (fc.CRate, fc.IterStop));
        Assert.Equal((3.0, 8000), (other.CRate, other.IterStop));
    }

    [Fact]
    public void ExpectedUpdateShareFollowsSigmaUpToIterStopInEachLayersWindow()
    {
        var conv = new PrunableLayer("conv", LayerKind.Convolution, "conv.weight", null);
        var settings = new SurgerySettings { Iterations = 100, Gamma = 0, ConvIterStop = 30, FcIterStop = 80 };

        // sigma = 1: conv updates in 30 of 100 iterations, fc in 80.
        Assert.Equal(0.55, MaskSchedules.ExpectedUpdateShare(settings, [conv, Fc]), 12);
        // In phases fc's window is the second half, so its 80 shrink to 50.
        Assert.Equal(0.40, MaskSchedules.ExpectedUpdateShare(settings with { Phases = PruningPhases.ConvThenFc }, [conv, Fc]), 12);
        // sigma = 1 / (1 + iter) over 4 iterations: 1 + 1/2 + 1/3 + 1/4.
        var decaying = new SurgerySettings { Iterations = 10, Gamma = 1, FcIterStop = 4 };
        Assert.Equal((1 + 1 / 2.0 + 1 / 3.0 + 1 / 4.0) / 10, MaskSchedules.ExpectedUpdateShare(decaying, [Fc]), 12);
        // The magnitude method updates once per round: 5 rounds in 100 iterations.
        Assert.Equal(0.05, MaskSchedules.ExpectedUpdateShare(settings with { Method = SurgeryMethod.Magnitude }, [Fc]), 12);
    }

    [Fact]
    public void MasksLargerThanAFloatCountsExactlyAreCountedExactly()
    {
        // 2^24 + 3 ones: a float sum cannot hold 2^24 + 1 or 2^24 + 3 (it rounds to an even neighbour).
        const long N = (1L << 24) + 3;
        using var all = ones(N);
        using var other = ones(N);
        other[N - 1] = tensor(0f);
        other[0] = tensor(0f);

        Assert.Equal(N, MaskedLayer.Count(all));
        Assert.Equal(N - 2, MaskedLayer.Count(other));
        Assert.Equal(N - 2, MaskedLayer.Overlap(all, other));
    }
}
