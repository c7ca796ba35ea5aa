namespace SurgeryService.Api.Security;

public static class SecurityHeaders
{
    /// <summary>
    /// Scripts and styles from this origin only, nothing framed, nothing embedded: Swagger UI and the Hangfire
    /// dashboard load their scripts from files (Swagger UI also needs inline styles and data: images); the SVG report
    /// and JSON answers need nothing.
    /// </summary>
    public const string ContentSecurityPolicy =
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; " +
        "object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

    /// <summary>Sets <c>X-Content-Type-Options</c>, <c>X-Frame-Options</c> and the CSP on every response, errors included.</summary>
    public static IApplicationBuilder UseSecurityHeaders(this IApplicationBuilder app) => app.Use((context, next) =>
    {
        context.Response.OnStarting(() =>
        {
            var headers = context.Response.Headers;
            headers.XContentTypeOptions = "nosniff";
            headers.XFrameOptions = "DENY";
            headers.ContentSecurityPolicy = ContentSecurityPolicy;
            return Task.CompletedTask;
        });
        return next(context);
    });
}
