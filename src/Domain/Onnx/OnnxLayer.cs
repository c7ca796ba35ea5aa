namespace SurgeryService.Domain.Onnx;

/// <summary>
/// One entry of a model's layer list as shown to users before a job: the node, its weight's shape, how many trainable
/// parameters it holds (weight and bias) and whether the engine can prune it.
/// </summary>
public sealed record OnnxLayer(
    string Name,
    string Op,
    IReadOnlyList<long> Shape,
    long ParameterCount,
    bool Prunable,
    string WeightInitializer,
    string? BiasInitializer);
