using System.Globalization;
using SurgeryService.Domain.Onnx;
using SurgeryService.Domain.Surgery;
using TorchSharp;
using static TorchSharp.torch;

namespace SurgeryService.Domain.Models;

/// <summary>What was read from an uploaded model file.</summary>
public sealed record ModelInspection(
    ModelFormat Format,
    string? Architecture,
    long[] InputShape,
    int? ClassCount,
    IReadOnlyList<string> Operators,
    IReadOnlyList<ModelLayer> Layers,
    long ActivationBytesPerSample = 0)
{
    public long ParameterCount => Layers.Sum(l => l.Parameters);
}

/// <summary>The formats a finished job's model can be downloaded in (<c>?format=</c> of the result endpoint).</summary>
public enum ResultFormat
{
    Onnx,
    OnnxSparse,
    TorchSharp,

    /// <summary>The pruned model quantized to int8 QDQ (ONNX uploads with <c>output.quantize: int8</c>).</summary>
    OnnxInt8,
}

/// <summary>An executable module with the layers the engine may prune.</summary>
public sealed class LoadedModel(nn.Module<Tensor, Tensor> module, IReadOnlyList<PrunableLayer> layers, long[] inputShape) : IDisposable
{
    public nn.Module<Tensor, Tensor> Module { get; } = module;
    public IReadOnlyList<PrunableLayer> Layers { get; } = layers;
    public long[] InputShape { get; } = inputShape;

    public void Dispose() => Module.Dispose();
}

/// <summary>
/// Reads, runs and writes the model formats users upload: TorchSharp weight files of a built-in architecture, and
/// ONNX graphs. The content is checked by parsing it, never by the file name.
/// </summary>
public static class ModelFormats
{
    public static ResultFormat? ParseResultFormat(string? format) => format?.ToLowerInvariant() switch
    {
        "onnx" => ResultFormat.Onnx,
        "onnx-sparse" => ResultFormat.OnnxSparse,
        "onnx-int8" => ResultFormat.OnnxInt8,
        "torchsharp" => ResultFormat.TorchSharp,
        _ => null,
    };

    public static string Name(this ResultFormat format) => format switch
    {
        ResultFormat.Onnx => "onnx",
        ResultFormat.OnnxSparse => "onnx-sparse",
        ResultFormat.OnnxInt8 => "onnx-int8",
        _ => "torchsharp",
    };

    /// <summary>
    /// The upload form's <c>classes</c> field: null when absent (a weight file's classifier then says), else a
    /// positive integer.
    /// </summary>
    public static int? ParseClassCount(string? classes)
    {
        if (string.IsNullOrWhiteSpace(classes)) return null;
        return int.TryParse(classes, NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n >= 1
            ? n
            : throw new SurgeryException("Bad class count", $"classes must be a positive integer, not '{Printable(classes)}'", ErrorKind.Malformed);
    }

    /// <summary>
    /// Parses an upload; a 422 <see cref="SurgeryException"/> says what is wrong with it. <paramref name="classes"/>
    /// applies to TorchSharp weights only: the class count the file must hold (by default, the one it holds).
    /// </summary>
    public static ModelInspection Inspect(byte[] content, string? architecture, int? classes = null) =>
        Inspect(new MemoryStream(content, writable: false), architecture, classes);

    /// <summary>
    /// <see cref="Inspect(byte[], string?, int?)"/> on a seekable stream. An ONNX graph is read without its large
    /// weights (<see cref="OnnxModel.Inspect"/>), so inspecting it holds about the graph, not the file; TorchSharp
    /// weights are read whole.
    /// </summary>
    public static ModelInspection Inspect(Stream content, string? architecture, int? classes = null) =>
        Inspect(content, architecture, classes, OnnxModel.InspectKeepsDataUpTo);

    internal static ModelInspection Inspect(Stream content, string? architecture, int? classes, long keepDataUpTo)
    {
        if (architecture is null)
        {
            if (classes is not null)
            {
                throw new SurgeryException("Class count without architecture",
                    "the form field 'classes' applies to TorchSharp weights, which also need 'architecture'; an ONNX graph states its own outputs",
                    ErrorKind.Malformed);
            }
            var onnx = ReadOnnx(content, keepDataUpTo);
            var inspection = new ModelInspection(ModelFormat.Onnx, null, onnx.InputSampleShape, onnx.ClassCount,
                onnx.Proto.Graph.Node.Select(n => n.OpType).Distinct().ToList(),
                onnx.Layers.Select(l => new ModelLayer(l.Name, l.Op, l.ParameterCount, l.Prunable)).ToList(),
                ActivationBytesPerSample(onnx));
            // Layer names are stored with the model and again, per job, in a column of ColumnLimits.Name characters:
            // refuse here what a job could not save at its end, naming it.
            foreach (var text in inspection.Layers.Select(l => l.Name).Concat(inspection.Operators))
            {
                if (StoredText.Problem(text, ColumnLimits.Name) is { } problem)
                {
                    throw new SurgeryException("Unsupported ONNX model", $"the name '{Printable(text)}' in the graph {problem}", ErrorKind.BadInput);
                }
            }
            return inspection;
        }

        using var model = Load(ReadAll(content), ModelFormat.TorchSharp, architecture, classes);
        var layers = new List<ModelLayer>();
        var prunable = model.Layers.Select(l => l.WeightParameter).ToHashSet();
        foreach (var (name, module) in model.Module.named_modules())
        {
            var own = module.named_parameters(recurse: false).ToList();
            if (own.Count == 0) continue;
            layers.Add(new ModelLayer(name, module.GetType().Name, own.Sum(p => p.parameter.numel()),
                own.Any(p => prunable.Contains(string.IsNullOrEmpty(name) ? p.name : $"{name}.{p.name}"))));
        }
        var operators = layers.Select(l => l.Operator).Distinct().ToList();
        // The classifier weight is [classes, features]: its rows are the classes this upload scores.
        var classifier = Architectures.Get(architecture).ClassifierWeight;
        var classCount = (int)model.Module.named_parameters().First(p => p.name == classifier).parameter.shape[0];
        return new ModelInspection(ModelFormat.TorchSharp, architecture, model.InputShape,
            classCount, operators, layers, Architectures.ActivationBytesPerSample(architecture));
    }

    /// <summary>
    /// The bytes one sample's forward pass computes (<see cref="OnnxModule.ActivationBytes"/>), measured once on a zero
    /// sample; 0 when the sample shape is symbolic or the graph does not run on it (the job's memory estimate then
    /// counts the weights alone). A model read without its large weights runs with stand-ins that take no memory
    /// (<see cref="OnnxModule.CreateForMeasuring"/>): the shapes, and so the bytes, are those the real weights give.
    /// </summary>
    private static long ActivationBytesPerSample(OnnxModel onnx)
    {
        var shape = onnx.InputSampleShape;
        if (shape.Any(d => d <= 0)) return 0;
        try
        {
            using var scope = NewDisposeScope();
            using var module = OnnxModule.CreateForMeasuring(onnx, outputLogits: true);
            return module.ActivationBytes(zeros([1, .. shape]));
        }
        catch (Exception e) when (e is SurgeryException or System.Runtime.InteropServices.ExternalException or ArgumentException)
        {
            return 0;
        }
    }

    /// <summary>Builds the executable module from a stored model file (TorchSharp weights: of the class count they hold).</summary>
    public static LoadedModel Load(byte[] content, ModelFormat format, string? architecture, int? classes = null)
    {
        if (format == ModelFormat.Onnx)
        {
            var onnx = ReadOnnx(content);
            // Logits out: the engine's cross-entropy must not see a final Softmax twice.
            var module = OnnxModule.Create(onnx, outputLogits: true);
            return new LoadedModel(module, onnx.PrunableLayers, onnx.InputSampleShape);
        }

        var name = architecture ?? throw new SurgeryException("Architecture missing",
            "TorchSharp weights need the form field 'architecture'", ErrorKind.BadInput);
        var torchModule = TorchSharpWeights.Load(name, content, classes);
        return new LoadedModel(torchModule, PrunableLayers.Discover(torchModule), Architectures.InputShape(name));
    }

    /// <summary>
    /// The module's current weights (after surgery: <c>W ⊙ T</c> with exact zeros) in every result format of its
    /// model format: ONNX dense and sparse for ONNX uploads, TorchSharp weights for TorchSharp uploads.
    /// </summary>
    public static IReadOnlyList<(ResultFormat Format, byte[] Content)> WriteResults(
        LoadedModel model, SurgerySettings settings, SurgeryOutcome outcome)
    {
        var results = new List<(ResultFormat, MemoryStream)>();
        WriteResults(model, settings, outcome, format =>
        {
            var memory = new MemoryStream();
            results.Add((format, memory));
            return memory;
        });
        return results.Select(r => (r.Item1, r.Item2.ToArray())).ToList();
    }

    /// <summary>
    /// <see cref="WriteResults(LoadedModel, SurgerySettings, SurgeryOutcome)"/> into streams that <paramref name="create"/>
    /// opens, one per format, in order; each is disposed once written.
    /// </summary>
    public static void WriteResults(LoadedModel model, SurgerySettings settings, SurgeryOutcome outcome, Func<ResultFormat, Stream> create)
    {
        if (model.Module is OnnxModule onnx)
        {
            using var dense = create(ResultFormat.Onnx);
            using var sparse = create(ResultFormat.OnnxSparse);
            OnnxWriter.ExportTo(onnx, settings, outcome, dense, sparse);
            return;
        }
        using var weights = create(ResultFormat.TorchSharp);
        weights.Write(TorchSharpWeights.Save(model.Module));
    }

    private static OnnxModel ReadOnnx(byte[] content) => ReadOnnx(() => OnnxModel.Load(content), content);

    private static OnnxModel ReadOnnx(Stream content, long keepDataUpTo)
    {
        var start = content.Position;
        var head = new byte[(int)Math.Min(2 + 127, content.Length - start)];
        content.ReadExactly(head);
        content.Position = start;
        return ReadOnnx(() => OnnxModel.Inspect(content, keepDataUpTo), head);
    }

    private static OnnxModel ReadOnnx(Func<OnnxModel> read, byte[] head)
    {
        try
        {
            return read();
        }
        catch (SurgeryException e)
        {
            var hint = LooksLikeTorchSharp(head)
                ? $" If this is a TorchSharp weight file, upload it with the form field 'architecture' ({string.Join(", ", Architectures.Names)})."
                : "";
            throw new SurgeryException(e.Title, e.Message + hint, e.Kind == ErrorKind.Malformed ? ErrorKind.BadInput : e.Kind);
        }
    }

    private static byte[] ReadAll(Stream content)
    {
        var bytes = new byte[content.Length - content.Position];
        content.ReadExactly(bytes);
        return bytes;
    }

    private static string Printable(string text) =>
        new(StoredText.Truncate(text, 80).Select(c => char.IsControl(c) || char.IsSurrogate(c) ? '?' : c).ToArray());

    // TorchSharp's Module.save starts with the parameter count as a LEB128 integer, then the first name as a string
    // (its length, then its characters). An ONNX file starts 0x08 <ir_version> 0x12: a length but no printable name.
    // The name is shorter than 128 bytes, so the file's first 129 bytes decide.
    private static bool LooksLikeTorchSharp(byte[] content) =>
        content.Length > 2 && content[0] is > 0 and < 128 && content[1] is > 0 and < 128 && content.Length >= 2 + content[1]
        && content.AsSpan(2, content[1]).ToArray().All(b => b is >= 0x20 and < 0x7F);
}
