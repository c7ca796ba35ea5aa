namespace SurgeryService.Domain.Datasets;

/// <summary>
/// What an array file's header announces: the shape, the element size and so the exact number of data bytes that must
/// follow. Readers check these before they inflate or allocate anything, so a header cannot make them read more.
/// </summary>
public sealed record ArrayHeader(long[] Shape, string TypeName, int ElementSize, long DataBytes);

/// <summary>Size arithmetic and exact-length reads shared by the IDX and .npy readers.</summary>
public static class ArrayData
{
    /// <summary>The product of <paramref name="shape"/> in checked 64-bit arithmetic; a 400 naming <paramref name="what"/> on overflow.</summary>
    public static long ElementCount(IReadOnlyList<long> shape, string what)
    {
        long count = 1;
        foreach (var dimension in shape)
        {
            if (dimension < 0)
            {
                throw new SurgeryException("Bad dataset", $"{what} has a negative dimension in its shape [{string.Join(", ", shape)}]");
            }
            try
            {
                count = checked(count * dimension);
            }
            catch (OverflowException)
            {
                throw new SurgeryException("Bad dataset",
                    $"{what} has the impossible shape [{string.Join(", ", shape)}]: its size does not fit in 64 bits");
            }
        }
        return count;
    }

    /// <summary>The header of an array of <paramref name="shape"/> with elements of <paramref name="elementSize"/> bytes.</summary>
    public static ArrayHeader Header(long[] shape, string typeName, int elementSize, string what)
    {
        var count = ElementCount(shape, what);
        return count <= long.MaxValue / elementSize
            ? new ArrayHeader(shape, typeName, elementSize, count * elementSize)
            : throw new SurgeryException("Bad dataset",
                $"{what} has the impossible shape [{string.Join(", ", shape)}]: its size does not fit in 64 bits");
    }

    /// <summary>Exactly <paramref name="length"/> bytes of a header; a truncated file is a 400 naming <paramref name="what"/>.</summary>
    public static byte[] ReadHeaderBytes(Stream stream, int length, string what, string part)
    {
        var bytes = new byte[length];
        if (stream.ReadAtLeast(bytes, length, throwOnEndOfStream: false) < length)
        {
            throw new SurgeryException("Bad dataset", $"{what} is truncated ({part})");
        }
        return bytes;
    }

    /// <summary>
    /// The data that follows a header: exactly <paramref name="length"/> bytes and nothing after them. Refuses a stream
    /// that holds fewer or more bytes, and a length that no array can hold, before allocating.
    /// </summary>
    public static byte[] ReadData(Stream stream, long length, string what)
    {
        if (length > Array.MaxLength)
        {
            throw new SurgeryException("Bad dataset",
                $"{what} announces {length} data bytes; one array can hold at most {Array.MaxLength}", ErrorKind.TooLarge);
        }
        var bytes = new byte[length];
        var read = stream.ReadAtLeast(bytes, bytes.Length, throwOnEndOfStream: false);
        if (read < length)
        {
            throw new SurgeryException("Bad dataset", $"{what} holds {read} data bytes but its header announces {length}");
        }
        ExpectEnd(stream, length, what);
        return bytes;
    }

    /// <summary>
    /// Reads the data that follows a header in pieces of at most 64 KiB, handing each to <paramref name="visit"/>, and
    /// checks that exactly <paramref name="length"/> bytes are present: memory stays bounded whatever the length.
    /// </summary>
    public static void ScanData(Stream stream, long length, string what, Action<ReadOnlySpan<byte>>? visit = null)
    {
        var buffer = new byte[64 * 1024];
        long total = 0;
        while (total < length)
        {
            var wanted = (int)Math.Min(buffer.Length, length - total);
            var read = stream.ReadAtLeast(buffer.AsSpan(0, wanted), wanted, throwOnEndOfStream: false);
            visit?.Invoke(buffer.AsSpan(0, read));
            total += read;
            if (read < wanted)
            {
                throw new SurgeryException("Bad dataset", $"{what} holds {total} data bytes but its header announces {length}");
            }
        }
        ExpectEnd(stream, length, what);
    }

    private static void ExpectEnd(Stream stream, long length, string what)
    {
        if (stream.ReadByte() != -1)
        {
            throw new SurgeryException("Bad dataset", $"{what} holds more than the {length} data bytes its header announces");
        }
    }
}

/// <summary>
/// A read-only view of <paramref name="inner"/> that refuses to produce more than <paramref name="limit"/> bytes: the
/// guard against an archive entry that inflates past the size it declares.
/// </summary>
public sealed class LimitedReadStream(Stream inner, long limit, Func<Exception> overflow) : Stream
{
    private long _produced;

    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => throw new NotSupportedException();

    public override long Position
    {
        get => _produced;
        set => throw new NotSupportedException();
    }

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
        if (buffer.Length == 0) return 0;
        // Ask for at most one byte past the limit: enough to see an overflow, never a large read beyond it.
        var allowed = (int)Math.Min(buffer.Length, limit - _produced + 1);
        var read = inner.Read(buffer[..allowed]);
        _produced += read;
        if (_produced > limit) throw overflow();
        return read;
    }

    public override void Flush() { }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing) inner.Dispose();
        base.Dispose(disposing);
    }
}
