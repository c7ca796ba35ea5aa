using System.Buffers.Binary;
using System.IO.Compression;
using static TorchSharp.torch;

namespace SurgeryService.Domain.Datasets;

/// <summary>What an uploaded data set holds, read without decoding all of it; <see cref="ValidationCount"/> 0 when it has no validation split.</summary>
public sealed record DatasetSummary(
    DatasetFormat Format, long[] SampleShape, string InputType, int ClassCount, long TrainCount, long TestCount, long ValidationCount = 0);

/// <summary>
/// The train and test inputs (float32, unscaled) and labels (int64) of a data set, and its own validation split when it
/// carries one.
/// </summary>
public sealed record DatasetTensors(Tensor TrainInputs, Tensor TrainLabels, Tensor TestInputs, Tensor TestLabels) : IDisposable
{
    public Tensor? ValidationInputs { get; init; }
    public Tensor? ValidationLabels { get; init; }

    public void Dispose()
    {
        TrainInputs.Dispose();
        TrainLabels.Dispose();
        TestInputs.Dispose();
        TestLabels.Dispose();
        ValidationInputs?.Dispose();
        ValidationLabels?.Dispose();
    }
}

/// <summary>
/// Reads the two upload formats, both zip archives (stored or deflated entries): a zip of the four IDX files
/// (names as MNIST's: <c>train-images</c>, <c>train-labels</c>, <c>t10k-images</c>/<c>test-images</c>, ...,
/// optionally gzipped), or a NumPy <c>.npz</c> with <c>x_train</c>, <c>y_train</c>, <c>x_test</c>, <c>y_test</c>.
/// Either may carry a validation split as well: <c>x_val</c> and <c>y_val</c>, or IDX files whose names start with
/// <c>val</c> (<c>val-images-idx3-ubyte</c>, <c>val-labels-idx1-ubyte</c>). The content decides the format, not the file name.
/// </summary>
/// <remarks>
/// An archive is hostile until proven otherwise (a 37 KB zip can inflate to gigabytes). Every entry is read header
/// first: the IDX or .npy header says exactly how many bytes follow, the zip's own header must agree with it, the sum
/// over the four arrays must stay under <c>maxDataBytes</c>, and no entry (nor a gzip inside one) may inflate past
/// what was announced. Only then is data read, and <see cref="Inspect"/> reads it in small pieces.
/// </remarks>
public static class DatasetArchive
{
    /// <summary>Default limit on the inflated data of one data set (the four arrays together): 2 GiB.</summary>
    public const long DefaultMaxDataBytes = 2L << 30;

    /// <summary>Labels must lie in [0, MaxClasses): a class count beyond this is a broken file, not a data set.</summary>
    public const int MaxClasses = 100_000;

    private static readonly string[] NpzArrays = ["x_train", "y_train", "x_test", "y_test"];
    private static readonly string[] NpzValidationArrays = ["x_val", "y_val"];

    public static DatasetSummary Inspect(Stream content, long maxDataBytes = DefaultMaxDataBytes)
    {
        using var zip = Open(content);
        using var parts = OpenParts(zip, maxDataBytes);
        var x = parts.Headers;
        CheckShapes(x[0].Shape, x[1].Shape, x[2].Shape, x[3].Shape);
        if (parts.HasValidation) CheckValidationShapes(x[0].Shape, x[4].Shape, x[5].Shape);
        long maxLabel = -1;
        for (var i = 0; i < parts.Count; i++)
        {
            var part = parts[i];
            Guard(part.Name, () =>
            {
                if (i % 2 == 0) ArrayData.ScanData(part.Data, part.Header.DataBytes, part.Name);
                else maxLabel = Math.Max(maxLabel, ScanLabels(part, parts.Format));
            });
        }
        return new DatasetSummary(parts.Format, SampleShape(x[0].Shape),
            parts.Format == DatasetFormat.Npz ? TypeName(x[0].TypeName) : x[0].TypeName, (int)(maxLabel + 1), x[0].Shape[0], x[2].Shape[0],
            parts.HasValidation ? x[4].Shape[0] : 0);
    }

    /// <summary>
    /// The tensors of an archive <see cref="Inspect"/> accepted (under the Api's limit, which the worker need not know);
    /// the headers are still checked first and every array must fit one .NET array.
    /// </summary>
    public static DatasetTensors Read(Stream content, long maxDataBytes = long.MaxValue)
    {
        using var zip = Open(content);
        using var parts = OpenParts(zip, maxDataBytes);
        var tensors = new List<Tensor>(parts.Count);
        try
        {
            for (var i = 0; i < parts.Count; i++)
            {
                var part = parts[i];
                using var raw = Guard(part.Name, () => parts.Format == DatasetFormat.Npz
                    ? NpyReader.ReadData(part.Data, part.Header, part.Name)
                    : IdxReader.ReadData(part.Data, part.Header, part.Name));
                if (i % 2 == 1)
                {
                    tensors.Add(raw.to(int64));
                    continue;
                }
                using var inputs = raw.to(float32);
                tensors.Add(inputs.dim() == 3 ? inputs.unsqueeze(1) : inputs.alias()); // [N, H, W] images -> [N, 1, H, W]
            }
        }
        catch
        {
            foreach (var t in tensors) t.Dispose();
            throw;
        }
        return new DatasetTensors(tensors[0], tensors[1], tensors[2], tensors[3])
        {
            ValidationInputs = parts.HasValidation ? tensors[4] : null,
            ValidationLabels = parts.HasValidation ? tensors[5] : null,
        };
    }

    /// <summary>
    /// The most bytes of central directory an archive may have: a dataset needs four entries, and 1 MiB lists thousands.
    /// .NET's <see cref="ZipArchive"/> builds an object for every entry the directory lists before anything can be
    /// checked, so an upload of 1 GiB listing millions of empty entries cost gigabytes of memory.
    /// </summary>
    public const int MaxDirectoryBytes = 1 << 20;

    private static ZipArchive Open(Stream content)
    {
        try
        {
            CheckDirectorySize(content);
            return new ZipArchive(content, ZipArchiveMode.Read, leaveOpen: true);
        }
        catch (InvalidDataException)
        {
            throw new SurgeryException("Bad dataset",
                "the file is not a zip archive: upload a zip of IDX files or a NumPy .npz (x_train, y_train, x_test, y_test)", ErrorKind.BadInput);
        }
    }

    /// <summary>
    /// Refuses an archive whose central directory spans more than <see cref="MaxDirectoryBytes"/>, from its end record
    /// alone. The span is measured from where the directory starts (the offset that <see cref="ZipArchive"/> will read
    /// from, zip64's when there is one) to the end record, whatever entry count the record claims, since the reader parses
    /// every header in that span. An archive without an end record is left to <see cref="ZipArchive"/> to refuse.
    /// </summary>
    private static void CheckDirectorySize(Stream content)
    {
        if (!content.CanSeek) return;
        var start = content.Position;
        try
        {
            var tail = (int)Math.Min(content.Length - start, EndRecordBytes + ushort.MaxValue);
            var buffer = new byte[tail];
            content.Position = content.Length - tail;
            content.ReadExactly(buffer);
            var end = tail - EndRecordBytes;
            while (end >= 0 && BinaryPrimitives.ReadUInt32LittleEndian(buffer.AsSpan(end)) != 0x06054b50) end--;
            if (end < 0) return;
            var endPosition = content.Length - tail + end;
            long directoryStart = BinaryPrimitives.ReadUInt32LittleEndian(buffer.AsSpan(end + 16));
            var locator = end - Zip64LocatorBytes;
            if (locator >= 0 && BinaryPrimitives.ReadUInt32LittleEndian(buffer.AsSpan(locator)) == 0x07064b50)
            {
                // zip64: the locator points at the zip64 end record, which holds the directory's 64-bit offset.
                var record = BinaryPrimitives.ReadInt64LittleEndian(buffer.AsSpan(locator + 8));
                var zip64 = new byte[56];
                if (record >= 0 && record <= content.Length - zip64.Length)
                {
                    content.Position = record;
                    content.ReadExactly(zip64);
                    if (BinaryPrimitives.ReadUInt32LittleEndian(zip64) == 0x06064b50) directoryStart = BinaryPrimitives.ReadInt64LittleEndian(zip64.AsSpan(48));
                }
            }
            var span = endPosition - Math.Clamp(directoryStart, 0, endPosition);
            if (span > MaxDirectoryBytes)
            {
                throw new SurgeryException("Bad dataset",
                    $"the zip's central directory spans {span} bytes ({BinaryPrimitives.ReadUInt16LittleEndian(buffer.AsSpan(end + 10))} entries " +
                    $"listed); a dataset archive needs only its four arrays, and at most {MaxDirectoryBytes} bytes of directory are read",
                    ErrorKind.BadInput);
            }
        }
        finally
        {
            content.Position = start;
        }
    }

    /// <summary>Sizes of the zip end-of-central-directory record (without its comment) and of the zip64 locator before it.</summary>
    private const int EndRecordBytes = 22, Zip64LocatorBytes = 20;

    /// <summary>One array of the archive: its checked header and a stream positioned at its data, bounded to it.</summary>
    private sealed record Part(string Name, ArrayHeader Header, Stream Data);

    /// <summary>
    /// The four arrays (six with a validation split: x_val and y_val last), opened with their headers checked, before any
    /// data is read.
    /// </summary>
    private sealed class Parts(DatasetFormat format, List<Part> parts) : IDisposable
    {
        public DatasetFormat Format => format;

        public int Count => parts.Count;

        public bool HasValidation => parts.Count == 6;

        public Part this[int index] => parts[index];

        public ArrayHeader[] Headers => parts.Select(p => p.Header).ToArray();

        public void Dispose()
        {
            foreach (var part in parts) part.Data.Dispose();
        }
    }

    private static Parts OpenParts(ZipArchive zip, long maxDataBytes)
    {
        var (format, entries) = Select(zip);
        var opened = new List<Part>();
        try
        {
            long total = 0;
            foreach (var entry in entries)
            {
                var part = OpenPart(entry, format);
                opened.Add(part);
                if (part.Header.DataBytes > maxDataBytes - total) // total <= maxDataBytes, so this cannot overflow
                {
                    throw new SurgeryException("Dataset too large",
                        $"the arrays' headers announce more than {maxDataBytes} bytes of data in all (" +
                        string.Join(", ", opened.Select(p => $"{p.Name}: {p.Header.DataBytes}")) +
                        "); the limit is the setting Datasets:MaxDataBytes", ErrorKind.TooLarge);
                }
                total += part.Header.DataBytes;
            }
            return new Parts(format, opened);
        }
        catch
        {
            foreach (var part in opened) part.Data.Dispose();
            throw;
        }
    }

    /// <summary>x_train, y_train, x_test, y_test (then x_val, y_val when there are) in this order, not yet opened.</summary>
    private static (DatasetFormat Format, ZipArchiveEntry[] Entries) Select(ZipArchive zip)
    {
        var files = zip.Entries.Where(e => !e.FullName.EndsWith('/')).ToList();
        ZipArchiveEntry? Npy(string name) => files.FirstOrDefault(e => Path.GetFileName(e.FullName) == name + ".npy");
        var npz = NpzArrays.Select(Npy).ToArray();
        if (npz.All(e => e is not null))
        {
            return (DatasetFormat.Npz, [.. npz.Select(e => e!), .. Validation(DatasetFormat.Npz, NpzValidationArrays.Select(Npy).ToArray())]);
        }

        ZipArchiveEntry? Find(string[] split, string kind) => files.FirstOrDefault(e =>
        {
            var name = Path.GetFileName(e.FullName).ToLowerInvariant();
            return split.Any(s => name.StartsWith(s, StringComparison.Ordinal)) && name.Contains(kind, StringComparison.Ordinal);
        });
        string[] train = ["train"], test = ["t10k", "test"], validation = ["val"];
        var idx = new[] { Find(train, "image"), Find(train, "label"), Find(test, "image"), Find(test, "label") };
        if (idx.All(e => e is not null))
        {
            return (DatasetFormat.Idx,
                [.. idx.Select(e => e!), .. Validation(DatasetFormat.Idx, [Find(validation, "image"), Find(validation, "label")])]);
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

    /// <summary>The validation inputs and labels when the archive holds both, none when it holds neither.</summary>
    private static ZipArchiveEntry[] Validation(DatasetFormat format, ZipArchiveEntry?[] entries)
    {
        if (entries.All(e => e is null)) return [];
        if (entries.All(e => e is not null)) return entries.Select(e => e!).ToArray();
        throw new SurgeryException("Bad dataset", format == DatasetFormat.Npz
            ? $"the .npz holds {(entries[0] is null ? "y_val but not x_val" : "x_val but not y_val")}: a validation split needs both"
            : $"the archive holds validation {(entries[0] is null ? "labels but no validation images" : "images but no validation labels")}: " +
              "a validation split needs both (val-images, val-labels)", ErrorKind.BadInput);
    }

    /// <summary>
    /// Opens an entry, unwraps a gzip inside it (MNIST is distributed gzipped) and reads the array header. The stream
    /// returned can never yield more than the entry's zip header declares, nor more than the array header announces.
    /// </summary>
    private static Part OpenPart(ZipArchiveEntry entry, DatasetFormat format)
    {
        var name = entry.FullName;
        Stream? stream = null;
        try
        {
            return Guard(name, () =>
            {
                stream = new LimitedReadStream(entry.Open(), entry.Length, () => new SurgeryException("Bad dataset",
                    $"the archive entry {name} inflates past the {entry.Length} bytes its zip header declares", ErrorKind.BadInput));
                var start = new byte[2];
                var read = stream.ReadAtLeast(start, 2, throwOnEndOfStream: false);
                var gzipped = read == 2 && start[0] == 0x1F && start[1] == 0x8B;
                stream = new PrefixedStream(start.AsMemory(0, read), stream);
                if (gzipped) stream = new GZipStream(stream, CompressionMode.Decompress);
                var counting = new CountingStream(stream);
                var header = format == DatasetFormat.Npz ? NpyReader.ReadHeader(counting, name) : IdxReader.ReadHeader(counting, name);
                var expected = counting.Count + header.DataBytes;
                if (!gzipped && entry.Length != expected)
                {
                    // The same words as a short or long array read anywhere else (ArrayData), found here before reading it.
                    throw new SurgeryException("Bad dataset",
                        $"{name} holds {entry.Length - counting.Count} data bytes but its header announces {header.DataBytes}", ErrorKind.BadInput);
                }
                stream = new LimitedReadStream(stream, header.DataBytes, () => new SurgeryException("Bad dataset",
                    $"{name} holds more than the {header.DataBytes} data bytes its header announces", ErrorKind.BadInput));
                return new Part(name, header, stream);
            });
        }
        catch
        {
            stream?.Dispose();
            throw;
        }
    }

    /// <summary>Runs a reader, turning a corrupt entry or a reader's refusal into a 422 that names the entry.</summary>
    private static T Guard<T>(string name, Func<T> read)
    {
        try
        {
            return read();
        }
        catch (InvalidDataException e)
        {
            throw new SurgeryException("Bad dataset", $"the archive entry {name} is corrupt: {e.Message}", ErrorKind.BadInput);
        }
        catch (SurgeryException e) when (e.Kind == ErrorKind.Malformed)
        {
            throw new SurgeryException(e.Title, e.Message, ErrorKind.BadInput); // a file that cannot be used, not a bad request
        }
    }

    private static void Guard(string name, Action read) => Guard(name, () =>
    {
        read();
        return 0;
    });

    /// <summary>Streams the labels (never all in memory) and returns the largest; each must be an integer in [0, MaxClasses).</summary>
    private static long ScanLabels(Part part, DatasetFormat format)
    {
        var type = part.Header.TypeName;
        var size = part.Header.ElementSize;
        var max = -1.0;
        ArrayData.ScanData(part.Data, part.Header.DataBytes, part.Name, chunk =>
        {
            // Whole elements only: a chunk cut short is followed by ScanData's refusal of the truncated array.
            for (var offset = 0; offset + size <= chunk.Length; offset += size)
            {
                var value = format == DatasetFormat.Npz
                    ? NpyReader.Value(chunk[offset..], type)
                    : IdxReader.Value(chunk[offset..], type);
                if (!double.IsFinite(value) || value != Math.Floor(value))
                {
                    throw new SurgeryException("Bad dataset", $"{part.Name} holds non-integer labels", ErrorKind.BadInput);
                }
                if (value < 0) throw new SurgeryException("Bad dataset", $"{part.Name} holds negative labels", ErrorKind.BadInput);
                if (value >= MaxClasses)
                {
                    throw new SurgeryException("Bad dataset",
                        $"{part.Name} holds the label {value:R}; labels must be class numbers below {MaxClasses}", ErrorKind.BadInput);
                }
                max = Math.Max(max, value);
            }
        });
        return (long)max;
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
        Check(xTrain[1..].All(d => d > 0),
            $"samples have shape [{string.Join(", ", xTrain[1..])}]: every dimension of a sample must be at least 1 (a sample with no values cannot be learned from)");
    }

    private static void CheckValidationShapes(long[] xTrain, long[] xVal, long[] yVal)
    {
        void Check(bool ok, string problem)
        {
            if (!ok) throw new SurgeryException("Bad dataset", problem, ErrorKind.BadInput);
        }

        Check(yVal.Length == 1, "validation labels must be one-dimensional");
        Check(xVal.Length >= 1 && xVal[0] == yVal[0], $"{(xVal.Length > 0 ? xVal[0] : 0)} validation inputs but {yVal[0]} validation labels");
        Check(xVal[1..].SequenceEqual(xTrain[1..]),
            $"validation samples have shape [{string.Join(", ", xVal[1..])}] but training samples [{string.Join(", ", xTrain[1..])}]");
        Check(xVal[0] > 0, "the validation split is empty");
    }

    private static long[] SampleShape(long[] inputs) => inputs.Length == 3 ? [1, inputs[1], inputs[2]] : inputs[1..];

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

    /// <summary>Bytes already read (to sniff for gzip) followed by the rest of the stream.</summary>
    private sealed class PrefixedStream(ReadOnlyMemory<byte> prefix, Stream rest) : Stream
    {
        private ReadOnlyMemory<byte> _prefix = prefix;

        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            if (_prefix.IsEmpty) return rest.Read(buffer);
            var count = Math.Min(buffer.Length, _prefix.Length);
            _prefix.Span[..count].CopyTo(buffer);
            _prefix = _prefix[count..];
            return count;
        }

        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing) rest.Dispose();
            base.Dispose(disposing);
        }
    }

    /// <summary>Counts the bytes read through it (the header's length), without owning the stream.</summary>
    private sealed class CountingStream(Stream inner) : Stream
    {
        public long Count { get; private set; }

        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => Count; set => throw new NotSupportedException(); }

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            var read = inner.Read(buffer);
            Count += read;
            return read;
        }

        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
