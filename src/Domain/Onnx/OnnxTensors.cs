using System.Runtime.InteropServices;
using Google.Protobuf;
using SurgeryService.Domain.Onnx.Proto;
using TorchSharp;
using static TorchSharp.torch;

namespace SurgeryService.Domain.Onnx;

/// <summary>Converts between ONNX <see cref="TensorProto"/> and TorchSharp tensors.</summary>
internal static class OnnxTensors
{
    /// <summary>Largest tensor the service materialises, so a sparse tensor cannot declare a dense size it cannot hold.</summary>
    public const long MaxTensorBytes = 1L << 30;

    /// <summary>The product of <paramref name="dims"/> in checked 64-bit arithmetic; a 422 on a negative or overflowing shape.</summary>
    public static long ElementCount(IEnumerable<long> dims, string tensorName = "?")
    {
        long count = 1;
        foreach (var d in dims)
        {
            if (d < 0 || (d > 0 && count > long.MaxValue / d))
            {
                throw new SurgeryException("Corrupt ONNX tensor",
                    $"tensor '{tensorName}' has the impossible shape [{string.Join(", ", dims)}]" +
                    (d < 0 ? ": a dimension is negative" : ": its size does not fit in 64 bits"), ErrorKind.BadInput);
            }
            count *= d;
        }
        return count;
    }

    private static long ByteSize(IEnumerable<long> dims, int elementSize, string tensorName)
    {
        var count = ElementCount(dims, tensorName);
        if (count > MaxTensorBytes / Math.Max(1, elementSize))
        {
            throw new SurgeryException("ONNX tensor too large",
                $"tensor '{tensorName}' of shape [{string.Join(", ", dims)}] would take more than {MaxTensorBytes} bytes", ErrorKind.BadInput);
        }
        return count * elementSize;
    }

    /// <summary>
    /// The tensor's bytes in little-endian fixed-width form: its raw_data, the file it names in external_data (relative
    /// to <paramref name="directory"/>), or its typed field re-encoded. Throws a <see cref="SurgeryException"/> naming
    /// the tensor when the data is missing or does not fit its shape.
    /// </summary>
    public static byte[] RawBytes(TensorProto tensor, string? directory)
    {
        var expected = ExpectedBytes(tensor);
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
        if (bytes.LongLength != expected) throw Mismatch(tensor, bytes.LongLength, expected);
        return bytes;
    }

    /// <summary>
    /// Checks that the tensor's data fits its shape, as <see cref="RawBytes"/> does, without copying raw_data: a model's
    /// weights are checked once on upload, and a copy of a 300 MB weight is 300 MB more held by the Api.
    /// </summary>
    public static void CheckData(TensorProto tensor, string? directory)
    {
        if (tensor.DataLocation == 1 || !tensor.HasRawData)
        {
            RawBytes(tensor, directory);
            return;
        }
        var expected = ExpectedBytes(tensor);
        if (tensor.RawData.Length != expected) throw Mismatch(tensor, tensor.RawData.Length, expected);
    }

    /// <summary>
    /// <see cref="CheckData(TensorProto, string?)"/> for a tensor read without some of its data: the lengths that
    /// <paramref name="omitted"/> records count as the data held, as <see cref="RawBytes"/> would encode it.
    /// </summary>
    public static void CheckData(TensorProto tensor, string? directory, OmittedTensorData? omitted)
    {
        if (omitted is null || tensor.DataLocation == 1)
        {
            CheckData(tensor, directory);
            return;
        }
        var expected = ExpectedBytes(tensor);
        long actual;
        if (omitted.RawBytes is { } raw)
        {
            actual = raw;
        }
        else if (tensor.HasRawData)
        {
            actual = tensor.RawData.Length;
        }
        else
        {
            long floats = tensor.FloatData.Count + omitted.FloatCount, doubles = tensor.DoubleData.Count + omitted.DoubleCount;
            long longs = tensor.Int64Data.Count + omitted.Int64Count, ints = tensor.Int32Data.Count + omitted.Int32Count;
            long unsigned = tensor.Uint64Data.Count + omitted.UInt64Count;
            actual = (OnnxDataType)tensor.DataType switch
            {
                OnnxDataType.Float => floats * 4,
                OnnxDataType.Double => doubles * 8,
                OnnxDataType.Int64 => longs * 8,
                OnnxDataType.Int32 => ints * 4,
                OnnxDataType.Int16 or OnnxDataType.UInt16 or OnnxDataType.Float16 or OnnxDataType.BFloat16 => ints * 2,
                OnnxDataType.Int8 or OnnxDataType.UInt8 or OnnxDataType.Bool => ints,
                OnnxDataType.UInt32 => unsigned * 4,
                OnnxDataType.UInt64 => unsigned * 8,
                _ => 0,
            };
        }
        if (actual != expected) throw Mismatch(tensor, actual, expected);
    }

    private static long ExpectedBytes(TensorProto tensor)
    {
        var size = OnnxDataTypes.ElementSize(tensor.DataType);
        if (size == 0)
        {
            throw new SurgeryException("Unsupported ONNX tensor",
                $"tensor '{tensor.Name}' has element type {OnnxDataTypes.Describe(tensor.DataType)}, which the service cannot hold", ErrorKind.Unsupported);
        }
        return ByteSize(tensor.Dims, size, tensor.Name);
    }

    private static SurgeryException Mismatch(TensorProto tensor, long actual, long expected) => new("Corrupt ONNX tensor",
        $"tensor '{tensor.Name}' holds {actual} bytes of data but its shape [{string.Join(", ", tensor.Dims)}] " +
        $"of {OnnxDataTypes.Describe(tensor.DataType)} needs {expected}; the file may be truncated");

    private static byte[] ReadExternal(TensorProto tensor, string? directory, long expected)
    {
        var entries = tensor.ExternalData.ToDictionary(e => e.Key, e => e.Value);
        if (!entries.TryGetValue("location", out var location) || string.IsNullOrEmpty(location))
        {
            throw new SurgeryException("Corrupt ONNX tensor", $"tensor '{tensor.Name}' is stored externally but names no location");
        }
        if (directory is null)
        {
            // Uploads are one file: only a model loaded from a path (OnnxModel.Load(string)) has a directory to look in.
            throw new SurgeryException("Missing external data",
                $"tensor '{tensor.Name}' is stored in the external file '{location}', and the service takes the model as one file: " +
                "save it with its weights inside (onnx.save_model(model, path, save_as_external_data=False))", ErrorKind.Unsupported);
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
        using var flat = (OnnxDataType)tensor.DataType switch
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
            OnnxDataType.Float16 => HalfTensor(MemoryMarshal.Cast<byte, Half>(bytes).ToArray()),
            _ => throw new SurgeryException("Unsupported ONNX tensor",
                $"tensor '{tensor.Name}' has element type {OnnxDataTypes.Describe(tensor.DataType)}, which the service cannot hold", ErrorKind.Unsupported),
        };
        return flat.reshape(dims);

        static Tensor HalfTensor(Half[] values)
        {
            using var wide = torch.tensor(values.Select(v => (float)v).ToArray());
            return wide.to_type(ScalarType.Float16);
        }
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
        using var scope = NewDisposeScope(); // detach, cpu, to_type and contiguous may each make a tensor
        var values = tensor.detach().cpu().to_type(ScalarType.Float32).contiguous().data<float>().ToArray();
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
        var valueBytes = RawBytes(values, directory);
        var size = OnnxDataTypes.ElementSize(values.DataType);
        var count = ByteSize(dims, size, values.Name) / size;
        var nnz = ElementCount(values.Dims, values.Name);
        var indexTensor = sparse.Indices;
        if (indexTensor.DataType != (int)OnnxDataType.Int64)
        {
            throw new SurgeryException("Corrupt ONNX tensor", $"sparse tensor '{values.Name}' has indices that are not INT64", ErrorKind.BadInput);
        }
        var indices = MemoryMarshal.Cast<byte, long>(RawBytes(indexTensor, directory)).ToArray();
        var rank = dims.Length;
        var coordinates = indexTensor.Dims.Count == 2;
        if (indices.LongLength != (coordinates ? nnz * rank : nnz))
        {
            throw new SurgeryException("Corrupt ONNX tensor",
                $"sparse tensor '{values.Name}' has {nnz} values but {indices.LongLength} index entries", ErrorKind.BadInput);
        }
        if (coordinates)
        {
            var linear = new long[nnz];
            for (var i = 0; i < nnz; i++)
            {
                long index = 0;
                for (var d = 0; d < rank; d++)
                {
                    var coordinate = indices[i * rank + d];
                    if (coordinate < 0 || coordinate >= dims[d])
                    {
                        throw new SurgeryException("Corrupt ONNX tensor", $"sparse tensor '{values.Name}' has an index outside its shape", ErrorKind.BadInput);
                    }
                    index = index * dims[d] + coordinate; // below count, which fits: checked by ByteSize
                }
                linear[i] = index;
            }
            indices = linear;
        }
        var dense = new byte[count * size];
        for (var i = 0; i < nnz; i++)
        {
            if (indices[i] < 0 || indices[i] >= count)
            {
                throw new SurgeryException("Corrupt ONNX tensor", $"sparse tensor '{values.Name}' has an index outside its shape", ErrorKind.BadInput);
            }
            Array.Copy(valueBytes, i * size, dense, indices[i] * size, size);
        }
        return new TensorProto { Name = values.Name, DataType = values.DataType, Dims = { dims }, RawData = ByteString.CopyFrom(dense) };
    }
}
