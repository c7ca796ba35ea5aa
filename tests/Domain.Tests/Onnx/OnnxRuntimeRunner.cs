using Microsoft.ML.OnnxRuntime;

namespace SurgeryService.Domain.Tests.Onnx;

/// <summary>Runs a model with ONNX Runtime, the reference the TorchSharp execution is checked against.</summary>
internal static class OnnxRuntimeRunner
{
    public static (float[] Values, long[] Shape) Run(byte[] model, float[] input, long[] shape)
    {
        using var options = new SessionOptions { IntraOpNumThreads = 1, GraphOptimizationLevel = GraphOptimizationLevel.ORT_DISABLE_ALL };
        using var session = new InferenceSession(model, options);
        return Run(session, input, shape);
    }

    /// <summary>A model that reads token ids (an INT64 input).</summary>
    public static (float[] Values, long[] Shape) Run(byte[] model, long[] input, long[] shape)
    {
        using var options = new SessionOptions { IntraOpNumThreads = 1, GraphOptimizationLevel = GraphOptimizationLevel.ORT_DISABLE_ALL };
        using var session = new InferenceSession(model, options);
        using var value = OrtValue.CreateTensorValueFromMemory(input, shape);
        return Run(session, value);
    }

    public static (float[] Values, long[] Shape) Run(InferenceSession session, float[] input, long[] shape)
    {
        using var value = OrtValue.CreateTensorValueFromMemory(input, shape);
        return Run(session, value);
    }

    private static (float[] Values, long[] Shape) Run(InferenceSession session, OrtValue value)
    {
        using var runOptions = new RunOptions();
        var inputName = session.InputMetadata.Keys.First(k => !session.OverridableInitializerMetadata.ContainsKey(k));
        using var outputs = session.Run(runOptions, [inputName], [value], [session.OutputMetadata.Keys.First()]);
        var output = outputs[0];
        return (output.GetTensorDataAsSpan<float>().ToArray(), output.GetTensorTypeAndShape().Shape);
    }
}
