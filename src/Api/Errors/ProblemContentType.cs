using Microsoft.Net.Http.Headers;

namespace SurgeryService.Api.Errors;

/// <summary>
/// Every error answer is <c>application/problem+json</c> (RFC 9457). The ProblemDetails that endpoints return as results
/// (<c>TypedResults.NotFound(problem)</c>, <c>Conflict</c>, <c>UnprocessableEntity</c>) are written as plain
/// <c>application/json</c> by the framework; this relabels them once for all endpoints, just before the headers go out.
/// Every JSON error body this Api writes is a ProblemDetails.
/// </summary>
public static class ProblemContentType
{
    public const string MediaType = "application/problem+json";

    public static IApplicationBuilder UseProblemContentType(this IApplicationBuilder app) => app.Use((context, next) =>
    {
        var response = context.Response;
        response.OnStarting(() =>
        {
            if (response.StatusCode >= 400 && MediaTypeHeaderValue.TryParse(response.ContentType, out var type)
                && type.MediaType.Equals("application/json", StringComparison.OrdinalIgnoreCase))
            {
                type.MediaType = MediaType;
                response.ContentType = type.ToString();
            }
            return Task.CompletedTask;
        });
        return next(context);
    });
}
