using System.Buffers.Binary;
using static TorchSharp.torch;

namespace SurgeryService.Domain.Datasets;

/// <summary>
/// Reads the IDX format of the MNIST files: two zero bytes, a type code, the number of dimensions, each dimension as a
/// big-endian int32, then the data (big-endian). The header is read and checked first; the data must then be exactly
/// the size it announces.
/// </summary>
public static class IdxReader
{
    private static readonly Dictionary<byte, (ScalarType Type, string Name, int Size)> Types = new()
    {
        [0x08] = (ScalarType.Byte, "uint8", 1),
        [0x09] = (ScalarType.Int8, "int8", 1),
        [0x0B] = (ScalarType.Int16, "int16", 2),
        [0x0C] = (ScalarType.Int32, "int32", 4),
        [0x0D] = (ScalarType.Float32, "float32", 4),
        [0x0E] = (ScalarType.Float64, "float64", 8),
    };

    /// <summary>Reads the header only; <paramref name="stream"/> is left at the first data byte.</summary>
    public static ArrayHeader ReadHeader(Stream stream, string what)
    {
        var start = new byte[4];
        var read = stream.ReadAtLeast(start, 4, throwOnEndOfStream: false);
        if (read < 4 || start[0] != 0 || start[1] != 0)
        {
            throw new SurgeryException("Bad dataset", $"{what} is not an IDX file (bad magic number)");
        }
        if (!Types.TryGetValue(start[2], out var type))
        {
            throw new SurgeryException("Bad dataset", $"{what} has unknown IDX type code 0x{start[2]:X2}");
        }
        var rank = start[3];
        if (rank == 0) throw new SurgeryException("Bad dataset", $"{what} has no dimensions (IDX header)");
        var dimensions = ArrayData.ReadHeaderBytes(stream, 4 * rank, what, "IDX header");
        // IDX dimensions are unsigned 32-bit: read them so, never as negative numbers.
        var shape = Enumerable.Range(0, rank)
            .Select(i => (long)BinaryPrimitives.ReadUInt32BigEndian(dimensions.AsSpan(4 * i, 4))).ToArray();
        return ArrayData.Header(shape, type.Name, type.Size, what);
    }

    public static Tensor Read(byte[] data, string what) => Read(new MemoryStream(data), what);

    /// <summary>The array as a float32 tensor of the raw values.</summary>
    public static Tensor Read(Stream stream, string what) => ReadData(stream, ReadHeader(stream, what), what);

    /// <summary>The data that follows <paramref name="header"/> (exactly its size) as a float32 tensor.</summary>
    public static Tensor ReadData(Stream stream, ArrayHeader header, string what)
    {
        var bytes = ArrayData.ReadData(stream, header.DataBytes, what);
        var size = header.ElementSize;
        if (size > 1 && BitConverter.IsLittleEndian)
        {
            for (var i = 0; i < bytes.Length; i += size) Array.Reverse(bytes, i, size); // big-endian to host order
        }
        var type = Types.Values.First(t => t.Name == header.TypeName).Type;
        using var raw = empty(header.Shape, type);
        if (bytes.Length > 0) raw.bytes = bytes;
        return raw.to(float32);
    }

    /// <summary>The first element of big-endian IDX data of <paramref name="typeName"/>, as a double.</summary>
    public static double Value(ReadOnlySpan<byte> data, string typeName) => typeName switch
    {
        "uint8" => data[0],
        "int8" => (sbyte)data[0],
        "int16" => BinaryPrimitives.ReadInt16BigEndian(data),
        "int32" => BinaryPrimitives.ReadInt32BigEndian(data),
        "float32" => BinaryPrimitives.ReadSingleBigEndian(data),
        _ => BinaryPrimitives.ReadDoubleBigEndian(data),
    };
}
