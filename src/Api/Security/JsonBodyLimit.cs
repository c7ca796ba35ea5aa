using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Options;
using SurgeryService.Domain;

namespace SurgeryService.Api.Security;

/// <summary>
/// Bounds JSON request bodies by <see cref="ApiOptions.MaxJsonBodyBytes"/> with a 413: a job request is a few kilobytes,
/// while parsing, storing and listing megabytes of settings cost every tenant. Form uploads have their own limit
/// (<see cref="ApiOptions.MaxUploadBytes"/>). The body is counted as it is read, so a body that does not announce its
/// length is held to the limit too.
/// </summary>
public sealed class JsonBodyLimit(RequestDelegate next)
{
    public Task InvokeAsync(HttpContext http, IOptions<ApiOptions> options)
    {
        if (!http.Request.HasJsonContentType()) return next(http);
        var limit = options.Value.MaxJsonBodyBytes;
        if (http.Request.ContentLength > limit) throw TooLarge(limit);
        if (http.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } server) server.MaxRequestBodySize = limit;
        http.Request.Body = new LimitedStream(http.Request.Body, limit);
        return next(http);
    }

    internal static SurgeryException TooLarge(long limit) => new("Request body too large",
        $"the JSON body is larger than the limit of {limit} bytes (setting Api:MaxJsonBodyBytes): " +
        "name layers by patterns (\"conv*\") rather than one entry per layer", ErrorKind.TooLarge);

    /// <summary>Reads the wrapped stream and throws <see cref="TooLarge"/> once more than the limit has come.</summary>
    private sealed class LimitedStream(Stream inner, long limit) : Stream
    {
        private long _read;

        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override int Read(byte[] buffer, int offset, int count) => Count(inner.Read(buffer, offset, count));

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) =>
            Count(await inner.ReadAsync(buffer, cancellationToken));

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        private int Count(int read)
        {
            _read += read;
            if (_read > limit) throw TooLarge(limit);
            return read;
        }

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
