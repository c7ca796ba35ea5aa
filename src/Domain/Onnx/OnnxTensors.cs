using System.Runtime.InteropServices;
using Google.Protobuf;
using SurgeryService.Domain.Onnx.Proto;
using TorchSharp;
using static TorchSharp.torch;

namespace SurgeryService.Domain.Onnx;

/// <summary>Converts between ONNX <see cref="TensorProto"/> and TorchSharp tensors.</summary>
internal static class OnnxTensors
{
    public static long ElementCount(IEnumerable<long> dims) => dims.Aggregate(1L, (a, d) => a * d);

    /// <summary>
    /// The tensor's bytes in little-endian fixed-width form: its raw_data, the file it names in external_data (relative
    /// to <paramref name="directory"/>), or its typed field re-encoded. Throws a <see cref="SurgeryException"/> naming
    /// the tensor when the data is missing or does not fit its shape.
    /// </summary>
    public static byte[] RawBytes(TensorProto tensor, string? directory)
    {
        var count = ElementCount(tensor.Dims);
        var size = OnnxDataTypes.ElementSize(tensor.DataType);
        if (size == 0)
        {
            throw new SurgeryException("Unsupported ONNX tensor",
                $"tensor '{tensor.Name}' has element type {OnnxDataTypes.Describe(tensor.DataType)}, which the service cannot hold", ErrorKind.Unsupported);
        }
        var expected = count * size;
        byte[] bytes;
        if (tensor.DataLocation == 1)
        {
            bytes = ReadExternal(tensor, directory, expected);
        }
        else if (tensor.HasRawData)
        {
            bytes = tensor.RawData.ToByteArray();
        }
        else
        {
            bytes = (OnnxDataType)tensor.DataType switch
            {
                OnnxDataType.Float => MemoryMarshal.AsBytes(tensor.FloatData.ToArray().AsSpan()).ToArray(),
                OnnxDataType.Double => MemoryMarshal.AsBytes(tensor.DoubleData.ToArray().AsSpan()).ToArray(),
                OnnxDataType.Int64 => MemoryMarshal.AsBytes(tensor.Int64Data.ToArray().AsSpan()).ToArray(),
                OnnxDataType.Int32 => MemoryMarshal.AsBytes(tensor.Int32Data.ToArray().AsSpan()).ToArray(),
                OnnxDataType.Int16 => MemoryMarshal.AsBytes(tensor.Int32Data.Select(v => (short)v).ToArray().AsSpan()).ToArray(),
                OnnxDataType.UInt16 or OnnxDataType.Float16 or OnnxDataType.BFloat16 =>
                    MemoryMarshal.AsBytes(tensor.Int32Data.Select(v => (ushort)v).ToArray().AsSpan()).ToArray(),
                OnnxDataType.Int8 or OnnxDataType.UInt8 or OnnxDataType.Bool => tensor.Int32Data.Select(v => (byte)v).ToArray(),
                OnnxDataType.UInt32 or OnnxDataType.UInt64 =>
                    MemoryMarshal.AsBytes(tensor.Uint64Data.ToArray().AsSpan()).ToArray(),
                _ => [],
            };
            if ((OnnxDataType)tensor.DataType == OnnxDataType.UInt32)
            {
                bytes = MemoryMarshal.AsBytes(tensor.Uint64Data.Select(v => (uint)v).ToArray().AsSpan()).ToArray();
            }
        }
        if (bytes.LongLength != expected)
        {
            throw new SurgeryException("Corrupt ONNX tensor",
                $"tensor '{tensor.Name}' holds {bytes.LongLength} bytes of data but its shape [{string.Join(", ", tensor.Dims)}] " +
                $"of {OnnxDataTypes.Describe(tensor.DataType)} needs {expected}; the file may be truncated");
        }
        return bytes;
    }

    private static byte[] ReadExternal(TensorProto tensor, string? directory, long expected)
    {
        var entries = tensor.ExternalData.ToDictionary(e => e.Key, e => e.Value);
        if (!entries.TryGetValue("location", out var location) || string.IsNullOrEmpty(location))
        {
            throw new SurgeryException("Corrupt ONNX tensor", $"tensor '{tensor.Name}' is stored externally but names no location");
        }
        if (directory is null)
        {
            throw new SurgeryException("Missing external data",
                $"tensor '{tensor.Name}' is stored in the external file '{location}'; upload the model together with that file");
        }
        var root = Path.GetFullPath(directory);
        var path = Path.GetFullPath(Path.Combine(root, location));
        if (Path.IsPathRooted(location) || !path.StartsWith(root.TrimEnd(Path.DirectorySeparatorChar) + Path.DirectorySeparatorChar, StringComparison.Ordinal))
        {
            throw new SurgeryException("Bad external data",
                $"tensor '{tensor.Name}' names the external file '{location}', which is not beside the model");
        }
        if (!File.Exists(path))
        {
            throw new SurgeryException("Missing external data",
                $"tensor '{tensor.Name}' is stored in the external file '{location}', which was not found beside the model");
        }
        var offset = entries.TryGetValue("offset", out var o) ? long.Parse(o, System.Globalization.CultureInfo.InvariantCulture) : 0;
        var length = entries.TryGetValue("length", out var l) ? long.Parse(l, System.Globalization.CultureInfo.InvariantCulture) : expected;
        using var stream = File.OpenRead(path);
        if (offset < 0 || length != expected || offset + length > stream.Length)
        {
            throw new SurgeryException("Corrupt external data",
                $"tensor '{tensor.Name}' needs {expected} bytes at offset {offset} of '{location}', which holds {stream.Length}");
        }
        var bytes = new byte[length];
        stream.Seek(offset, SeekOrigin.Begin);
        stream.ReadExactly(bytes);
        return bytes;
    }

    /// <summary>A new CPU tensor with the proto's values (ownership passes to the caller).</summary>
    public static Tensor ToTorch(TensorProto tensor, string? directory)
    {
        var dims = tensor.Dims.ToArray();
        var bytes = RawBytes(tensor, directory);
        var result = (OnnxDataType)tensor.DataType switch
        {
            OnnxDataType.Float => torch.tensor(MemoryMarshal.Cast<byte, float>(bytes).ToArray()),
            OnnxDataType.Double => torch.tensor(MemoryMarshal.Cast<byte, double>(bytes).ToArray()),
            OnnxDataType.Int64 => torch.tensor(MemoryMarshal.Cast<byte, long>(bytes).ToArray()),
            OnnxDataType.Int32 => torch.tensor(MemoryMarshal.Cast<byte, int>(bytes).ToArray()),
            OnnxDataType.Int16 => torch.tensor(MemoryMarshal.Cast<byte, short>(bytes).ToArray()),
            OnnxDataType.Int8 => torch.tensor(MemoryMarshal.Cast<byte, sbyte>(bytes).ToArray()),
            OnnxDataType.UInt8 => torch.tensor(bytes),
            OnnxDataType.Bool => torch.tensor(bytes.Select(b => b != 0).ToArray()),
            OnnxDataType.UInt16 => torch.tensor(MemoryMarshal.Cast<byte, ushort>(bytes).ToArray().Select(v => (int)v).ToArray()),
            OnnxDataType.UInt32 => torch.tensor(MemoryMarshal.Cast<byte, uint>(bytes).ToArray().Select(v => (long)v).ToArray()),
            OnnxDataType.Float16 => torch.tensor(MemoryMarshal.Cast<byte, Half>(bytes).ToArray().Select(v => (float)v).ToArray()).to_type(ScalarType.Float16),
            _ => throw new SurgeryException("Unsupported ONNX tensor",
                $"tensor '{tensor.Name}' has element type {OnnxDataTypes.Describe(tensor.DataType)}, which the service cannot hold", ErrorKind.Unsupported),
        };
        return result.reshape(dims);
    }

    public static float[] Floats(TensorProto tensor, string? directory) =>
        MemoryMarshal.Cast<byte, float>(RawBytes(tensor, directory)).ToArray();

    /// <summary>Replaces the values of a float tensor in place, keeping its name, shape, type and encoding (raw or typed).</summary>
    public static void SetFloats(TensorProto tensor, ReadOnlySpan<float> values)
    {
        var useRaw = tensor.HasRawData || tensor.DataLocation == 1 || tensor.FloatData.Count == 0;
        tensor.ExternalData.Clear();
        tensor.ClearDataLocation();
        tensor.FloatData.Clear();
        if (useRaw)
        {
            tensor.RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(values));
        }
        else
        {
            tensor.ClearRawData();
            tensor.FloatData.AddRange(values.ToArray());
        }
    }

    /// <summary>The values of a float tensor as an array, with negative zero written as zero.</summary>
    public static float[] ToFloatArray(Tensor tensor)
    {
        using var cpu = tensor.detach().cpu().to_type(ScalarType.Float32).contiguous();
        var values = cpu.data<float>().ToArray();
        for (var i = 0; i < values.Length; i++)
        {
            if (values[i] == 0f) values[i] = 0f;
        }
        return values;
    }

    public static TensorProto FromFloats(string name, long[] dims, ReadOnlySpan<float> values) => new()
    {
        Name = name,
        DataType = (int)OnnxDataType.Float,
        Dims = { dims },
        RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(values)),
    };

    public static TensorProto FromLongs(string name, long[] dims, ReadOnlySpan<long> values) => new()
    {
        Name = name,
        DataType = (int)OnnxDataType.Int64,
        Dims = { dims },
        RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(values)),
    };

    /// <summary>A dense tensor with the values of a sparse one (indices linear [NNZ] or coordinates [NNZ, rank]).</summary>
    public static TensorProto Densify(SparseTensorProto sparse, string? directory)
    {
        var values = sparse.Values;
        var dims = sparse.Dims.ToArray();
        var count = ElementCount(dims);
        var size = OnnxDataTypes.ElementSize(values.DataType);
        var valueBytes = RawBytes(values, directory);
        var indexTensor = sparse.Indices;
        var indices = MemoryMarshal.Cast<byte, long>(RawBytes(indexTensor, directory)).ToArray();
        var nnz = ElementCount(values.Dims);
        if (indexTensor.Dims.Count == 2)
        {
            var rank = dims.Length;
            var linear = new long[nnz];
            for (var i = 0; i < nnz; i++)
            {
                long index = 0;
                for (var d = 0; d < rank; d++) index = index * dims[d] + indices[i * rank + d];
                linear[i] = index;
            }
            indices = linear;
        }
        var dense = new byte[count * size];
        for (var i = 0; i < nnz; i++)
        {
            if (indices[i] < 0 || indices[i] >= count)
            {
                throw new SurgeryException("Corrupt ONNX tensor", $"sparse tensor '{values.Name}' has an index outside its shape");
            }
            Array.Copy(valueBytes, i * size, dense, indices[i] * size, size);
        }
        return new TensorProto { Name = values.Name, DataType = values.DataType, Dims = { dims }, RawData = ByteString.CopyFrom(dense) };
    }
}
