using System.Globalization;
using System.IO.Compression;
using System.Text.Json;
using Google.Protobuf;
using SurgeryService.Domain.Onnx.Proto;
using SurgeryService.Domain.Surgery;
using SurgeryService.Domain.Torch;

namespace SurgeryService.Domain.Onnx;

/// <summary>Sizes in bytes of the original upload and of the two delivered forms, raw and gzip-compressed.</summary>
public sealed record OnnxFileSizes(
    long OriginalBytes, long OriginalGzipBytes, long DenseBytes, long DenseGzipBytes, long SparseBytes, long SparseGzipBytes);

/// <summary>
/// The delivered model in two forms: <see cref="Dense"/>, the original ModelProto with the trained initializers' values
/// replaced (exact zeros where pruned), and <see cref="Sparse"/>, the same with each pruned tensor stored as an ONNX
/// sparse initializer (COO, int64 linear indices) where that is smaller. <see cref="Original"/> is the upload.
/// </summary>
public sealed record OnnxExport(byte[] Dense, byte[] Sparse, byte[] Original, IReadOnlyList<string> SparseInitializers)
{
    /// <summary>
    /// The three files' sizes, raw and gzip-compressed. The service does not ask for them: three gzip compressions took
    /// about 2 of the 3 s of a 45 MB model's export.
    /// </summary>
    public OnnxFileSizes MeasureSizes()
    {
        var gzipped = new long[3];
        Parallel.For(0, 3, i => gzipped[i] = OnnxWriter.GzipLength(i switch { 0 => Original, 1 => Dense, _ => Sparse }));
        return new OnnxFileSizes(Original.LongLength, gzipped[0], Dense.LongLength, gzipped[1], Sparse.LongLength, gzipped[2]);
    }
}

public static class OnnxWriter
{
    public const string MethodKey = "surgery.method";
    public const string SettingsKey = "surgery.settings";
    public const string CompressionKey = "surgery.compression";
    public const string KeptKey = "surgery.kept_parameters";
    public const string TotalKey = "surgery.pruned_layer_parameters";

    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    /// <summary>Both forms in memory (tests, benches, small models); the service streams them with <see cref="ExportTo"/>.</summary>
    public static OnnxExport Export(OnnxModule module, SurgerySettings settings, SurgeryOutcome outcome)
    {
        var original = module.Model.OriginalBytes
            ?? throw new InvalidOperationException("a model read for inspection (OnnxModel.Inspect) cannot be exported");
        using var dense = new MemoryStream();
        using var sparse = new MemoryStream();
        var moved = ExportTo(module, settings, outcome, dense, sparse);
        return new OnnxExport(dense.ToArray(), sparse.ToArray(), original, moved);
    }

    /// <summary>
    /// Writes the dense form to <paramref name="dense"/>, then turns the same copy of the graph into the sparse form and
    /// writes it to <paramref name="sparse"/>: one copy of the weights besides the module's, and no file held as one
    /// array. Returns the initializers that moved to sparse form.
    /// </summary>
    public static IReadOnlyList<string> ExportTo(OnnxModule module, SurgerySettings settings, SurgeryOutcome outcome, Stream dense, Stream sparse)
    {
        var proto = DenseModel(module, settings, outcome);
        proto.WriteTo(dense);
        var prunable = module.Model.Layers.Where(l => l.Prunable)
            .SelectMany(l => settings.PruneBiases && l.BiasInitializer is not null ? new[] { l.WeightInitializer, l.BiasInitializer } : [l.WeightInitializer]);
        var moved = MoveToSparse(proto, prunable);
        proto.WriteTo(sparse);
        return moved;
    }

    /// <summary>
    /// A copy of the original model whose initializers that the module trains (parameters and BatchNormalization running
    /// statistics) hold the module's current values, in their original data type and encoding (raw_data or float_data;
    /// external data is written inline). Nodes, attributes, names, opsets and other metadata are untouched;
    /// metadata_props gains the surgery's method, settings and compression.
    /// </summary>
    public static ModelProto DenseModel(OnnxModule module, SurgerySettings settings, SurgeryOutcome outcome)
    {
        var proto = module.Model.Proto.Clone();
        var byName = proto.Graph.Initializer.ToDictionary(i => i.Name, StringComparer.Ordinal);
        foreach (var (initializer, value) in module.TrainedInitializers())
        {
            OnnxTensors.SetFloats(byName[initializer], OnnxTensors.ToFloatArray(value));
        }
        SetMetadata(proto, MethodKey, settings.Method.Name());
        SetMetadata(proto, SettingsKey, JsonSerializer.Serialize(settings, Json));
        SetMetadata(proto, CompressionKey, outcome.Compression.ToString("0.###", CultureInfo.InvariantCulture));
        SetMetadata(proto, KeptKey, outcome.Kept.ToString(CultureInfo.InvariantCulture));
        SetMetadata(proto, TotalKey, outcome.Total.ToString(CultureInfo.InvariantCulture));
        return proto;
    }

    /// <summary>
    /// Turns <paramref name="proto"/> into the sparse form, in place: each named float initializer moves to
    /// graph.sparse_initializer where its sparse form (values [NNZ] and int64 linear indices [NNZ]) serialises smaller.
    /// Sparse initializers need IR 6, so an older model's ir_version is raised to 6 in this form. Returns those moved.
    /// </summary>
    private static IReadOnlyList<string> MoveToSparse(ModelProto proto, IEnumerable<string> initializers)
    {
        var moved = new List<string>();
        foreach (var name in initializers.Distinct())
        {
            var tensor = proto.Graph.Initializer.FirstOrDefault(i => i.Name == name);
            if (tensor is null || tensor.DataType != (int)OnnxDataType.Float) continue;
            var values = OnnxTensors.Floats(tensor, null);
            var indices = new List<long>();
            var kept = new List<float>();
            for (var i = 0; i < values.Length; i++)
            {
                if (values[i] != 0f)
                {
                    indices.Add(i);
                    kept.Add(values[i]);
                }
            }
            var sparse = new SparseTensorProto
            {
                Values = OnnxTensors.FromFloats(name, [kept.Count], kept.ToArray()),
                Indices = OnnxTensors.FromLongs(name + "_indices", [indices.Count], indices.ToArray()),
                Dims = { tensor.Dims },
            };
            if (sparse.CalculateSize() >= tensor.CalculateSize()) continue;
            proto.Graph.Initializer.Remove(tensor);
            proto.Graph.SparseInitializer.Add(sparse);
            moved.Add(name);
        }
        if (moved.Count > 0 && proto.IrVersion < 6) proto.IrVersion = 6;
        return moved;
    }

    private static void SetMetadata(ModelProto proto, string key, string value)
    {
        var existing = proto.MetadataProps.Where(p => p.Key == key).ToList();
        foreach (var entry in existing) proto.MetadataProps.Remove(entry);
        proto.MetadataProps.Add(new StringStringEntryProto { Key = key, Value = value });
    }

    public static long GzipLength(byte[] bytes)
    {
        var counter = new CountingStream();
        using (var gzip = new GZipStream(counter, CompressionLevel.Optimal, leaveOpen: true))
        {
            gzip.Write(bytes);
        }
        return counter.Length;
    }
}
