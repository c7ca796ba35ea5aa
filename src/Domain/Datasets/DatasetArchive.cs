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

    /// <summary>
    /// Shapes, element type, sample counts and class count of an upload. Of the inputs it reads only the headers (and,
    /// for a gzipped IDX file, streams through the data to learn its length); the labels are read whole for the class
    /// count.
    /// </summary>
    public static async Task<DatasetSummary> InspectAsync(Stream content, CancellationToken cancellationToken)
    {
        await using var zip = await OpenAsync(content, cancellationToken);
        var (format, entries) = Locate(zip);
        var trainLabels = await ReadEntryAsync(entries[1], cancellationToken);
        var testLabels = await ReadEntryAsync(entries[3], cancellationToken);
        if (format == DatasetFormat.Npz)
        {
            var xTrain = await NpyHeaderAsync(entries[0], cancellationToken);
            var xTest = await NpyHeaderAsync(entries[2], cancellationToken);
            var yTrain = NpyReader.ReadHeader(trainLabels, trainLabels.Length, entries[1].FullName);
            var yTest = NpyReader.ReadHeader(testLabels, testLabels.Length, entries[3].FullName);
            CheckShapes(xTrain.Shape, yTrain.Shape, xTest.Shape, yTest.Shape);
            return new DatasetSummary(DatasetFormat.Npz, SampleShape(xTrain.Shape), TypeName(xTrain.DType),
                ClassCount(format, entries[1].FullName, trainLabels, entries[3].FullName, testLabels), xTrain.Shape[0], xTest.Shape[0]);
        }
        var images = await IdxHeaderAsync(entries[0], cancellationToken);
        var testImages = await IdxHeaderAsync(entries[2], cancellationToken);
        var labels = IdxReader.ReadHeader(trainLabels, trainLabels.Length, entries[1].FullName);
        var testLabelsHeader = IdxReader.ReadHeader(testLabels, testLabels.Length, entries[3].FullName);
        CheckShapes(images.Shape, labels.Shape, testImages.Shape, testLabelsHeader.Shape);
        return new DatasetSummary(DatasetFormat.Idx, SampleShape(images.Shape), images.TypeName,
            ClassCount(format, entries[1].FullName, trainLabels, entries[3].FullName, testLabels), images.Shape[0], testImages.Shape[0]);
    }

    /// <summary>Every array, decoded: inputs as float32 (unscaled; <c>[N, H, W]</c> images become <c>[N, 1, H, W]</c>), labels as int64.</summary>
    public static DatasetTensors Read(Stream content)
    {
        using var zip = Open(content);
        var (format, entries) = Locate(zip);
        var tensors = new List<Tensor>(4);
        try
        {
            for (var i = 0; i < entries.Length; i++)
            {
                var data = ReadEntry(entries[i]);
                using var raw = format == DatasetFormat.Npz ? NpyReader.Read(data, entries[i].FullName) : IdxReader.Read(data, entries[i].FullName);
                if (i % 2 == 1)
                {
                    tensors.Add(raw.to(int64));
                    continue;
                }
                using var inputs = raw.to(float32);
                tensors.Add(inputs.dim() == 3 ? inputs.unsqueeze(1) : inputs.alias());
            }
        }
        catch
        {
            foreach (var t in tensors) t.Dispose();
            throw;
        }
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
            throw NotAZip();
        }
    }

    private static async Task<ZipArchive> OpenAsync(Stream content, CancellationToken cancellationToken)
    {
        try
        {
            return await ZipArchive.CreateAsync(content, ZipArchiveMode.Read, leaveOpen: true, entryNameEncoding: null, cancellationToken);
        }
        catch (InvalidDataException)
        {
            throw NotAZip();
        }
    }

    private static SurgeryException NotAZip() => new("Bad dataset",
        "the file is not a zip archive: upload a zip of IDX files or a NumPy .npz (x_train, y_train, x_test, y_test)", ErrorKind.BadInput);

    /// <summary>The entries of x_train, y_train, x_test, y_test in this order, and the format they are in.</summary>
    private static (DatasetFormat Format, ZipArchiveEntry[] Entries) Locate(ZipArchive zip)
    {
        var files = zip.Entries.Where(e => !e.FullName.EndsWith('/')).ToList();
        var npz = NpzArrays.Select(name => files.FirstOrDefault(e =>
            Path.GetFileName(e.FullName) == name + ".npy")).ToArray();
        if (npz.All(e => e is not null)) return (DatasetFormat.Npz, npz.Select(e => e!).ToArray());

        ZipArchiveEntry? Find(string[] split, string kind) => files.FirstOrDefault(e =>
        {
            var name = Path.GetFileName(e.FullName).ToLowerInvariant();
            return split.Any(s => name.StartsWith(s, StringComparison.Ordinal)) && name.Contains(kind, StringComparison.Ordinal);
        });
        string[] train = ["train"], test = ["t10k", "test"];
        var idx = new[] { Find(train, "image"), Find(train, "label"), Find(test, "image"), Find(test, "label") };
        if (idx.All(e => e is not null)) return (DatasetFormat.Idx, idx.Select(e => e!).ToArray());
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

    private static SurgeryException Corrupt(ZipArchiveEntry entry, InvalidDataException e) =>
        new("Bad dataset", $"the archive entry {entry.FullName} is corrupt: {e.Message}", ErrorKind.BadInput);

    /// <summary>The whole entry, gunzipped when it is a gzipped IDX file as MNIST is distributed.</summary>
    private static byte[] ReadEntry(ZipArchiveEntry entry)
    {
        try
        {
            using var stream = entry.Open();
            using var memory = new MemoryStream();
            stream.CopyTo(memory);
            var bytes = memory.ToArray();
            if (!IsGzip(bytes)) return bytes;
            using var gzip = new GZipStream(new MemoryStream(bytes), CompressionMode.Decompress);
            using var plain = new MemoryStream();
            gzip.CopyTo(plain);
            return plain.ToArray();
        }
        catch (InvalidDataException e)
        {
            throw Corrupt(entry, e);
        }
    }

    private static async Task<byte[]> ReadEntryAsync(ZipArchiveEntry entry, CancellationToken cancellationToken)
    {
        try
        {
            await using var stream = await OpenEntryAsync(entry, cancellationToken);
            using var memory = new MemoryStream();
            await stream.CopyToAsync(memory, cancellationToken);
            return memory.ToArray();
        }
        catch (InvalidDataException e)
        {
            throw Corrupt(entry, e);
        }
    }

    /// <summary>The entry's plain bytes as a stream: gunzipping when the entry is gzipped.</summary>
    private static async Task<Stream> OpenEntryAsync(ZipArchiveEntry entry, CancellationToken cancellationToken)
    {
        var stream = await entry.OpenAsync(cancellationToken);
        var start = new byte[2];
        var read = await stream.ReadAtLeastAsync(start, 2, throwOnEndOfStream: false, cancellationToken);
        await stream.DisposeAsync();
        stream = await entry.OpenAsync(cancellationToken);
        return read == 2 && IsGzip(start) ? new GZipStream(stream, CompressionMode.Decompress) : stream;
    }

    /// <summary>The first <paramref name="count"/> plain bytes of an entry (fewer when it is shorter) and its plain length.</summary>
    private static async Task<(byte[] Start, long Length)> ReadStartAsync(ZipArchiveEntry entry, int count, CancellationToken cancellationToken)
    {
        try
        {
            await using var stream = await OpenEntryAsync(entry, cancellationToken);
            var start = new byte[count];
            var read = await stream.ReadAtLeastAsync(start, count, throwOnEndOfStream: false, cancellationToken);
            long length;
            if (stream is GZipStream)
            {
                // A gzip stream does not know its plain length: count it without keeping the data.
                length = read;
                var buffer = new byte[81920];
                int n;
                while ((n = await stream.ReadAsync(buffer, cancellationToken)) > 0) length += n;
            }
            else
            {
                length = entry.Length;
            }
            return (start[..read], length);
        }
        catch (InvalidDataException e)
        {
            throw Corrupt(entry, e);
        }
    }

    private static async Task<IdxHeader> IdxHeaderAsync(ZipArchiveEntry entry, CancellationToken cancellationToken)
    {
        var (start, length) = await ReadStartAsync(entry, IdxReader.MaxHeaderLength, cancellationToken);
        return IdxReader.ReadHeader(start, length, entry.FullName);
    }

    private static async Task<NpyHeader> NpyHeaderAsync(ZipArchiveEntry entry, CancellationToken cancellationToken)
    {
        var (start, length) = await ReadStartAsync(entry, NpyReader.MaxHeaderLength, cancellationToken);
        return NpyReader.ReadHeader(start, length, entry.FullName);
    }

    private static bool IsGzip(ReadOnlySpan<byte> bytes) => bytes.Length >= 2 && bytes[0] == 0x1F && bytes[1] == 0x8B;

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

    private static int ClassCount(DatasetFormat format, string trainName, byte[] trainLabels, string testName, byte[] testLabels)
    {
        long max = -1;
        foreach (var (name, data) in new[] { (trainName, trainLabels), (testName, testLabels) })
        {
            using var scope = NewDisposeScope();
            var raw = format == DatasetFormat.Npz ? NpyReader.Read(data, name) : IdxReader.Read(data, name);
            if (raw.is_floating_point() && !raw.eq(raw.floor()).all().item<bool>())
            {
                throw new SurgeryException("Bad dataset", $"{name} holds non-integer labels", ErrorKind.BadInput);
            }
            if (raw.numel() == 0) continue;
            var asLong = raw.to(int64);
            if (asLong.min().item<long>() < 0) throw new SurgeryException("Bad dataset", $"{name} holds negative labels", ErrorKind.BadInput);
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
