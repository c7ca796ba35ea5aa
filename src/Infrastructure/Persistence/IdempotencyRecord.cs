namespace SurgeryService.Infrastructure.Persistence;

/// <summary>
/// The answer to a POST sent with an <c>Idempotency-Key</c>, kept so that a retry of the same request gets the same
/// answer instead of creating a second model, dataset or job. <see cref="StatusCode"/> 0 marks a request in progress.
/// </summary>
public sealed class IdempotencyRecord
{
    public required string TenantId { get; set; }
    public required string Key { get; set; }

    /// <summary>Method and path of the request the key was first used with.</summary>
    public required string Request { get; set; }

    /// <summary>
    /// SHA-256 (hex) of a JSON body, or an upload's fingerprint (its file's SHA-256, file name and fields, whatever multipart
    /// boundary the client drew); null while the request is in progress.
    /// </summary>
    public string? BodySha256 { get; set; }

    public int StatusCode { get; set; }
    public string? ContentType { get; set; }
    public string? Location { get; set; }
    public byte[] Body { get; set; } = [];
    public DateTimeOffset CreatedAt { get; set; }
}
