using System.Globalization;
using System.Text;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace SurgeryService.Domain.Models;

/// <summary>One tensor of a TorchSharp weight file as its header states it.</summary>
public sealed record WeightFileTensor(string Name, ScalarType Type, long[] Shape)
{
    /// <summary>The shape as <c>[64x3x7x7]</c>, followed by the element type when it is not float32.</summary>
    public string ShapeText => $"[{string.Join("x", Shape)}]" + (Type == ScalarType.Float32 ? "" : $" {Type}");

    public string Describe() => $"'{Name}' {ShapeText}";
}

/// <summary>
/// Weights of the built-in architectures in TorchSharp's own format (<c>Module.save</c> / <c>Module.load</c>), so
/// TorchSharp users upload and get back the files their code reads and writes. The format holds named tensors only,
/// so the architecture must be named by the user; the class count is read from the classifier's weight.
/// </summary>
public static class TorchSharpWeights
{
    /// <summary>
    /// A module of the named architecture holding the uploaded weights. With <paramref name="classes"/> the file must
    /// hold that many classes; without, its classifier weight says how many. A file that does not fit is refused
    /// naming its first tensor whose name or shape differs from the architecture's.
    /// </summary>
    public static Module<Tensor, Tensor> Load(string architecture, byte[] bytes, int? classes = null)
    {
        var spec = Architectures.Get(architecture);
        var tensors = ReadHeader(bytes, architecture);
        var count = ClassCount(spec, tensors, classes);
        var module = spec.Create(count);
        try
        {
            if (Mismatch(module, tensors) is { } mismatch)
            {
                throw new SurgeryException("Weights do not match the architecture",
                    $"the TorchSharp weight file does not match architecture '{architecture}' with {count} classes: {mismatch}",
                    ErrorKind.BadInput);
            }
            using var stream = new MemoryStream(bytes, writable: false);
            module.load(stream, strict: true);
            return module;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            module.Dispose();
            if (e is SurgeryException) throw;
            throw NotAWeightFile(architecture, e.Message);
        }
    }

    /// <summary>The module's weights in TorchSharp's format, readable with <c>Module.load</c> in the user's own code.</summary>
    public static byte[] Save(Module<Tensor, Tensor> module)
    {
        using var stream = new MemoryStream();
        module.save(stream);
        return stream.ToArray();
    }

    /// <summary>
    /// The tensors a weight file holds, in file order, without reading their data. <c>Module.save</c> writes its
    /// <c>state_dict()</c>: the entry count (LEB128), then per entry the name (a .NET <c>BinaryWriter</c> string), the
    /// element type, rank and dimensions (LEB128 each) and the raw little-endian elements.
    /// </summary>
    public static IReadOnlyList<WeightFileTensor> ReadHeader(byte[] bytes, string architecture)
    {
        try
        {
            using var reader = new BinaryReader(new MemoryStream(bytes, writable: false), Encoding.UTF8);
            var count = Leb128(reader);
            // Every entry takes at least four bytes (name length, type, rank, and a name character or a dimension).
            if (count > bytes.Length / 4) throw new FormatException($"it claims {count} tensors in {bytes.Length} bytes");
            var tensors = new List<WeightFileTensor>((int)count);
            for (var i = 0; i < count; i++)
            {
                var name = reader.ReadString();
                var type = (ScalarType)Leb128(reader);
                var size = ElementSize(type) ?? throw new FormatException($"tensor '{Printable(name)}' has unknown element type {(int)type}");
                var rank = Leb128(reader);
                if (rank > 16) throw new FormatException($"tensor '{Printable(name)}' claims rank {rank}");
                var shape = new long[rank];
                var bytesLeft = reader.BaseStream.Length - reader.BaseStream.Position;
                var length = size;
                for (var d = 0; d < rank; d++)
                {
                    shape[d] = Leb128(reader);
                    length = shape[d] == 0 ? 0 : length > bytesLeft / shape[d] ? bytesLeft + 1 : length * shape[d];
                }
                if (length > reader.BaseStream.Length - reader.BaseStream.Position)
                {
                    throw new FormatException($"tensor '{Printable(name)}' [{string.Join("x", shape)}] runs past the end of the file");
                }
                reader.BaseStream.Seek(length, SeekOrigin.Current);
                tensors.Add(new WeightFileTensor(name, type, shape));
            }
            if (reader.BaseStream.Position != reader.BaseStream.Length)
            {
                throw new FormatException($"{reader.BaseStream.Length - reader.BaseStream.Position} bytes follow the last tensor");
            }
            return tensors;
        }
        catch (Exception e) when (e is FormatException or EndOfStreamException or IOException or ArgumentException)
        {
            throw NotAWeightFile(architecture, e.Message);
        }
    }

    private static int ClassCount(Architecture spec, IReadOnlyList<WeightFileTensor> tensors, int? classes)
    {
        if (classes is < 1 or > Architecture.MaxClassCount)
        {
            throw new SurgeryException("Bad class count",
                $"classes must be between 1 and {Architecture.MaxClassCount}, not {classes}", ErrorKind.BadInput);
        }
        if (spec.FixedClassCount is { } fixedCount)
        {
            if (classes is { } n && n != fixedCount)
            {
                throw new SurgeryException("Weights do not match the architecture",
                    $"architecture '{spec.Name}' has {fixedCount} classes (tensor '{spec.ClassifierWeight}'), not {n}", ErrorKind.BadInput);
            }
            return fixedCount;
        }
        var classifier = tensors.FirstOrDefault(t => t.Name == spec.ClassifierWeight);
        var inFile = classifier is { Shape: [var rows and >= 1 and <= Architecture.MaxClassCount, _] } ? (int)rows : (int?)null;
        return classes ?? inFile ?? Architecture.DefaultClassCount;
    }

    /// <summary>The file's first tensor (in file order) that the module lacks or holds in another shape or type, else the first it lacks.</summary>
    private static string? Mismatch(Module module, IReadOnlyList<WeightFileTensor> tensors)
    {
        var expected = module.state_dict().ToDictionary(p => p.Key, p => new WeightFileTensor(p.Key, p.Value.dtype, p.Value.shape));
        var seen = new HashSet<string>();
        foreach (var tensor in tensors)
        {
            if (!seen.Add(tensor.Name)) return $"tensor '{Printable(tensor.Name)}' appears twice in the file";
            if (!expected.TryGetValue(tensor.Name, out var own))
            {
                return $"the file's tensor {Printable(tensor.Describe())} is not part of the architecture";
            }
            if (own.Type != tensor.Type || !own.Shape.SequenceEqual(tensor.Shape))
            {
                return $"tensor '{tensor.Name}' is {tensor.ShapeText} in the file but {own.ShapeText} in the architecture";
            }
        }
        return expected.Values.FirstOrDefault(t => !seen.Contains(t.Name)) is { } missing
            ? $"the file lacks tensor {missing.Describe()}"
            : null;
    }

    private static SurgeryException NotAWeightFile(string architecture, string reason) =>
        new("Not TorchSharp weights", $"the file is not a TorchSharp weight file (Module.save) for architecture '{architecture}': {reason}",
            ErrorKind.BadInput);

    private static long Leb128(BinaryReader reader)
    {
        long value = 0;
        for (var shift = 0; shift < 63; shift += 7)
        {
            var b = reader.ReadByte();
            value |= (long)(b & 0x7F) << shift;
            if ((b & 0x80) == 0) return value;
        }
        throw new FormatException("a length or dimension does not fit 63 bits");
    }

    private static long? ElementSize(ScalarType type) => type switch
    {
        ScalarType.Byte or ScalarType.Int8 or ScalarType.Bool => 1,
        ScalarType.Int16 or ScalarType.Float16 or ScalarType.BFloat16 => 2,
        ScalarType.Int32 or ScalarType.Float32 => 4,
        ScalarType.Int64 or ScalarType.Float64 or ScalarType.ComplexFloat32 => 8,
        ScalarType.ComplexFloat64 => 16,
        _ => null,
    };

    private static string Printable(string text) =>
        new(StoredText.Truncate(text, 120).Select(c => char.IsControl(c) || char.IsSurrogate(c) ? '?' : c).ToArray());
}
