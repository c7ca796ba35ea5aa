namespace SurgeryService.Domain.Jobs;

/// <summary>What a surgery job delivers besides the pruned model in its upload's format.</summary>
public enum Quantization
{
    /// <summary>The pruned float32 model only.</summary>
    None,

    /// <summary>Also a static int8 QDQ model (format <c>onnx-int8</c>), when it stays within the accuracy budget.</summary>
    Int8,
}

/// <summary>The <c>output</c> block of a job request.</summary>
public sealed record JobOutput
{
    /// <summary>
    /// <c>none</c> (default) or <c>int8</c>: after surgery, quantize the pruned ONNX model statically into QDQ form
    /// (int8 weights symmetric per output channel, activations calibrated with min/max on training samples). Its
    /// top-1 counts against the accuracy budget (budget mode: <c>maxAccuracyDrop</c> on the validation split; fixed
    /// mode: 0.5 points against the pruned float model on the test split); a model that breaks it is not delivered,
    /// and the job's deployment report says why. Needs an ONNX upload at opset 13 or later.
    /// </summary>
    public Quantization Quantize { get; init; } = Quantization.None;
}
