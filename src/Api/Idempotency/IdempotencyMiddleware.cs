using System.Security.Cryptography;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using Npgsql;
using SurgeryService.Api.Tenants;
using SurgeryService.Domain;
using SurgeryService.Infrastructure.Persistence;

namespace SurgeryService.Api.Idempotency;

/// <summary>
/// Honours <c>Idempotency-Key</c> on the POSTs that create something (models, datasets, jobs) for
/// <see cref="ApiOptions.IdempotencyHours"/>: the first request's answer is stored in PostgreSQL and a retry with the same
/// key gets it again (with <c>Idempotent-Replayed: true</c>) instead of creating a second model or job. A key reused for
/// another request is a 422, a retry while the first is still running a 409; a 5xx is not kept, so it can be retried.
/// </summary>
public sealed class IdempotencyMiddleware(RequestDelegate next)
{
    public const string Header = "Idempotency-Key";
    private const int MaxKeyLength = 128;
    private static readonly string[] Paths = ["/api/models", "/api/datasets", "/api/jobs", "/api/jobs/sensitivity"];

    public async Task InvokeAsync(HttpContext http, SurgeryDbContext db, IOptions<ApiOptions> options)
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
            http.Request.EnableBuffering(); // job requests are small; the endpoint reads the body again
            bodyHash = Convert.ToHexStringLower(await SHA256.HashDataAsync(http.Request.Body, http.RequestAborted));
            http.Request.Body.Position = 0;
        }

        var since = DateTimeOffset.UtcNow.AddHours(-options.Value.IdempotencyHours);
        // Expired keys of every tenant go, whoever's request sweeps.
        await db.IdempotencyRecords.IgnoreQueryFilters().Where(r => r.CreatedAt < since).ExecuteDeleteAsync(http.RequestAborted);
        var stored = await db.IdempotencyRecords.AsNoTracking().SingleOrDefaultAsync(r => r.Key == key, http.RequestAborted);
        if (stored is not null)
        {
            await ReplayAsync(http, stored, request, bodyHash);
            return;
        }

        var record = new IdempotencyRecord
        {
            TenantId = tenant, Key = key, Request = request, BodySha256 = bodyHash, CreatedAt = DateTimeOffset.UtcNow,
        };
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
        // An upload's body is not hashed, so a refused upload (which created nothing) must not answer the corrected one.
        if (http.Response.StatusCode >= 500 || (http.Response.StatusCode >= 400 && bodyHash is null))
        {
            await ForgetAsync(db, key);
        }
        else
        {
            record.StatusCode = http.Response.StatusCode;
            record.ContentType = http.Response.ContentType;
            record.Location = http.Response.Headers.Location.ToString() is { Length: > 0 } location ? location : null;
            record.Body = captured.ToArray();
            await db.SaveChangesAsync(CancellationToken.None);
        }
        captured.Position = 0;
        await captured.CopyToAsync(original, http.RequestAborted);
    }

    private static async Task ReplayAsync(HttpContext http, IdempotencyRecord stored, string request, string? bodyHash)
    {
        if (stored.Request != request || stored.BodySha256 != bodyHash)
        {
            throw new SurgeryException("Idempotency-Key reused",
                $"this {Header} was used for another request ({stored.Request}{(stored.Request == request ? " with another body" : "")}) " +
                "in the last hours: choose a new key for a new request", ErrorKind.BadInput);
        }
        if (stored.StatusCode == 0) throw InProgress();
        http.Response.StatusCode = stored.StatusCode;
        if (stored.ContentType is not null) http.Response.ContentType = stored.ContentType;
        if (stored.Location is not null) http.Response.Headers.Location = stored.Location;
        http.Response.Headers["Idempotent-Replayed"] = "true";
        await http.Response.Body.WriteAsync(stored.Body, http.RequestAborted);
    }

    private static Task ForgetAsync(SurgeryDbContext db, string key) =>
        db.IdempotencyRecords.Where(r => r.Key == key).ExecuteDeleteAsync(CancellationToken.None);

    private static SurgeryException InProgress() => new("Request in progress",
        $"a request with this {Header} is still being processed: retry once it has finished", ErrorKind.Conflict);
}
