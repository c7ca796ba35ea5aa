using System.Text.Json;
using Microsoft.AspNetCore.Diagnostics;
using SurgeryService.Api.Uploads;
using SurgeryService.Domain;
using SurgeryService.Domain.Surgery;

namespace SurgeryService.Api.Errors;

/// <summary>
/// Maps the domain's exceptions, and requests the framework could not read (bad JSON, a body over the size limit), to
/// RFC 7807 ProblemDetails, and a database that does not answer to a 503 with Retry-After; anything else is a 500 without
/// details.
/// </summary>
public sealed class DomainExceptionHandler(IProblemDetailsService problemDetails) : IExceptionHandler
{
    public async ValueTask<bool> TryHandleAsync(HttpContext context, Exception exception, CancellationToken cancellationToken)
    {
        var (status, title, detail, errors) = exception switch
        {
            SurgerySettingsException settings => (StatusOf(settings), settings.Title, settings.Message,
                settings.Errors.ToDictionary(e => "settings." + e.Key, e => new[] { e.Value })),
            SurgeryException domain => (StatusOf(domain), domain.Title, domain.Message, null),
            BadHttpRequestException { InnerException: JsonException { Path: { } path } json } bad
                when json.Message.Contains("could not be mapped", StringComparison.Ordinal) =>
                (bad.StatusCode, "Unknown member", $"the body has the member '{path.TrimStart('$', '.')}', which this request does not have (misspelled?)",
                    new Dictionary<string, string[]> { [path.TrimStart('$', '.')] = ["is not a member of this request"] }),
            BadHttpRequestException { InnerException: JsonException json } bad => MalformedBody(bad.StatusCode, json),
            BadHttpRequestException bad when RequestTerms.OfBinding(bad.Message) is (var parameter, var unbound) =>
                (bad.StatusCode, "Bad request", parameter is null ? unbound : $"'{parameter}' {unbound}",
                    parameter is null ? null : new Dictionary<string, string[]> { [parameter] = [unbound] }),
            BadHttpRequestException bad => (bad.StatusCode,
                bad.StatusCode == StatusCodes.Status413PayloadTooLarge ? "Upload too large" : "Bad request", bad.Message, null),
            _ when DatabaseUnavailable(exception) => (StatusCodes.Status503ServiceUnavailable, "Database unavailable",
                $"the database did not answer this request; try again in {RetryAfterSeconds} s", null),
            _ => (0, "", "", (Dictionary<string, string[]>?)null),
        };
        if (status == 0)
        {
            return false;
        }

        context.Response.StatusCode = status;
        if (status == StatusCodes.Status503ServiceUnavailable) context.Response.Headers.RetryAfter = RetryAfterSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
        var problem = new Microsoft.AspNetCore.Mvc.ProblemDetails { Status = status, Title = title, Detail = detail };
        if (errors is not null)
        {
            problem.Extensions["errors"] = errors;
        }
        return await problemDetails.TryWriteAsync(new ProblemDetailsContext
        {
            HttpContext = context,
            Exception = exception,
            ProblemDetails = problem,
        });
    }

    /// <summary>Seconds a client is asked to wait (Retry-After) when the database is down or restarting.</summary>
    public const int RetryAfterSeconds = 5;

    /// <summary>
    /// A database that is down, restarting or unreachable (Npgsql marks such failures transient, and EF's retrying
    /// strategy wraps them once it gives up): the service's state, not the request's, so a 503 to retry, never a 500.
    /// </summary>
    private static bool DatabaseUnavailable(Exception exception)
    {
        for (Exception? e = exception; e is not null; e = e.InnerException)
        {
            if (e is Npgsql.NpgsqlException { IsTransient: true }) return true;
        }
        return false;
    }

    private static (int, string, string, Dictionary<string, string[]>?) MalformedBody(int status, JsonException json)
    {
        var (member, problem) = RequestTerms.OfJson(json);
        return member.Length == 0
            ? (status, "Malformed request body", $"the body is not valid JSON for this request: {problem}", null)
            : (status, "Malformed request body", $"the body is not valid JSON for this request: '{member}' {problem}",
                new Dictionary<string, string[]> { [member] = [problem] });
    }

    /// <summary>The one place where the domain's error kinds become HTTP status codes.</summary>
    public static int StatusOf(SurgeryException exception) => exception switch
    {
        UnsupportedMediaTypeException => StatusCodes.Status415UnsupportedMediaType,
        _ => exception.Kind switch
        {
            ErrorKind.Malformed => StatusCodes.Status400BadRequest,
            ErrorKind.NotFound => StatusCodes.Status404NotFound,
            ErrorKind.Conflict => StatusCodes.Status409Conflict,
            ErrorKind.TooLarge => StatusCodes.Status413PayloadTooLarge,
            ErrorKind.BadInput or ErrorKind.Unsupported => StatusCodes.Status422UnprocessableEntity,
            _ => throw new ArgumentOutOfRangeException(nameof(exception), exception.Kind, "unknown error kind"),
        },
    };
}
