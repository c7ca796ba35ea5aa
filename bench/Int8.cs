using System.Diagnostics;
using System.Text.Json;
using Google.Protobuf;
using SurgeryService.Domain.Datasets;
using SurgeryService.Domain.Deployment;
using SurgeryService.Domain.Models;
using SurgeryService.Domain.Onnx;
using SurgeryService.Domain.Onnx.Proto;
using SurgeryService.Domain.Surgery;
using SurgeryService.Infrastructure.Deployment;
using static TorchSharp.torch;

namespace SurgeryService.Bench;

/// <summary>
/// The deployable result of one surgery, measured in ONNX Runtime: the dense reference written as an ONNX model (the
/// "original" upload), a DNS surgery on it through the ONNX path the service runs, int8 QDQ quantization of the pruned
/// model, and the deployment report of the three (top-1, file sizes, latency at batch 1 and 64, memory at load).
/// </summary>
internal static class Int8
{
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web) { WriteIndented = true };

    public static int Run(string architecture, string[] args)
    {
        var options = Options.Parse(args);
        var iterations = int.Parse(options.Get("iterations", "3000"));
        var denseIterations = int.Parse(options.Get("dense-iterations", "3000"));
        var calibration = int.Parse(options.Get("calibration", "1000"));
        var activations = options.Get("activations", "int8") == "uint8" ? ActivationType.UInt8 : ActivationType.Int8;
        var latency = new LatencySettings(int.Parse(options.Get("ort-threads", "1")), int.Parse(options.Get("warmup", "20")),
            int.Parse(options.Get("runs", "200")));
        var mnistDir = options.Get("mnist",
            Environment.GetEnvironmentVariable("SURGERY_MNIST_DIR") ?? Path.Combine(".data", "datasets", "mnist"));
        if (options.Has("threads")) set_num_threads(int.Parse(options.Get("threads", "")));
        Console.WriteLine($"torch threads: {get_num_threads()}, cores: {Environment.ProcessorCount}");

        // A LeNet: the dense reference written as ONNX, and the paper's fixed recipe scaled to the iterations. A model file
        // (bench/models, with its sidecar JSON): the file as uploaded, and budget mode with no per-layer settings.
        var onnxFile = architecture.EndsWith(".onnx", StringComparison.OrdinalIgnoreCase) ? architecture : null;
        var (rawTrain, rawTest) = Mnist.Load(mnistDir);
        var preprocess = onnxFile is null ? Reproduce.Scaled : Target.Preprocessing(onnxFile);
        using var train = preprocess(rawTrain);
        using var test = preprocess(rawTest);
        byte[] original;
        if (onnxFile is not null)
        {
            original = File.ReadAllBytes(onnxFile);
        }
        else
        {
            using var dense = Reproduce.DenseReference(architecture, denseIterations, train, test, "", out _);
            original = OnnxGraph(architecture, dense);
        }

        var model = OnnxModel.Load(original);
        using var onnxTrain = InputPreprocessing.Raw.Apply(train, model.InputSampleShape);
        using var onnxTest = InputPreprocessing.Raw.Apply(test, model.InputSampleShape);
        var target = new SurgeryTarget
        {
            MaxAccuracyDrop = double.Parse(options.Get("max-drop", "0.5"), System.Globalization.CultureInfo.InvariantCulture),
            MaxIterations = iterations,
            MaxMinutes = options.Has("max-minutes") ? double.Parse(options.Get("max-minutes", ""), System.Globalization.CultureInfo.InvariantCulture) : null,
        };
        var settings = onnxFile is null
            ? Scaled(Reproduce.Recipe(architecture, SurgeryMethod.Dns), iterations)
            : new SurgerySettings { Target = target, Iterations = iterations, EvalInterval = Math.Max(100, iterations / 100), Seed = 1 };
        var clock = Stopwatch.StartNew();
        OnnxExport export;
        SurgeryOutcome outcome;
        using (var module = OnnxModule.Create(model, outputLogits: true))
        using (var trainer = new SurgeryTrainer(module, model.PrunableLayers, settings))
        {
            if (onnxFile is null)
            {
                outcome = trainer.Run(onnxTrain, onnxTest, new Reproduce.ConsoleObserver());
            }
            else
            {
                var (fit, validation) = onnxTrain.Split(target.ValidationCount(onnxTrain.Count), SurgeryTarget.ValidationSplitSeed);
                using (fit)
                using (validation)
                {
                    outcome = new BudgetSearch(trainer, settings, target).Run(fit, validation, onnxTest, new Reproduce.ConsoleObserver());
                }
            }
            export = OnnxWriter.Export(module, settings, outcome);
        }
        Console.WriteLine($"surgery: {outcome.Iterations} iterations in {clock.Elapsed.TotalSeconds:F0} s" +
            (outcome.Search is { } search ? $" (budget mode, {target.MaxAccuracyDrop} points, delivered {search.Delivered})" : ""));
        Reproduce.PrintLayers(outcome);

        clock.Restart();
        var int8 = Int8Calibration.Quantize(export.Dense, onnxTrain, calibration, activations);
        Console.WriteLine($"quantization: {Int8Calibration.Method} calibration on {calibration} training samples, activations {activations}, " +
            $"{clock.Elapsed.TotalSeconds:F1} s; sparse int8 initializers: {string.Join(", ", int8.SparseInitializers)}");
        foreach (var w in int8.Weights)
        {
            Console.WriteLine($"  {w.Initializer,-12} axis {w.Axis}, {w.Channels} scales, {w.Zeros} of {w.Count} zero");
        }

        if (options.Has("save"))
        {
            var dir = Directory.CreateDirectory(options.Get("save", "")).FullName;
            File.WriteAllBytes(Path.Combine(dir, "original.onnx"), original);
            File.WriteAllBytes(Path.Combine(dir, "pruned.onnx"), export.Dense);
            File.WriteAllBytes(Path.Combine(dir, "pruned-sparse.onnx"), export.Sparse);
            File.WriteAllBytes(Path.Combine(dir, "int8.onnx"), int8.Dense);
            File.WriteAllBytes(Path.Combine(dir, "int8-sparse.onnx"), int8.Sparse);
        }
        var report = DeploymentMeasurement.Measure(
        [
            new DeploymentCandidate("original", "dense fp32", original),
            new DeploymentCandidate("pruned-fp32", "dense fp32", export.Dense, export.Sparse),
            new DeploymentCandidate("pruned-int8", "dense int8 qdq", int8.Dense, int8.Sparse),
        ], onnxTest, latency, Console.WriteLine);

        var (o, p, q) = (report.Models[0], report.Models[1], report.Models[2]);
        Console.WriteLine();
        Console.WriteLine($"== {architecture}: int8 deployment ({report.Runtime}, {report.ExecutionProvider}, {report.IntraOpThreads} intra-op thread(s), " +
            $"{report.WarmupRuns} warm-up + {report.Runs} runs) ==");
        Console.WriteLine($"test top-1 (ORT, {o.TestSamples} images)  original {100 * o.Top1:F2}%, pruned fp32 {100 * p.Top1:F2}%, pruned int8 {100 * q.Top1:F2}% " +
            $"(int8 - fp32: {100 * (q.Top1 - p.Top1):+0.00;-0.00} points)");
        Console.WriteLine($"file bytes  original {o.DenseBytes}, pruned dense {p.DenseBytes}, pruned sparse {p.SparseBytes}, int8 dense {q.DenseBytes}, int8 sparse {q.SparseBytes}");
        var smallest = Math.Min(q.DenseBytes, q.SparseBytes ?? long.MaxValue);
        Console.WriteLine($"headline    {o.DenseBytes} B -> {smallest} B: {(double)o.DenseBytes / smallest:F1}x smaller than the original " +
            $"(int8 dense is {(double)p.DenseBytes / q.DenseBytes:F2}x smaller than pruned fp32 dense)");
        foreach (var batch in latency.Batches)
        {
            var lo = o.Latency.Single(l => l.Batch == batch);
            var lp = p.Latency.Single(l => l.Batch == batch);
            var lq = q.Latency.Single(l => l.Batch == batch);
            Console.WriteLine($"batch {batch,-3} p50/p90 ms  original {lo.P50Ms:F3}/{lo.P90Ms:F3}, pruned {lp.P50Ms:F3}/{lp.P90Ms:F3}, int8 {lq.P50Ms:F3}/{lq.P90Ms:F3}; " +
                $"speed-up vs original (p50): pruned {lo.P50Ms / lp.P50Ms:F2}x, int8 {lo.P50Ms / lq.P50Ms:F2}x");
        }
        Console.WriteLine($"load memory (RSS delta / peak delta KiB)  " + string.Join(", ", report.Models.Select(m =>
            $"{m.Name} {m.Memory.RssDeltaBytes / 1024}/{(m.Memory.PeakRssDeltaBytes is { } pk ? (pk / 1024).ToString() : "n/a")}")));
        if (options.Has("json")) File.WriteAllText(options.Get("json", ""), JsonSerializer.Serialize(new { architecture, settings, report }, Json));
        return 0;
    }

    /// <summary>The recipe with its iteration counts (total, mask-update stops, evaluation, lr step) scaled to <paramref name="iterations"/>.</summary>
    private static SurgerySettings Scaled(SurgerySettings recipe, int iterations)
    {
        var f = (double)iterations / recipe.Iterations;
        int S(int v) => Math.Max(1, (int)Math.Round(v * f));
        return recipe with
        {
            Iterations = iterations,
            EvalInterval = iterations,
            ConvIterStop = S(recipe.ConvIterStop),
            FcIterStop = S(recipe.FcIterStop),
            LrStepSize = S(recipe.LrStepSize),
        };
    }

    /// <summary>
    /// The TorchSharp module as an opset-13 ONNX model with its trained weights, laid out as PyTorch exports it: Conv,
    /// MaxPool, Flatten, Gemm with transB, Relu; logits out.
    /// </summary>
    internal static byte[] OnnxGraph(string architecture, nn.Module<Tensor, Tensor> module)
    {
        var weights = module.state_dict().ToDictionary(p => p.Key, p => p.Value);
        var graph = new GraphProto { Name = architecture };
        var counter = 0;
        string Init(string name)
        {
            var t = weights[name];
            var values = t.detach().cpu().contiguous().data<float>().ToArray();
            graph.Initializer.Add(new TensorProto
            {
                Name = name, DataType = (int)OnnxDataType.Float, Dims = { t.shape },
                RawData = ByteString.CopyFrom(System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan())),
            });
            return name;
        }
        string Node(string op, string? name, string[] inputs, params (string Name, long[] Values)[] attributes)
        {
            var node = new NodeProto { OpType = op, Name = name ?? $"{op}_{counter}", Input = { inputs }, Output = { $"{name ?? op.ToLowerInvariant()}_{counter++}" } };
            foreach (var (key, values) in attributes)
            {
                node.Attribute.Add(values.Length == 1 && key is "transB" or "axis"
                    ? new AttributeProto { Name = key, Type = AttributeProto.Types.AttributeType.Int, I = values[0] }
                    : new AttributeProto { Name = key, Type = AttributeProto.Types.AttributeType.Ints, Ints = { values } });
            }
            graph.Node.Add(node);
            return node.Output[0];
        }
        string Fc(string name, string x) => Node("Gemm", name, [x, Init(name + ".weight"), Init(name + ".bias")], ("transB", [1]));

        var dims = architecture == Architectures.LeNet5 ? new long[] { -1, 1, 28, 28 } : [-1, 784];
        graph.Input.Add(new ValueInfoProto
        {
            Name = "input",
            Type = new TypeProto
            {
                TensorType = new TypeProto.Types.Tensor
                {
                    ElemType = (int)OnnxDataType.Float,
                    Shape = new TensorShapeProto { Dim = { dims.Select(d => d < 0 ? new TensorShapeProto.Types.Dimension { DimParam = "N" } : new TensorShapeProto.Types.Dimension { DimValue = d }) } },
                },
            },
        });
        string logits;
        if (architecture == Architectures.LeNet5)
        {
            var x = Node("Conv", "conv1", ["input", Init("conv1.weight"), Init("conv1.bias")], ("kernel_shape", [5, 5]));
            x = Node("MaxPool", null, [x], ("kernel_shape", [2, 2]), ("strides", [2, 2]));
            x = Node("Conv", "conv2", [x, Init("conv2.weight"), Init("conv2.bias")], ("kernel_shape", [5, 5]));
            x = Node("MaxPool", null, [x], ("kernel_shape", [2, 2]), ("strides", [2, 2]));
            x = Node("Flatten", null, [x], ("axis", [1]));
            x = Node("Relu", null, [Fc("fc1", x)]);
            logits = Fc("fc2", x);
        }
        else
        {
            var x = Node("Relu", null, [Fc("fc1", "input")]);
            x = Node("Relu", null, [Fc("fc2", x)]);
            logits = Fc("fc3", x);
        }
        graph.Output.Add(new ValueInfoProto { Name = logits, Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)OnnxDataType.Float } } });
        var proto = new ModelProto
        {
            IrVersion = 7, ProducerName = "surgery-bench", ProducerVersion = "1", Graph = graph,
            OpsetImport = { new OperatorSetIdProto { Domain = "", Version = 13 } },
        };
        return proto.ToByteArray();
    }
}
