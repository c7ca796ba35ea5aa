using System.Buffers.Binary;
using System.IO.Compression;
using static TorchSharp.torch;

namespace SurgeryService.Domain.Datasets;

/// <summary>What an uploaded data set holds, read without decoding all of it.</summary>
public sealed record DatasetSummary(
    DatasetFormat Format, long[] SampleShape, string InputType, int ClassCount, long TrainCount, long TestCount);

/// <summary>The train and test inputs (float32, unscaled) and labels (int64) of a data set.</summary>
public sealed record DatasetTensors(Tensor TrainInputs, Tensor TrainLabels, Tensor TestInputs, Tensor TestLabels) : IDisposable
{
    public void Dispose()
    {
        TrainInputs.Dispose();
        TrainLabels.Dispose();
        TestInputs.Dispose();
        TestLabels.Dispose();
    }
}

/// <summary>
/// Reads the two upload formats, both zip archives (stored or deflated entries): a zip of the four IDX files
/// (names as MNIST's: <c>train-images</c>, <c>train-labels</c>, <c>t10k-images</c>/<c>test-images</c>, ...,
/// optionally gzipped), or a NumPy <c>.npz</c> with <c>x_train</c>, <c>y_train</c>, <c>x_test</c>, <c>y_test</c>.
/// The content decides the format, not the file name.
/// </summary>
public static class DatasetArchive
{
    private static readonly string[] NpzArrays = ["x_train", "y_train", "x_test", "y_test"];

    public static DatasetSummary Inspect(Stream content)
    {
        using var zip = Open(content);
        var parts = Parts(zip);
        if (parts.Format == DatasetFormat.Npz)
        {
            var headers = parts.Entries.Select(e => NpyReader.ReadHeader(e.Data, e.Name)).ToArray();
            CheckShapes(headers[0].Shape, headers[1].Shape, headers[2].Shape, headers[3].Shape);
            var classes = ClassCount(parts.Entries[1], parts.Entries[3]);
            return new DatasetSummary(DatasetFormat.Npz, SampleShape(headers[0].Shape), TypeName(headers[0].DType),
                classes, headers[0].Shape[0], headers[2].Shape[0]);
        }
        var idx = parts.Entries.Select(e => IdxShape(e.Data, e.Name)).ToArray();
        CheckShapes(idx[0].Shape, idx[1].Shape, idx[2].Shape, idx[3].Shape);
        return new DatasetSummary(DatasetFormat.Idx, SampleShape(idx[0].Shape), idx[0].Type,
            ClassCount(parts.Entries[1], parts.Entries[3]), idx[0].Shape[0], idx[2].Shape[0]);
    }

    public static DatasetTensors Read(Stream content)
    {
        using var zip = Open(content);
        var parts = Parts(zip);
        var tensors = parts.Entries.Select((e, i) =>
        {
            using var raw = parts.Format == DatasetFormat.Npz ? NpyReader.Read(e.Data, e.Name) : IdxReader.Read(e.Data, e.Name);
            var t = i % 2 == 0 ? raw.to(float32) : raw.to(int64);
            return i % 2 == 0 && t.dim() == 3 ? t.unsqueeze(1) : t; // [N, H, W] images -> [N, 1, H, W]
        }).ToArray();
        return new DatasetTensors(tensors[0], tensors[1], tensors[2], tensors[3]);
    }

    private static ZipArchive Open(Stream content)
    {
        try
        {
            return new ZipArchive(content, ZipArchiveMode.Read, leaveOpen: true);
        }
        catch (InvalidDataException)
        {
            throw new SurgeryException("Bad dataset",
                "the file is not a zip archive: upload a zip of IDX files or a NumPy .npz (x_train, y_train, x_test, y_test)", ErrorKind.BadInput);
        }
    }

    private sealed record Entry(string Name, byte[] Data);

    private sealed record Archive(DatasetFormat Format, Entry[] Entries);

    /// <summary>x_train, y_train, x_test, y_test in this order, decompressed.</summary>
    private static Archive Parts(ZipArchive zip)
    {
        var files = zip.Entries.Where(e => !e.FullName.EndsWith('/')).ToList();
        var npz = NpzArrays.Select(name => files.FirstOrDefault(e =>
            Path.GetFileName(e.FullName) == name + ".npy")).ToArray();
        if (npz.All(e => e is not null))
        {
            return new Archive(DatasetFormat.Npz, npz.Select(e => new Entry(e!.FullName, ReadEntry(e))).ToArray());
        }

        ZipArchiveEntry? Find(string[] split, string kind) => files.FirstOrDefault(e =>
        {
            var name = Path.GetFileName(e.FullName).ToLowerInvariant();
            return split.Any(s => name.StartsWith(s, StringComparison.Ordinal)) && name.Contains(kind, StringComparison.Ordinal);
        });
        string[] train = ["train"], test = ["t10k", "test"];
        var idx = new[] { Find(train, "image"), Find(train, "label"), Find(test, "image"), Find(test, "label") };
        if (idx.All(e => e is not null))
        {
            return new Archive(DatasetFormat.Idx, idx.Select(e => new Entry(e!.FullName, ReadEntry(e))).ToArray());
        }
        if (npz.Any(e => e is not null))
        {
            throw new SurgeryException("Bad dataset", "the .npz lacks " +
                string.Join(", ", NpzArrays.Where((_, i) => npz[i] is null)) + " (it needs x_train, y_train, x_test, y_test)", ErrorKind.BadInput);
        }
        throw new SurgeryException("Bad dataset",
            "the archive holds neither x_train/y_train/x_test/y_test .npy arrays nor the four IDX files " +
            "(train-images, train-labels, t10k-images or test-images, t10k-labels or test-labels); it holds: " +
            string.Join(", ", files.Take(10).Select(f => f.FullName)), ErrorKind.BadInput);
    }

    private static byte[] ReadEntry(ZipArchiveEntry entry)
    {
        try
        {
            return Decompress(entry);
        }
        catch (InvalidDataException e)
        {
            throw new SurgeryException("Bad dataset", $"the archive entry {entry.FullName} is corrupt: {e.Message}", ErrorKind.BadInput);
        }
    }

    private static byte[] Decompress(ZipArchiveEntry entry)
    {
        using var memory = new MemoryStream();
        using (var stream = entry.Open())
        {
            stream.CopyTo(memory);
        }
        var bytes = memory.ToArray();
        if (bytes.Length > 2 && bytes[0] == 0x1F && bytes[1] == 0x8B) // a gzipped IDX file as MNIST is distributed
        {
            using var gzip = new GZipStream(new MemoryStream(bytes), CompressionMode.Decompress);
            using var plain = new MemoryStream();
            gzip.CopyTo(plain);
            return plain.ToArray();
        }
        return bytes;
    }

    private static (long[] Shape, string Type) IdxShape(byte[] data, string what)
    {
        if (data.Length < 4 || data[0] != 0 || data[1] != 0 || data[3] == 0 || data.Length < 4 + 4 * data[3])
        {
            throw new SurgeryException("Bad dataset", $"{what} is not an IDX file (bad header)", ErrorKind.BadInput);
        }
        var (type, size) = data[2] switch
        {
            0x08 => ("uint8", 1),
            0x09 => ("int8", 1),
            0x0B => ("int16", 2),
            0x0C => ("int32", 4),
            0x0D => ("float32", 4),
            0x0E => ("float64", 8),
            _ => throw new SurgeryException("Bad dataset", $"{what} has unknown IDX type code 0x{data[2]:X2}", ErrorKind.BadInput),
        };
        var shape = Enumerable.Range(0, data[3])
            .Select(i => (long)BinaryPrimitives.ReadInt32BigEndian(data.AsSpan(4 + 4 * i, 4))).ToArray();
        var expected = shape.Aggregate(1L, (a, b) => a * b) * size;
        if (data.Length - 4 - 4 * data[3] != expected)
        {
            throw new SurgeryException("Bad dataset",
                $"{what} holds {data.Length - 4 - 4 * data[3]} data bytes but its header announces {expected}", ErrorKind.BadInput);
        }
        return (shape, type);
    }

    private static void CheckShapes(long[] xTrain, long[] yTrain, long[] xTest, long[] yTest)
    {
        void Check(bool ok, string problem)
        {
            if (!ok) throw new SurgeryException("Bad dataset", problem, ErrorKind.BadInput);
        }

        Check(xTrain.Length >= 2, $"training inputs must have a sample dimension and a count, not shape [{string.Join(", ", xTrain)}]");
        Check(yTrain.Length == 1 && yTest.Length == 1, "labels must be one-dimensional");
        Check(xTrain[0] == yTrain[0], $"{xTrain[0]} training inputs but {yTrain[0]} training labels");
        Check(xTest.Length >= 1 && xTest[0] == yTest[0], $"{(xTest.Length > 0 ? xTest[0] : 0)} test inputs but {yTest[0]} test labels");
        Check(xTest[1..].SequenceEqual(xTrain[1..]),
            $"test samples have shape [{string.Join(", ", xTest[1..])}] but training samples [{string.Join(", ", xTrain[1..])}]");
        Check(xTrain[0] > 0, "the training set is empty");
    }

    private static long[] SampleShape(long[] inputs) => inputs.Length == 3 ? [1, inputs[1], inputs[2]] : inputs[1..];

    private static int ClassCount(Entry trainLabels, Entry testLabels)
    {
        var isNpz = trainLabels.Name.EndsWith(".npy", StringComparison.Ordinal);
        long max = -1;
        foreach (var entry in new[] { trainLabels, testLabels })
        {
            using var raw = isNpz ? NpyReader.Read(entry.Data, entry.Name) : IdxReader.Read(entry.Data, entry.Name);
            if (raw.is_floating_point() && !raw.eq(raw.floor()).all().item<bool>())
            {
                throw new SurgeryException("Bad dataset", $"{entry.Name} holds non-integer labels", ErrorKind.BadInput);
            }
            if (raw.numel() == 0) continue;
            using var asLong = raw.to(int64);
            if (asLong.min().item<long>() < 0) throw new SurgeryException("Bad dataset", $"{entry.Name} holds negative labels", ErrorKind.BadInput);
            max = Math.Max(max, asLong.max().item<long>());
        }
        return (int)(max + 1);
    }

    private static string TypeName(string npyCode) => npyCode switch
    {
        "u1" => "uint8",
        "i1" => "int8",
        "i2" => "int16",
        "i4" => "int32",
        "i8" => "int64",
        "f4" => "float32",
        "f8" => "float64",
        _ => "bool",
    };
}
