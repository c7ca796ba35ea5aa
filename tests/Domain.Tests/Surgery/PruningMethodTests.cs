using SurgeryService.Domain.Surgery;
using static SurgeryService.Domain.Tests.Surgery.Fixtures;
using static TorchSharp.torch;

namespace SurgeryService.Domain.Tests.Surgery;

/// <summary>Every pruning method through the one interface the trainer and the budget search use.</summary>
public class PruningMethodTests
{
    private static readonly PrunableLayer Fc = new("fc", LayerKind.FullyConnected, "fc.weight", null);

    public static TheoryData<SurgeryMethod> Methods => [SurgeryMethod.Dns, SurgeryMethod.Magnitude];

    /// <summary>
    /// The method <paramref name="name"/> names, started on a layer of <c>[1, -2, 3, 0, -4]</c> with c_rate 1 and one round:
    /// DNS prunes at or below a = 0.9 (mean|w| + std|w|) = 3.26; the magnitude method below std(W) = 2.42.
    /// </summary>
    private static (IPruningMethod Method, MaskedLayer Layer) Start(SurgeryMethod name)
    {
        var method = PruningMethods.For(new SurgerySettings { Method = name, MagnitudeRounds = 1 });
        var layer = new MaskedLayer(Fc, Parameter([1, -2, 3, 0, -4]), null, false, new LayerRule(1, Gamma: 1e-3, Power: 1, IterStop: 100));
        method.Start(layer);
        return (method, layer);
    }

    [Theory]
    [MemberData(nameof(Methods))]
    public void EveryMethodCutsTheSmallestWeightsAndKeepsTheLargest(SurgeryMethod name)
    {
        var (method, layer) = Start(name);
        using var _ = layer;

        var (pruned, spliced) = method.UpdateMask(layer);

        Assert.Equal(name.Name(), method.Name);
        var mask = Values(layer.Weight.Mask);
        Assert.Equal([0f, 0f], [mask[0], mask[1]]);
        Assert.Equal(1f, mask[4]);
        Assert.Equal(mask.Count(m => m == 0), pruned);
        Assert.Equal(0, spliced);
        Assert.Equal(mask.Count(m => m == 1), layer.Kept);
    }

    [Theory]
    [MemberData(nameof(Methods))]
    public void OnlyAMethodThatSplicesBringsBackAWeightThatGrowsPastTheUpperThreshold(SurgeryMethod name)
    {
        var (method, layer) = Start(name);
        using var _ = layer;
        method.UpdateMask(layer); // -2 is cut by both
        // DNS keeps training the cut weight (straight-through); the magnitude method zeroes it for good.
        Assert.Equal(method.Splices ? -2f : 0f, Values(layer.Weight.Dense)[1]);

        layer.Weight.Dense[1] = tensor(100f); // far above b
        var (pruned, spliced) = method.UpdateMask(layer);

        Assert.Equal(method.Splices ? 1f : 0f, Values(layer.Weight.Mask)[1]);
        Assert.Equal(method.Splices ? 1 : 0, spliced);
        Assert.Equal(0, pruned);
        Assert.Equal(method.Splices ? 1 : 0, layer.SplicedTotal);
        Assert.Equal(name == SurgeryMethod.Dns, method.Splices);
    }

    [Theory]
    [MemberData(nameof(Methods))]
    public void CalibrationThroughTheInterfaceKeepsTheRequestedShare(SurgeryMethod name)
    {
        var (method, layer) = Start(name);
        using var _ = layer;

        var calibration = method.Calibrate(layer, 0.4);

        Assert.Equal(2, calibration.Kept); // 2 of 5: -4 and 3
        Assert.Equal([0f, 0f, 1f, 0f, 1f], Values(layer.Weight.Mask));
        Assert.Equal([0f, 0f, 3f, 0f, -4f], Values(layer.Weight.Parameter));
    }
}
