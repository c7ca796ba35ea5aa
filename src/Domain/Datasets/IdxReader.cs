using System.Buffers.Binary;
using static TorchSharp.torch;

namespace SurgeryService.Domain.Datasets;

/// <summary>The header of an IDX file: element type, shape, and where the data starts.</summary>
public sealed record IdxHeader(ScalarType Type, string TypeName, int ElementSize, long[] Shape)
{
    /// <summary>Bytes of the header: the data starts here.</summary>
    public int Length => 4 + 4 * Shape.Length;

    public long DataBytes => Shape.Aggregate(1L, (a, b) => a * b) * ElementSize;
}

/// <summary>
/// Reads the IDX format of the MNIST files: two zero bytes, a type code, the number of dimensions, each dimension as a
/// big-endian int32, then the data (big-endian). The one IDX parser of the service: uploads are inspected with
/// <see cref="ReadHeader"/>, and jobs and the built-in MNIST read with <see cref="Read(ReadOnlySpan{byte}, string)"/>.
/// </summary>
public static class IdxReader
{
    /// <summary>The longest header (255 dimensions): reading this many bytes is always enough for <see cref="ReadHeader"/>.</summary>
    public const int MaxHeaderLength = 4 + 4 * 255;

    /// <summary>
    /// Parses the header at the start of <paramref name="start"/> and checks it against the file's length in bytes,
    /// <paramref name="fileLength"/>, which may be longer than what <paramref name="start"/> holds.
    /// </summary>
    public static IdxHeader ReadHeader(ReadOnlySpan<byte> start, long fileLength, string what)
    {
        if (start.Length < 4 || start[0] != 0 || start[1] != 0)
        {
            throw Bad($"{what} is not an IDX file (bad magic number)");
        }
        var (type, name, size) = start[2] switch
        {
            0x08 => (ScalarType.Byte, "uint8", 1),
            0x09 => (ScalarType.Int8, "int8", 1),
            0x0B => (ScalarType.Int16, "int16", 2),
            0x0C => (ScalarType.Int32, "int32", 4),
            0x0D => (ScalarType.Float32, "float32", 4),
            0x0E => (ScalarType.Float64, "float64", 8),
            _ => throw Bad($"{what} has unknown IDX type code 0x{start[2]:X2}"),
        };
        var rank = start[3];
        if (rank == 0) throw Bad($"{what} has no dimensions (IDX header)");
        if (start.Length < 4 + 4 * rank) throw Bad($"{what} is truncated (IDX header)");
        var shape = new long[rank];
        for (var i = 0; i < rank; i++) shape[i] = BinaryPrimitives.ReadInt32BigEndian(start.Slice(4 + 4 * i, 4));
        var header = new IdxHeader(type, name, size, shape);
        if (shape.Any(d => d < 0) || fileLength - header.Length != header.DataBytes)
        {
            throw Bad($"{what} holds {fileLength - header.Length} data bytes but its header announces {header.DataBytes}");
        }
        return header;
    }

    /// <summary>The whole file as a float32 tensor of the raw values.</summary>
    public static Tensor Read(Stream stream, string what)
    {
        using var memory = new MemoryStream();
        stream.CopyTo(memory);
        return Read(memory.GetBuffer().AsSpan(0, (int)memory.Length), what);
    }

    /// <summary>The whole file as a float32 tensor of the raw values.</summary>
    public static Tensor Read(ReadOnlySpan<byte> data, string what)
    {
        var header = ReadHeader(data, data.Length, what);
        var bytes = data.Slice(header.Length).ToArray();
        if (header.ElementSize > 1 && BitConverter.IsLittleEndian)
        {
            for (var i = 0; i < bytes.Length; i += header.ElementSize) Array.Reverse(bytes, i, header.ElementSize); // big-endian to host order
        }
        using var raw = empty(header.Shape, header.Type);
        raw.bytes = bytes;
        return raw.to(float32);
    }

    private static SurgeryException Bad(string problem) => new("Bad dataset", problem, ErrorKind.BadInput);
}
