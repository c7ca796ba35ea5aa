using System.Buffers.Binary;
using static TorchSharp.torch;

namespace SurgeryService.Domain.Datasets;

/// <summary>
/// Reads the IDX format of the MNIST files: two zero bytes, a type code, the number of dimensions, each dimension as a
/// big-endian int32, then the data (big-endian). Returns a float32 tensor of the raw values.
/// </summary>
public static class IdxReader
{
    public static Tensor Read(Stream stream, string what)
    {
        using var memory = new MemoryStream();
        stream.CopyTo(memory);
        return Read(memory.GetBuffer().AsSpan(0, (int)memory.Length), what);
    }

    public static Tensor Read(ReadOnlySpan<byte> data, string what)
    {
        if (data.Length < 4 || data[0] != 0 || data[1] != 0)
        {
            throw new SurgeryException("Bad dataset", $"{what} is not an IDX file (bad magic number)");
        }
        var (type, size) = data[2] switch
        {
            0x08 => (ScalarType.Byte, 1),
            0x09 => (ScalarType.Int8, 1),
            0x0B => (ScalarType.Int16, 2),
            0x0C => (ScalarType.Int32, 4),
            0x0D => (ScalarType.Float32, 4),
            0x0E => (ScalarType.Float64, 8),
            _ => throw new SurgeryException("Bad dataset", $"{what} has unknown IDX type code 0x{data[2]:X2}"),
        };
        var rank = data[3];
        var header = 4 + 4 * rank;
        if (rank == 0 || data.Length < header)
        {
            throw new SurgeryException("Bad dataset", $"{what} is truncated (IDX header)");
        }
        var shape = new long[rank];
        long count = 1;
        for (var i = 0; i < rank; i++)
        {
            shape[i] = BinaryPrimitives.ReadInt32BigEndian(data.Slice(4 + 4 * i, 4));
            count *= shape[i];
        }
        if (data.Length - header != count * size)
        {
            throw new SurgeryException("Bad dataset",
                $"{what} holds {data.Length - header} data bytes but its header announces {count * size}");
        }
        var bytes = data.Slice(header).ToArray();
        if (size > 1 && BitConverter.IsLittleEndian)
        {
            for (var i = 0; i < bytes.Length; i += size) Array.Reverse(bytes, i, size); // big-endian to host order
        }
        using var raw = empty(shape, type);
        raw.bytes = bytes;
        return raw.to(float32);
    }
}
