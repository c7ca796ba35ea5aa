using System.Globalization;
using Microsoft.ML.OnnxRuntime;
using SurgeryService.Domain.Onnx;
using SurgeryService.Domain;
using SurgeryService.Domain.Datasets;
using SurgeryService.Domain.Deployment;

namespace SurgeryService.Infrastructure.Deployment;

/// <summary>
/// The split the int8 model's top-1 is checked on, and the floor it must reach: <paramref name="Baseline"/> (the
/// starting model's top-1 on that split; null: the pruned float model's, measured in ONNX Runtime) less
/// <paramref name="MaxAccuracyDrop"/> points.
/// </summary>
public sealed record Int8Budget(string Split, TensorDataset Samples, double? Baseline, double MaxAccuracyDrop);

/// <summary>The int8 model when it is delivered (null otherwise), and the job's deployment outcome.</summary>
public sealed record Int8Result(byte[]? Int8, JobDeployment Deployment);

/// <summary>
/// After surgery: quantizes the pruned model to int8 QDQ (calibrated on training samples), delivers it only when its
/// top-1 stays within the budget, and measures the original, the pruned float and the int8 model in ONNX Runtime.
/// </summary>
public static class Int8Delivery
{
    public static Int8Result Run(byte[] original, byte[] fp32Dense, byte[] fp32Sparse, TensorDataset calibration, int calibrationSamples,
        Int8Budget budget, TensorDataset test, LatencySettings latency, Action<string> log)
    {
        var samples = (int)Math.Min(calibrationSamples, calibration.Count);
        Int8Model? int8 = null;
        string? reason = null;
        if (ReadsTokenIds(fp32Dense) is { } type)
        {
            reason = $"int8 quantization covers models with a FLOAT input; this model reads token ids ({type}), so the float32 model is delivered";
        }
        else
        {
            try
            {
                int8 = Int8Calibration.Quantize(fp32Dense, calibration, samples);
            }
            catch (SurgeryException e)
            {
                reason = $"the pruned model cannot be quantized: {e.Message}; the float32 model is delivered";
            }
        }

        double? fp32Top1 = null, int8Top1 = null, floor = null;
        if (int8 is not null)
        {
            fp32Top1 = Top1(fp32Dense, budget.Samples);
            int8Top1 = Top1(int8.Dense, budget.Samples);
            var baseline = budget.Baseline ?? fp32Top1.Value;
            floor = baseline - budget.MaxAccuracyDrop / 100;
            if (int8Top1 < floor - 1e-9)
            {
                reason = string.Create(CultureInfo.InvariantCulture,
                    $"int8 {budget.Split} top-1 {100 * int8Top1:F2}% is below the budget's floor {100 * floor:F2}% " +
                    $"({budget.MaxAccuracyDrop} points below the {(budget.Baseline is null ? "pruned float32 model's" : "starting model's")} " +
                    $"{100 * baseline:F2}%); the float32 model is delivered");
            }
        }
        var delivered = reason is null;
        var quantization = new QuantizationReport("int8", delivered ? "int8" : "fp32", reason, Int8Calibration.Method, samples,
            budget.Split, (int)budget.Samples.Count, fp32Top1, int8Top1, floor, budget.MaxAccuracyDrop);
        log(delivered
            ? string.Create(CultureInfo.InvariantCulture,
                $"int8 delivered: {budget.Split} top-1 {100 * int8Top1:F2}% (float32 {100 * fp32Top1:F2}%, floor {100 * floor:F2}%), " +
                $"{Int8Calibration.Method} calibration on {samples} training samples")
            : "int8 not delivered: " + reason);

        var candidates = new List<DeploymentCandidate>
        {
            new("original", "dense", original),
            new("pruned-fp32", "dense", fp32Dense, fp32Sparse),
        };
        if (int8 is not null) candidates.Add(new DeploymentCandidate("pruned-int8", "int8", int8.Dense, int8.Sparse));
        var report = DeploymentMeasurement.Measure(candidates, test, latency, log);
        return new Int8Result(delivered ? int8!.Dense : null, new JobDeployment(quantization, report));
    }

    /// <summary>The input's element type when it is not FLOAT (a model that reads token ids), else null.</summary>
    private static OnnxDataType? ReadsTokenIds(byte[] model)
    {
        // The graph without its large weights: no ONNX Runtime session (which would optimise the whole model) for one type.
        var type = OnnxModel.Inspect(new MemoryStream(model, writable: false)).InputElementType;
        return type == OnnxDataType.Float ? null : type;
    }

    private static double Top1(byte[] model, TensorDataset samples)
    {
        using var options = new SessionOptions { IntraOpNumThreads = 1 };
        using var session = new InferenceSession(model, options);
        return DeploymentMeasurement.Top1(session, samples);
    }
}
