using Google.Protobuf;
using SurgeryService.Domain.Onnx.Proto;

namespace SurgeryService.Domain.Onnx;

/// <summary>
/// How much data a tensor held in the fields <see cref="OnnxShapeReader"/> left out: what <see cref="OnnxTensors.CheckData(TensorProto, string?, OmittedTensorData?)"/>
/// needs to check it against its shape without the values.
/// </summary>
internal sealed class OmittedTensorData
{
    /// <summary>The length of the raw_data left out, or null when the tensor's raw_data (if any) was kept.</summary>
    public long? RawBytes { get; set; }

    /// <summary>Values left out per typed field (TensorProto field numbers 4, 5, 7, 10, 11).</summary>
    public long FloatCount { get; set; }
    public long Int32Count { get; set; }
    public long Int64Count { get; set; }
    public long DoubleCount { get; set; }
    public long UInt64Count { get; set; }
}

/// <summary>
/// Reads an ONNX <see cref="ModelProto"/> from a stream without holding its weights: every initializer keeps its name,
/// shape, type and other fields, but a data field (raw_data or a packed typed field) longer than a threshold is
/// skipped on the stream and only its length recorded. The rest of the message (nodes, inputs, attributes, small
/// tensors) is parsed by the generated parser from its bytes, so what it accepts and refuses is what
/// <see cref="ModelProto.Parser"/> does. Only the path ModelProto.graph (7) → GraphProto.initializer (5) → TensorProto
/// data is walked by hand; a seekable stream (the artifact store's) is never read where data is skipped.
/// </summary>
internal sealed class OnnxShapeReader
{
    private const int WireVarint = 0, WireFixed64 = 1, WireLengthDelimited = 2, WireStartGroup = 3, WireEndGroup = 4, WireFixed32 = 5;

    private readonly Stream _stream;
    private readonly long _keepDataUpTo;

    /// <summary>Where the stream ends (long.MaxValue when it cannot say): a field that claims to reach past it is truncated.</summary>
    private readonly long _end;
    private readonly byte[] _buffer = new byte[64 << 10];
    private int _bufferPosition;
    private int _bufferLength;
    private long _bufferStart;

    private OnnxShapeReader(Stream stream, long keepDataUpTo)
    {
        _stream = stream;
        _keepDataUpTo = keepDataUpTo;
        _bufferStart = stream.CanSeek ? stream.Position : 0;
        _end = stream.CanSeek ? stream.Length : long.MaxValue;
    }

    /// <summary>Offset of the next byte, from where the stream stood when reading began.</summary>
    private long Position => _bufferStart + _bufferPosition;

    /// <summary>
    /// The model in <paramref name="stream"/> (read to its end) with the data of initializers whose data fields exceed
    /// <paramref name="keepDataUpTo"/> bytes left out; <c>Omitted</c> says, per such tensor, how much was left out.
    /// Where the generated parser would throw <see cref="InvalidProtocolBufferException"/>, throws that or, for what
    /// the walk itself finds, a <see cref="MalformedProtobufException"/> saying whether the stream ended in a field.
    /// </summary>
    public static (ModelProto Model, IReadOnlyDictionary<TensorProto, OmittedTensorData> Omitted) Read(Stream stream, long keepDataUpTo)
    {
        var reader = new OnnxShapeReader(stream, keepDataUpTo);
        return reader.ReadModel();
    }

    private (ModelProto, IReadOnlyDictionary<TensorProto, OmittedTensorData>) ReadModel()
    {
        var omitted = new Dictionary<TensorProto, OmittedTensorData>(ReferenceEqualityComparer.Instance);
        var modelFields = new MemoryStream();
        var graphFields = (MemoryStream?)null;
        var initializers = new List<TensorProto>();
        while (TryReadTag(_end, out var tag))
        {
            if (tag == (7 << 3 | WireLengthDelimited))
            {
                var end = ReadLengthEnd(_end);
                graphFields ??= new MemoryStream();
                while (TryReadTag(end, out var graphTag))
                {
                    if (graphTag == (5 << 3 | WireLengthDelimited))
                    {
                        initializers.Add(ReadTensor(ReadLengthEnd(end), omitted));
                    }
                    else
                    {
                        CopyField(graphTag, end, graphFields);
                    }
                }
            }
            else
            {
                CopyField(tag, _end, modelFields);
            }
        }

        var model = ModelProto.Parser.ParseFrom(modelFields.ToArray());
        if (graphFields is not null)
        {
            var graph = GraphProto.Parser.ParseFrom(graphFields.ToArray());
            graph.Initializer.Add(initializers);
            if (model.Graph is null) model.Graph = graph;
            else model.Graph.MergeFrom(graph);
        }
        return (model, omitted);
    }

    private TensorProto ReadTensor(long end, Dictionary<TensorProto, OmittedTensorData> omitted)
    {
        var kept = new MemoryStream();
        var left = new OmittedTensorData();
        var any = false;
        var lastRawOmitted = false;
        while (TryReadTag(end, out var tag))
        {
            var field = tag >> 3;
            if ((tag & 7) != WireLengthDelimited || field is not (4 or 5 or 7 or 9 or 10 or 11))
            {
                CopyField(tag, end, kept);
                continue;
            }
            var fieldEnd = ReadLengthEnd(end);
            var length = fieldEnd - Position;
            if (length <= _keepDataUpTo)
            {
                WriteVarint(kept, tag);
                WriteVarint(kept, (ulong)length);
                CopyBytes(length, kept);
                if (field == 9) lastRawOmitted = false;
                continue;
            }
            any = true;
            switch (field)
            {
                case 9:
                    left.RawBytes = length;
                    lastRawOmitted = true;
                    Skip(length);
                    break;
                case 4:
                    left.FloatCount += FixedCount(length, 4);
                    Skip(length);
                    break;
                case 10:
                    left.DoubleCount += FixedCount(length, 8);
                    Skip(length);
                    break;
                default:
                    var count = CountVarints(fieldEnd);
                    if (field == 5) left.Int32Count += count;
                    else if (field == 7) left.Int64Count += count;
                    else left.UInt64Count += count;
                    break;
            }
        }
        var tensor = TensorProto.Parser.ParseFrom(kept.ToArray());
        if (any)
        {
            if (lastRawOmitted) tensor.ClearRawData();
            else left.RawBytes = null;
            omitted[tensor] = left;
        }
        return tensor;
    }

    private static long FixedCount(long length, int size) => length % size == 0
        ? length / size
        : throw new MalformedProtobufException($"A packed field of {size}-byte values has {length} bytes, which is not a multiple of {size}: the message is invalid.");

    /// <summary>Copies one field (its tag already read) as it stands, so the generated parser reads it.</summary>
    private void CopyField(uint tag, long end, MemoryStream destination)
    {
        WriteVarint(destination, tag);
        switch ((int)(tag & 7))
        {
            case WireVarint:
                WriteVarint(destination, ReadVarint(end));
                break;
            case WireFixed64:
                CopyBytes(Within(8, end), destination);
                break;
            case WireFixed32:
                CopyBytes(Within(4, end), destination);
                break;
            case WireLengthDelimited:
                var fieldEnd = ReadLengthEnd(end);
                WriteVarint(destination, (ulong)(fieldEnd - Position));
                CopyBytes(fieldEnd - Position, destination);
                break;
            case WireStartGroup:
                while (true)
                {
                    if (!TryReadTag(end, out var inner)) throw Truncated();
                    if (inner == ((tag & ~7u) | WireEndGroup))
                    {
                        WriteVarint(destination, inner);
                        break;
                    }
                    CopyField(inner, end, destination);
                }
                break;
            default:
                throw new MalformedProtobufException("Protocol message contained a tag with an invalid wire type.");
        }
    }

    private long Within(long length, long end) => Position + length <= end ? length : throw Truncated();

    private bool TryReadTag(long end, out uint tag)
    {
        tag = 0;
        if (Position >= end) return false;
        if (!Fill()) return end == long.MaxValue ? false : throw Truncated();
        var value = ReadVarint(end);
        if (value == 0 || value > uint.MaxValue || (value >> 3) == 0)
        {
            throw new MalformedProtobufException("Protocol message contained an invalid tag (zero).");
        }
        tag = (uint)value;
        if ((tag & 7) is 6 or 7) throw new MalformedProtobufException("Protocol message contained a tag with an invalid wire type.");
        if ((tag & 7) == WireEndGroup) throw new MalformedProtobufException("Protocol message end-group tag did not match expected tag.");
        return true;
    }

    /// <summary>Reads a length and returns where the field it announces ends, which must lie within <paramref name="end"/>.</summary>
    private long ReadLengthEnd(long end)
    {
        var length = ReadVarint(end);
        if (length > int.MaxValue)
        {
            throw new MalformedProtobufException("CodedInputStream encountered an embedded string or message which claimed to have negative size.");
        }
        return Position + (long)length <= end ? Position + (long)length : throw Truncated();
    }

    private ulong ReadVarint(long end)
    {
        ulong value = 0;
        for (var shift = 0; shift < 70; shift += 7)
        {
            if (Position >= end || !Fill()) throw Truncated();
            var b = _buffer[_bufferPosition++];
            if (shift < 64) value |= (ulong)(b & 0x7F) << shift;
            if (b < 0x80) return value;
        }
        throw new MalformedProtobufException("CodedInputStream encountered a malformed varint.");
    }

    private long CountVarints(long end)
    {
        long count = 0;
        while (Position < end)
        {
            ReadVarint(end);
            count++;
        }
        return count;
    }

    private void CopyBytes(long length, MemoryStream destination)
    {
        while (length > 0)
        {
            if (!Fill()) throw Truncated();
            var n = (int)Math.Min(length, _bufferLength - _bufferPosition);
            destination.Write(_buffer, _bufferPosition, n);
            _bufferPosition += n;
            length -= n;
        }
    }

    private void Skip(long length)
    {
        var inBuffer = Math.Min(length, _bufferLength - _bufferPosition);
        _bufferPosition += (int)inBuffer;
        length -= inBuffer;
        if (length == 0) return;
        if (_stream.CanSeek)
        {
            var target = Position + length;
            if (target > _stream.Length) throw Truncated();
            _stream.Position = target;
            _bufferStart = target;
            _bufferPosition = _bufferLength = 0;
            return;
        }
        while (length > 0)
        {
            if (!Fill()) throw Truncated();
            var n = (int)Math.Min(length, _bufferLength - _bufferPosition);
            _bufferPosition += n;
            length -= n;
        }
    }

    /// <summary>Whether a byte is buffered, reading the next piece of the stream when the buffer is used up.</summary>
    private bool Fill()
    {
        if (_bufferPosition < _bufferLength) return true;
        _bufferStart += _bufferLength;
        _bufferPosition = 0;
        _bufferLength = _stream.Read(_buffer, 0, _buffer.Length);
        return _bufferLength > 0;
    }

    private static void WriteVarint(MemoryStream destination, ulong value)
    {
        while (value >= 0x80)
        {
            destination.WriteByte((byte)(value | 0x80));
            value >>= 7;
        }
        destination.WriteByte((byte)value);
    }

    private static MalformedProtobufException Truncated() => new(
        "While parsing a protocol message, the input ended unexpectedly in the middle of a field. This could mean either " +
        "that the input has been truncated or that an embedded message misreported its own length.", truncated: true);
}

/// <summary>The stream is not a protobuf message: what <see cref="InvalidProtocolBufferException"/> says of a byte array.</summary>
internal sealed class MalformedProtobufException(string message, bool truncated = false) : Exception(message)
{
    /// <summary>Whether the stream ended inside a field (as opposed to holding bytes no message can have).</summary>
    public bool Truncated { get; } = truncated;
}
