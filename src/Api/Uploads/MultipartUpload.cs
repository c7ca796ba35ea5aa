using System.Security.Cryptography;
using System.Text.Json;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.WebUtilities;
using Microsoft.Extensions.Options;
using Microsoft.Net.Http.Headers;
using SurgeryService.Domain;
using SurgeryService.Domain.Artifacts;
using SurgeryService.Infrastructure.Artifacts;
using SurgeryService.Infrastructure.Tenants;

namespace SurgeryService.Api.Uploads;

/// <summary>A multipart upload: the stored file and the other form fields.</summary>
public sealed record Upload(Artifact File, IReadOnlyDictionary<string, string> Fields)
{
    public string? Field(string name) => Fields.TryGetValue(name, out var value) && !string.IsNullOrWhiteSpace(value) ? value.Trim() : null;
}

/// <summary>
/// Reads <c>multipart/form-data</c> section by section and streams the part named <c>file</c> straight into an
/// artifact (never buffered whole in memory or on disk), enforcing <see cref="ApiOptions.MaxUploadBytes"/> with 413.
/// </summary>
public sealed class MultipartUpload(ArtifactStore artifacts, IOptions<ApiOptions> options, ITenantAccessor tenant)
{
    public const string FileField = "file";
    private const int MaxFieldLength = 4096;

    /// <summary>Form fields besides the file, in number and in characters together: the form is small metadata.</summary>
    public const int MaxFields = 16, MaxFieldsLength = 16 * 1024;

    /// <summary>Lengths of the columns the name and the file's metadata are stored in.</summary>
    private const int MaxNameLength = ColumnLimits.Name, MaxContentTypeLength = ColumnLimits.ContentType;

    public async Task<Upload> ReadAsync(HttpRequest request, ArtifactKind kind, CancellationToken cancellationToken)
    {
        var limit = options.Value.MaxUploadBytes;
        var fileName = "";
        var (file, fields) = await ReadFormAsync(request, (name, partType, body) =>
        {
            fileName = name;
            return artifacts.SaveAsync(tenant.RequiredTenantId, kind, name, partType, body, limit, cancellationToken);
        }, stored => artifacts.DeleteAsync(stored.Id, CancellationToken.None), cancellationToken);

        if (fields.TryGetValue("name", out var displayName) && StoredText.Problem(displayName.Trim(), MaxNameLength) is { } bad)
        {
            if (file is not null) await artifacts.DeleteAsync(file.Id, CancellationToken.None);
            throw new SurgeryException("Bad form field", $"form field 'name' {bad}", ErrorKind.Malformed);
        }
        if (file is null)
        {
            throw new SurgeryException("File missing", $"the form has no part named '{FileField}' with the file", ErrorKind.Malformed);
        }
        if (file.Size == 0)
        {
            await artifacts.DeleteAsync(file.Id, CancellationToken.None);
            throw new SurgeryException("Empty file", "the uploaded file is empty", ErrorKind.Malformed);
        }
        request.HttpContext.Items[FingerprintItem] = Fingerprint(fileName, file.Sha256, fields);
        return new Upload(file, fields);
    }

    /// <summary>
    /// What identifies an upload's content whatever boundary the client drew: the file's name and SHA-256 and the other
    /// fields. A retry under the same <c>Idempotency-Key</c> must have the same (see <c>IdempotencyMiddleware</c>).
    /// </summary>
    public async Task<string> FingerprintAsync(HttpRequest request, CancellationToken cancellationToken)
    {
        var fileName = "";
        var (sha256, fields) = await ReadFormAsync(request, async (name, _, body) =>
        {
            fileName = name;
            return Convert.ToHexStringLower(await SHA256.HashDataAsync(body, cancellationToken));
        }, _ => Task.CompletedTask, cancellationToken);
        return Fingerprint(fileName, sha256 ?? "", fields);
    }

    /// <summary>The fingerprint (see <see cref="FingerprintAsync"/>) of the upload this request stored, once <see cref="ReadAsync"/> has read it.</summary>
    public static string? FingerprintOf(HttpContext http) => http.Items[FingerprintItem] as string;

    private const string FingerprintItem = "SurgeryService.UploadFingerprint";

    private static string Fingerprint(string fileName, string fileSha256, IReadOnlyDictionary<string, string> fields) =>
        Convert.ToHexStringLower(SHA256.HashData(JsonSerializer.SerializeToUtf8Bytes(new
        {
            fileName, fileSha256, fields = fields.OrderBy(f => f.Key, StringComparer.OrdinalIgnoreCase).Select(f => new[] { f.Key.ToLowerInvariant(), f.Value }),
        })));

    /// <summary>
    /// Reads the form section by section: the first part named <see cref="FileField"/> goes to <paramref name="readFile"/>
    /// (its file name, Content-Type and content); the other fields are returned. When reading fails after the file was
    /// read, <paramref name="discard"/> gets it.
    /// </summary>
    private async Task<(T? File, Dictionary<string, string> Fields)> ReadFormAsync<T>(HttpRequest request,
        Func<string, string, Stream, Task<T>> readFile, Func<T, Task> discard, CancellationToken cancellationToken) where T : class
    {
        var limit = options.Value.MaxUploadBytes;
        AllowBody(request, limit);
        if (!MediaTypeHeaderValue.TryParse(request.ContentType, out var contentType)
            || !contentType.MediaType.Equals("multipart/form-data", StringComparison.OrdinalIgnoreCase)
            || HeaderUtilities.RemoveQuotes(contentType.Boundary).Length == 0)
        {
            throw new UnsupportedMediaTypeException("Not a form upload",
                $"send the file as multipart/form-data with a part named '{FileField}'");
        }

        var reader = new MultipartReader(HeaderUtilities.RemoveQuotes(contentType.Boundary).Value!, request.Body);
        var fields = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        var fieldsLength = 0;
        T? file = null;
        try
        {
            while (await reader.ReadNextSectionAsync(cancellationToken) is { } section)
            {
                if (!ContentDispositionHeaderValue.TryParse(section.ContentDisposition, out var disposition)
                    || !disposition.DispositionType.Equals("form-data"))
                {
                    continue;
                }
                var name = HeaderUtilities.RemoveQuotes(disposition.Name).Value ?? "";
                if (name.Equals(FileField, StringComparison.OrdinalIgnoreCase) && file is null)
                {
                    var fileName = Path.GetFileName(HeaderUtilities.RemoveQuotes(
                        disposition.FileNameStar.HasValue ? disposition.FileNameStar : disposition.FileName).Value ?? "upload");
                    // A long file name is cut (it is only a label); one with characters PostgreSQL cannot store is refused.
                    Check(StoredText.Problem(StoredText.Truncate(fileName, MaxNameLength), MaxNameLength), "the file name");
                    var partType = section.ContentType ?? "application/octet-stream";
                    Check(StoredText.Problem(partType, MaxContentTypeLength), "the file part's Content-Type");
                    file = await readFile(fileName, partType, section.Body);
                }
                else
                {
                    using var text = new StreamReader(section.Body);
                    var buffer = new char[MaxFieldLength + 1];
                    var read = await text.ReadBlockAsync(buffer, cancellationToken);
                    if (read > MaxFieldLength)
                    {
                        throw new SurgeryException("Bad form field", $"form field '{name}' is longer than {MaxFieldLength} characters", ErrorKind.Malformed);
                    }
                    fieldsLength += read + name.Length;
                    if (fields.Count >= MaxFields || fieldsLength > MaxFieldsLength)
                    {
                        throw new SurgeryException("Bad form",
                            $"the form's fields besides the file exceed {MaxFields} fields or {MaxFieldsLength} characters in all", ErrorKind.Malformed);
                    }
                    fields[name] = new string(buffer, 0, read);
                }
            }
        }
        catch (Exception e)
        {
            if (file is not null) await discard(file);
            // Kestrel's own body limit (set above) can trip first when a read runs ahead: same answer, naming the setting.
            if (e is BadHttpRequestException { StatusCode: StatusCodes.Status413PayloadTooLarge }) throw TooLarge(limit);
            // BadHttpRequestException (an IOException) keeps its own status, e.g. 413 from the server's body limit.
            // MultipartReader's own limits (header line length, header count, preamble) throw InvalidDataException.
            if (e is IOException and not BadHttpRequestException or InvalidDataException)
            {
                throw new SurgeryException("Bad upload", $"the multipart body could not be read: {e.Message}", ErrorKind.Malformed);
            }
            throw;
        }
        return (file, fields);
    }

    /// <summary>
    /// Lets the server read a form holding a file of up to <paramref name="limit"/> bytes (its own headers and boundaries
    /// besides), above Kestrel's default body limit; a body announced larger is a 413 at once.
    /// </summary>
    public static void AllowBody(HttpRequest request, long limit)
    {
        if (request.ContentLength > limit + FormOverheadBytes)
        {
            throw TooLarge(limit);
        }
        var sizeFeature = request.HttpContext.Features.Get<IHttpMaxRequestBodySizeFeature>();
        if (sizeFeature is { IsReadOnly: false })
        {
            sizeFeature.MaxRequestBodySize = limit + FormOverheadBytes;
        }
    }

    private const int FormOverheadBytes = 64 * 1024;

    private static void Check(string? problem, string what)
    {
        if (problem is not null) throw new SurgeryException("Bad upload", $"{what} {problem}", ErrorKind.Malformed);
    }

    private static SurgeryException TooLarge(long limit) =>
        new("Upload too large", $"the upload is larger than the limit of {limit} bytes (setting Api:MaxUploadBytes)",
            ErrorKind.TooLarge);
}

/// <summary>A body that is not a form upload: answered with 415 (an HTTP notion, so it lives in the Api).</summary>
public sealed class UnsupportedMediaTypeException(string title, string message) : SurgeryException(title, message, ErrorKind.Malformed);
