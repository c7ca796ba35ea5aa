using System.Buffers.Binary;
using System.Text;
using System.Text.RegularExpressions;
using static TorchSharp.torch;

namespace SurgeryService.Domain.Datasets;

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

    /// <summary>Longest header read; NumPy itself refuses headers over 10,000 bytes unless told otherwise.</summary>
    public const int MaxHeaderLength = 64 * 1024;

    /// <summary>Reads the header only; <paramref name="stream"/> is left at the first data byte.</summary>
    public static ArrayHeader ReadHeader(Stream stream, string what)
    {
        var start = new byte[8];
        if (stream.ReadAtLeast(start, 8, throwOnEndOfStream: false) < 8 || start[0] != 0x93 || !start.AsSpan(1, 5).SequenceEqual("NUMPY"u8))
        {
            throw Bad(what, "is not a .npy array (bad magic)");
        }
        var major = start[6];
        long length = major switch
        {
            1 => BinaryPrimitives.ReadUInt16LittleEndian(ArrayData.ReadHeaderBytes(stream, 2, what, "header length")),
            2 or 3 => BinaryPrimitives.ReadUInt32LittleEndian(ArrayData.ReadHeaderBytes(stream, 4, what, "header length")),
            _ => throw Bad(what, $"has unsupported .npy version {major}"),
        };
        if (length > MaxHeaderLength)
        {
            throw Bad(what, $"announces a header of {length} bytes; at most {MaxHeaderLength} are read");
        }
        var header = Encoding.Latin1.GetString(ArrayData.ReadHeaderBytes(stream, (int)length, what, "header"));

        var descr = DescrPattern().Match(header);
        if (!descr.Success) throw Bad(what, "has no 'descr' in its header");
        var code = descr.Groups[1].Value;
        if (code.Length < 2 || code[0] == '>' && code[1..] is not ("u1" or "i1" or "b1"))
        {
            throw Bad(what, $"has dtype '{code}': only little-endian arrays are read");
        }
        var type = code.TrimStart('<', '|', '=');
        if (!Types.TryGetValue(type, out var element))
        {
            throw Bad(what, $"has dtype '{code}'; supported: uint8, int8, int16, int32, int64, float32, float64, bool");
        }
        if (FortranPattern().IsMatch(header)) throw Bad(what, "is stored in Fortran order; save it with C order");

        var shape = ShapePattern().Match(header);
        if (!shape.Success) throw Bad(what, "has no 'shape' in its header");
        var dims = shape.Groups[1].Value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(d => long.TryParse(d, out var v) && v >= 0 ? v : throw Bad(what, $"has a bad shape '({shape.Groups[1].Value})'"))
            .ToArray();
        return ArrayData.Header(dims, type, element.Size, what);
    }

    /// <summary>The array as a tensor of its own element type.</summary>
    public static Tensor Read(Stream stream, string what) => ReadData(stream, ReadHeader(stream, what), what);

    /// <summary>The data that follows <paramref name="header"/> (exactly its size) as a tensor of its element type.</summary>
    public static Tensor ReadData(Stream stream, ArrayHeader header, string what)
    {
        var bytes = ArrayData.ReadData(stream, header.DataBytes, what);
        using var raw = empty(header.Shape, Types[header.TypeName].Type);
        if (bytes.Length > 0) raw.bytes = bytes;
        return raw.clone();
    }

    /// <summary>The first element of little-endian .npy data of type code <paramref name="typeName"/>, as a double.</summary>
    public static double Value(ReadOnlySpan<byte> data, string typeName) => typeName switch
    {
        "u1" => data[0],
        "i1" => (sbyte)data[0],
        "b1" => data[0] == 0 ? 0 : 1,
        "i2" => BinaryPrimitives.ReadInt16LittleEndian(data),
        "i4" => BinaryPrimitives.ReadInt32LittleEndian(data),
        "i8" => BinaryPrimitives.ReadInt64LittleEndian(data),
        "f4" => BinaryPrimitives.ReadSingleLittleEndian(data),
        _ => BinaryPrimitives.ReadDoubleLittleEndian(data),
    };

    private static SurgeryException Bad(string what, string problem) => new("Bad dataset", $"{what} {problem}", ErrorKind.BadInput);

    [GeneratedRegex(@"'descr'\s*:\s*'([^']+)'")]
    private static partial Regex DescrPattern();

    [GeneratedRegex(@"'fortran_order'\s*:\s*True")]
    private static partial Regex FortranPattern();

    [GeneratedRegex(@"'shape'\s*:\s*\(([^)]*)\)")]
    private static partial Regex ShapePattern();
}
