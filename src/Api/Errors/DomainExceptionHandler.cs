using Microsoft.AspNetCore.Diagnostics;
using SurgeryService.Domain;

namespace SurgeryService.Api.Errors;

/// <summary>Maps the domain's exceptions to RFC 7807 ProblemDetails; anything else is a 500 without details.</summary>
public sealed class DomainExceptionHandler(IProblemDetailsService problemDetails) : IExceptionHandler
{
    public async ValueTask<bool> TryHandleAsync(HttpContext context, Exception exception, CancellationToken cancellationToken)
    {
        if (exception is not SurgeryException domain)
        {
            return false;
        }

        context.Response.StatusCode = domain.StatusCode;
        return await problemDetails.TryWriteAsync(new ProblemDetailsContext
        {
            HttpContext = context,
            Exception = exception,
            ProblemDetails = { Status = domain.StatusCode, Title = domain.Title, Detail = domain.Message },
        });
    }
}
