using Microsoft.ML.OnnxRuntime;
using SurgeryService.Domain.Datasets;
using SurgeryService.Domain.Deployment;
using static TorchSharp.torch;

namespace SurgeryService.Infrastructure.Deployment;

/// <summary>
/// Calibrates and quantizes a float ONNX model with ONNX Runtime: the plan's activations become graph outputs, the
/// model runs on the first <c>samples</c> training samples, and each activation's range is the minimum and maximum
/// observed (the min/max method of ONNX Runtime's quantization tool).
/// </summary>
public static class Int8Calibration
{
    public const string Method = "minmax";

    /// <summary>The QDQ model of <paramref name="model"/>, calibrated on the first <paramref name="samples"/> of <paramref name="train"/> (preprocessed inputs).</summary>
    public static Int8Model Quantize(byte[] model, TensorDataset train, int samples = 1000, ActivationType activations = ActivationType.Int8)
    {
        var plan = Int8Quantizer.Plan(model);
        var count = (int)Math.Min(samples, train.Count);
        var ranges = Ranges(plan, train, count);
        var info = new QuantizationInfo("qdq", "int8 symmetric per-channel",
            activations == ActivationType.Int8 ? "int8 asymmetric per-tensor" : "uint8 asymmetric per-tensor", Method, count);
        return Int8Quantizer.Quantize(plan, ranges, activations, info);
    }

    public static IReadOnlyDictionary<string, TensorRange> Ranges(Int8Plan plan, TensorDataset train, int count)
    {
        const int batch = 100;
        using var options = new SessionOptions { IntraOpNumThreads = 1, GraphOptimizationLevel = GraphOptimizationLevel.ORT_DISABLE_ALL };
        using var session = new InferenceSession(plan.CalibrationModel(), options);
        var inputName = session.InputMetadata.Keys.First(k => !session.OverridableInitializerMetadata.ContainsKey(k));
        var names = plan.CalibratedTensors;
        var min = names.ToDictionary(n => n, _ => float.PositiveInfinity);
        var max = names.ToDictionary(n => n, _ => float.NegativeInfinity);
        for (long start = 0; start < count; start += batch)
        {
            var length = Math.Min(batch, count - start);
            float[] input;
            long[] shape;
            using (var scope = NewDisposeScope())
            {
                var x = train.Inputs.narrow(0, start, length).to_type(ScalarType.Float32).contiguous();
                input = x.data<float>().ToArray();
                shape = x.shape;
            }
            using var value = OrtValue.CreateTensorValueFromMemory(input, shape);
            using var runOptions = new RunOptions();
            var wanted = names.Where(n => n != inputName).ToArray();
            using var outputs = session.Run(runOptions, [inputName], [value], wanted);
            for (var i = 0; i < wanted.Length; i++) Observe(wanted[i], outputs[i].GetTensorDataAsSpan<float>());
            if (names.Contains(inputName)) Observe(inputName, input);
        }
        return names.ToDictionary(n => n, n => new TensorRange(min[n], max[n]));

        void Observe(string name, ReadOnlySpan<float> values)
        {
            var (lo, hi) = (min[name], max[name]);
            foreach (var v in values)
            {
                if (v < lo) lo = v;
                if (v > hi) hi = v;
            }
            (min[name], max[name]) = (lo, hi);
        }
    }
}
