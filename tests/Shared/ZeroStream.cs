namespace SurgeryService.Tests.Shared;

/// <summary>Reads as <paramref name="head"/> and then <paramref name="zeros"/> zero bytes, without holding them.</summary>
internal sealed class ZeroStream(byte[] head, long zeros) : Stream
{
    private long _position;

    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => head.Length + zeros;
    public override long Position { get => _position; set => throw new NotSupportedException(); }

    public override int Read(byte[] buffer, int offset, int count)
    {
        var n = (int)Math.Min(count, Length - _position);
        var fromHead = (int)Math.Clamp(head.Length - _position, 0, n);
        head.AsSpan((int)Math.Min(_position, head.Length), fromHead).CopyTo(buffer.AsSpan(offset));
        Array.Clear(buffer, offset + fromHead, n - fromHead);
        _position += n;
        return n;
    }

    public override void Flush() { }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}
