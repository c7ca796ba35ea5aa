namespace SurgeryService.Domain.Models;

public enum ModelFormat
{
    /// <summary>An ONNX graph with its initializers.</summary>
    Onnx,

    /// <summary>A TorchSharp weight file (<c>Module.save</c>) of a built-in architecture.</summary>
    TorchSharp,
}

/// <summary>One layer of an uploaded model as the Api lists it.</summary>
public sealed record ModelLayer(string Name, string Operator, long Parameters, bool Prunable);

/// <summary>An uploaded model: its file lives in an artifact, what was read from it lives here.</summary>
public sealed class ModelEntry
{
    public Guid Id { get; set; }
    public required string TenantId { get; set; }
    public required string Name { get; set; }
    public ModelFormat Format { get; set; }

    /// <summary>Built-in architecture name for TorchSharp weights (<c>lenet-300-100</c>, <c>lenet-5</c>).</summary>
    public string? Architecture { get; set; }

    public Guid ArtifactId { get; set; }
    public long Size { get; set; }
    public required string Sha256 { get; set; }

    /// <summary>Shape of one input sample, without the batch dimension.</summary>
    public long[] InputShape { get; set; } = [];

    /// <summary>The classes the model scores (its output's size), so labels beyond them are refused at submit; null when the model does not say.</summary>
    public int? ClassCount { get; set; }

    public List<string> Operators { get; set; } = [];
    public List<ModelLayer> Layers { get; set; } = [];
    public long ParameterCount { get; set; }

    /// <summary>
    /// The bytes one sample's forward pass computes (input, every intermediate value, output), measured at upload; 0 when
    /// it could not be measured (symbolic sample shape, or a model stored before it was measured).
    /// </summary>
    public long ActivationBytesPerSample { get; set; }
    public DateTimeOffset CreatedAt { get; set; }
}
