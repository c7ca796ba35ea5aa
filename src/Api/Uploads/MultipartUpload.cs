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
        if (request.ContentLength > limit + 64 * 1024)
        {
            throw TooLarge(limit);
        }
        var sizeFeature = request.HttpContext.Features.Get<IHttpMaxRequestBodySizeFeature>();
        if (sizeFeature is { IsReadOnly: false })
        {
            sizeFeature.MaxRequestBodySize = limit + 64 * 1024; // the form's own headers and boundaries
        }
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
        Artifact? file = null;
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
                    file = await artifacts.SaveAsync(tenant.RequiredTenantId, kind, fileName, partType, section.Body, limit, cancellationToken);
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
            if (file is not null) await artifacts.DeleteAsync(file.Id, CancellationToken.None);
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
        return new Upload(file, fields);
    }

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
