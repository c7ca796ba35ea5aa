using System.Buffers.Binary;
using System.Text;
using System.Text.RegularExpressions;
using static TorchSharp.torch;

namespace SurgeryService.Domain.Datasets;

/// <summary>Header of a NumPy <c>.npy</c> array: element type code (<c>u1</c>, <c>f4</c>, <c>i8</c>, ...) and shape.</summary>
public sealed record NpyHeader(string DType, long[] Shape, int DataOffset)
{
    public long Count => Shape.Aggregate(1L, (a, b) => a * b);
}

/// <summary>
/// Reads NumPy's <c>.npy</c> format (versions 1-3, C order, little-endian): the magic <c>\x93NUMPY</c>, a version, a
/// header length, a Python dict literal with <c>descr</c>, <c>fortran_order</c> and <c>shape</c>, then the raw data.
/// </summary>
public static partial class NpyReader
{
    private static readonly Dictionary<string, (ScalarType Type, int Size)> Types = new()
    {
        ["u1"] = (ScalarType.Byte, 1),
        ["i1"] = (ScalarType.Int8, 1),
        ["i2"] = (ScalarType.Int16, 2),
        ["i4"] = (ScalarType.Int32, 4),
        ["i8"] = (ScalarType.Int64, 8),
        ["f4"] = (ScalarType.Float32, 4),
        ["f8"] = (ScalarType.Float64, 8),
        ["b1"] = (ScalarType.Bool, 1),
    };

    public static NpyHeader ReadHeader(ReadOnlySpan<byte> data, string what)
    {
        if (data.Length < 10 || data[0] != 0x93 || !data.Slice(1, 5).SequenceEqual("NUMPY"u8))
        {
            throw Bad(what, "is not a .npy array (bad magic)");
        }
        var major = data[6];
        var (length, start) = major switch
        {
            1 => (BinaryPrimitives.ReadUInt16LittleEndian(data.Slice(8, 2)), 10),
            2 or 3 when data.Length >= 12 => ((int)BinaryPrimitives.ReadUInt32LittleEndian(data.Slice(8, 4)), 12),
            _ => throw Bad(what, $"has unsupported .npy version {major}"),
        };
        if (data.Length < start + length) throw Bad(what, "is truncated (header)");
        var header = Encoding.Latin1.GetString(data.Slice(start, length));

        var descr = DescrPattern().Match(header);
        if (!descr.Success) throw Bad(what, "has no 'descr' in its header");
        var code = descr.Groups[1].Value;
        if (code.Length < 2 || code[0] == '>' && code[1..] is not ("u1" or "i1" or "b1"))
        {
            throw Bad(what, $"has dtype '{code}': only little-endian arrays are read");
        }
        var type = code.TrimStart('<', '|', '=');
        if (!Types.ContainsKey(type))
        {
            throw Bad(what, $"has dtype '{code}'; supported: uint8, int8, int16, int32, int64, float32, float64, bool");
        }
        if (FortranPattern().IsMatch(header)) throw Bad(what, "is stored in Fortran order; save it with C order");

        var shape = ShapePattern().Match(header);
        if (!shape.Success) throw Bad(what, "has no 'shape' in its header");
        var dims = shape.Groups[1].Value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(d => long.TryParse(d, out var v) && v >= 0 ? v : throw Bad(what, $"has a bad shape '({shape.Groups[1].Value})'"))
            .ToArray();
        var result = new NpyHeader(type, dims, start + length);
        var expected = result.Count * Types[type].Size;
        if (data.Length - result.DataOffset != expected)
        {
            throw Bad(what, $"holds {data.Length - result.DataOffset} data bytes but its header announces {expected}");
        }
        return result;
    }

    /// <summary>The array as a tensor of its own element type.</summary>
    public static Tensor Read(ReadOnlySpan<byte> data, string what)
    {
        var header = ReadHeader(data, what);
        var (type, _) = Types[header.DType];
        using var raw = empty(header.Shape, type);
        if (header.Count > 0) raw.bytes = data[header.DataOffset..].ToArray();
        return raw.clone();
    }

    private static SurgeryException Bad(string what, string problem) => new("Bad dataset", $"{what} {problem}", ErrorKind.BadInput);

    [GeneratedRegex(@"'descr'\s*:\s*'([^']+)'")]
    private static partial Regex DescrPattern();

    [GeneratedRegex(@"'fortran_order'\s*:\s*True")]
    private static partial Regex FortranPattern();

    [GeneratedRegex(@"'shape'\s*:\s*\(([^)]*)\)")]
    private static partial Regex ShapePattern();
}
