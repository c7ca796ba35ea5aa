using System.Security.Cryptography;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using Npgsql;
using SurgeryService.Api.Tenants;
using SurgeryService.Api.Uploads;
using SurgeryService.Domain;
using SurgeryService.Infrastructure.Persistence;

namespace SurgeryService.Api.Idempotency;

/// <summary>
/// Honours <c>Idempotency-Key</c> on the POSTs that create something (models, datasets, jobs) for
/// <see cref="ApiOptions.IdempotencyHours"/>: the first request's answer is stored in PostgreSQL and a retry with the same
/// key gets it again (with <c>Idempotent-Replayed: true</c>) instead of creating a second model or job. A key reused for
/// another request, or the same with another body (a JSON body by its SHA-256, an upload by its file's and fields'), is
/// a 422; a retry while the first is still running a 409. Only successes are kept: a refused or failed request created
/// nothing, so its key stays free for the corrected retry.
/// </summary>
public sealed class IdempotencyMiddleware(RequestDelegate next)
{
    public const string Header = "Idempotency-Key";
    private const int MaxKeyLength = 128;
    private static readonly string[] Paths = ["/api/models", "/api/datasets", "/api/jobs", "/api/jobs/sensitivity"];

    public async Task InvokeAsync(HttpContext http, SurgeryDbContext db, MultipartUpload uploads, IOptions<ApiOptions> options)
    {
        var key = http.Request.Headers[Header].ToString();
        var tenant = http.User.FindFirst(ApiKeyAuthenticationHandler.TenantClaim)?.Value;
        var path = http.Request.Path.Value?.TrimEnd('/') ?? "";
        if (key.Length == 0 || tenant is null || !HttpMethods.IsPost(http.Request.Method)
            || !Paths.Contains(path, StringComparer.OrdinalIgnoreCase))
        {
            await next(http);
            return;
        }
        if (StoredText.Problem(key, MaxKeyLength) is { } problem)
        {
            throw new SurgeryException("Bad Idempotency-Key", $"the {Header} header {problem}", ErrorKind.Malformed);
        }

        var request = $"POST {path.ToLowerInvariant()}";
        string? bodyHash = null;
        if (http.Request.HasJsonContentType())
        {
            http.Request.EnableBuffering(); // bounded by JsonBodyLimit; the endpoint reads the body again
            bodyHash = Convert.ToHexStringLower(await SHA256.HashDataAsync(http.Request.Body, http.RequestAborted));
            http.Request.Body.Position = 0;
        }

        var since = DateTimeOffset.UtcNow.AddHours(-options.Value.IdempotencyHours);
        // Expired keys of every tenant go, whoever's request sweeps.
        await db.IdempotencyRecords.IgnoreQueryFilters().Where(r => r.CreatedAt < since).ExecuteDeleteAsync(http.RequestAborted);
        var stored = await db.IdempotencyRecords.AsNoTracking().SingleOrDefaultAsync(r => r.Key == key, http.RequestAborted);
        if (stored is not null)
        {
            await ReplayAsync(http, stored, request, bodyHash, uploads);
            return;
        }

        var record = new IdempotencyRecord { TenantId = tenant, Key = key, Request = request, CreatedAt = DateTimeOffset.UtcNow };
        db.IdempotencyRecords.Add(record);
        try
        {
            await db.SaveChangesAsync(http.RequestAborted);
        }
        catch (DbUpdateException e) when (e.InnerException is PostgresException { SqlState: PostgresErrorCodes.UniqueViolation })
        {
            throw InProgress(); // the same key arrived twice at once
        }

        var original = http.Response.Body;
        using var captured = new MemoryStream();
        http.Response.Body = captured;
        try
        {
            await next(http);
        }
        catch
        {
            // A refusal thrown as an exception (answered by the exception handler further out) created nothing:
            // forget the key so the corrected request can use it.
            http.Response.Body = original;
            await ForgetAsync(db, key);
            throw;
        }
        http.Response.Body = original;
        // Only what created something is kept, as Stripe-style APIs do: a refusal (4xx) or failure (5xx) created nothing,
        // so a corrected retry under the same key must run rather than get the refusal again.
        if (http.Response.StatusCode is < 200 or >= 300)
        {
            await ForgetAsync(db, key);
        }
        else
        {
            // An upload is fingerprinted by the form reader as it streams the file into storage (see MultipartUpload).
            record.BodySha256 = bodyHash ?? MultipartUpload.FingerprintOf(http);
            record.StatusCode = http.Response.StatusCode;
            record.ContentType = http.Response.ContentType;
            record.Location = http.Response.Headers.Location.ToString() is { Length: > 0 } location ? location : null;
            record.Body = captured.ToArray();
            await db.SaveChangesAsync(CancellationToken.None);
        }
        captured.Position = 0;
        await captured.CopyToAsync(original, http.RequestAborted);
    }

    private static async Task ReplayAsync(HttpContext http, IdempotencyRecord stored, string request, string? bodyHash, MultipartUpload uploads)
    {
        if (stored.Request != request) throw Reused($"another request ({stored.Request})");
        if (stored.StatusCode == 0) throw InProgress();
        // An upload's form is read through once (its file hashed, not kept) to compare it with the first one's.
        bodyHash ??= await uploads.FingerprintAsync(http.Request, http.RequestAborted);
        if (stored.BodySha256 != bodyHash) throw Reused($"{stored.Request} with another body");
        http.Response.StatusCode = stored.StatusCode;
        if (stored.ContentType is not null) http.Response.ContentType = stored.ContentType;
        if (stored.Location is not null) http.Response.Headers.Location = stored.Location;
        http.Response.Headers["Idempotent-Replayed"] = "true";
        await http.Response.Body.WriteAsync(stored.Body, http.RequestAborted);
    }

    private static SurgeryException Reused(string what) => new("Idempotency-Key reused",
        $"this {Header} was used for {what} in the last hours: choose a new key for a new request", ErrorKind.BadInput);

    private static Task ForgetAsync(SurgeryDbContext db, string key) =>
        db.IdempotencyRecords.Where(r => r.Key == key).ExecuteDeleteAsync(CancellationToken.None);

    private static SurgeryException InProgress() => new("Request in progress",
        $"a request with this {Header} is still being processed: retry once it has finished", ErrorKind.Conflict);
}
