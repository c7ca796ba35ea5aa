using static TorchSharp.torch;

namespace SurgeryService.Domain.Surgery;

public static class PrunableLayers
{
    /// <summary>
    /// The prunable layers of a TorchSharp module: every weight of rank >= 2 (rank 2: fully connected, higher: a
    /// convolution kernel), with the sibling <c>bias</c> parameter when there is one.
    /// </summary>
    public static IReadOnlyList<PrunableLayer> Discover(nn.Module module)
    {
        var parameters = module.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        var layers = new List<PrunableLayer>();
        foreach (var (name, parameter) in parameters)
        {
            if (parameter.dim() < 2) continue;
            var owner = name.EndsWith(".weight", StringComparison.Ordinal) ? name[..^".weight".Length] : name;
            var biasName = owner + ".bias";
            layers.Add(new PrunableLayer(
                owner,
                parameter.dim() == 2 ? LayerKind.FullyConnected : LayerKind.Convolution,
                name,
                parameters.ContainsKey(biasName) && biasName != name ? biasName : null));
        }
        return layers;
    }
}
