using SurgeryService.Domain.Artifacts;
using SurgeryService.Domain.Jobs;
using SurgeryService.Domain.Models;

namespace SurgeryService.Api.Jobs;

/// <summary>
/// How a result file stores its weights: <c>dense</c> (every value in place), <c>sparse</c> (pruned initializers as
/// ONNX sparse tensors) or <c>int8</c> (int8 QDQ). An <c>onnx-sparse</c> result is the dense file byte for byte when
/// sparse storage would not be smaller, and so is <c>dense</c>.
/// </summary>
public static class ResultStorage
{
    /// <summary>The response header that states a download's storage.</summary>
    public const string Header = "X-Model-Storage";

    public static string Of(ResultFormat format, Artifact file, Artifact? onnxDense) => format switch
    {
        ResultFormat.OnnxInt8 => "int8",
        ResultFormat.OnnxSparse when onnxDense is null || onnxDense.Sha256.Trim() != file.Sha256.Trim() => "sparse",
        _ => "dense",
    };

    public static Guid? ArtifactOf(SurgeryJob job, ResultFormat format) => format switch
    {
        ResultFormat.Onnx => job.ResultOnnxArtifactId,
        ResultFormat.OnnxSparse => job.ResultOnnxSparseArtifactId,
        ResultFormat.OnnxInt8 => job.ResultOnnxInt8ArtifactId,
        _ => job.ResultTorchSharpArtifactId,
    };
}
