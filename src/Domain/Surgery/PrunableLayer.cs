using static TorchSharp.torch;

namespace SurgeryService.Domain.Surgery;

/// <summary>Whether a layer is a convolution or a fully connected (matrix) layer: its defaults and phase differ.</summary>
public enum LayerKind
{
    Convolution,
    FullyConnected,
}

/// <summary>
/// One layer the engine may prune: the weight parameter (named as in <c>Module.named_parameters()</c>) and, where the
/// model has one, the bias that belongs to it (pruned only when the settings say so). A <paramref name="Slice"/> makes
/// the layer one block of its weight (a recurrent gate): several layers then share one parameter, each with its own
/// mask and thresholds. An <paramref name="Embedding"/> table (a lookup, not a product) is pruned only when the settings'
/// <see cref="SurgerySettings.PruneEmbeddings"/> asks for it.
/// </summary>
public sealed record PrunableLayer(string Name, LayerKind Kind, string WeightParameter, string? BiasParameter, WeightSlice? Slice = null,
    bool Embedding = false);

/// <summary>
/// One gate of one direction of a recurrent weight laid out as ONNX's LSTM, GRU and RNN store it,
/// <c>[directions, gates * hidden, columns]</c>: rows <c>Row .. Row + Rows - 1</c> of direction <c>Direction</c>, a
/// <c>[Rows, columns]</c> view.
/// </summary>
public sealed record WeightSlice(long Direction, long Row, long Rows)
{
    /// <summary>The block of <paramref name="weight"/> (or of its gradient): a view, sharing its storage.</summary>
    public Tensor Of(Tensor weight) => weight.select(0, Direction).narrow(0, Row, Rows);
}
