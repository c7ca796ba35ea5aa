namespace SurgeryService.Domain.Surgery;

/// <summary>Whether a layer is a convolution or a fully connected (matrix) layer: its defaults and phase differ.</summary>
public enum LayerKind
{
    Convolution,
    FullyConnected,
}

/// <summary>
/// One layer the engine may prune: the weight parameter (named as in <c>Module.named_parameters()</c>) and, where the
/// model has one, the bias that belongs to it (pruned only when the settings say so).
/// </summary>
public sealed record PrunableLayer(string Name, LayerKind Kind, string WeightParameter, string? BiasParameter);
