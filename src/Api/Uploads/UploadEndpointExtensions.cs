using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;
using SurgeryService.Api.Errors;
using SurgeryService.Api.OpenApi;
using SurgeryService.Domain;
using SurgeryService.Domain.Artifacts;

namespace SurgeryService.Api.Uploads;

public static class UploadEndpointExtensions
{
    /// <summary>A multipart upload endpoint: the form it accepts (its statuses come from the handler's union).</summary>
    public static RouteHandlerBuilder AcceptsUpload<TForm>(this RouteHandlerBuilder endpoint) where TForm : notnull =>
        endpoint.Accepts<TForm>("multipart/form-data").DisableAntiforgery();

    /// <summary>
    /// Reads the form into an artifact and lets <paramref name="register"/> turn it into a row (its id and response).
    /// A refusal of the form (400, 413, 415) or of the file's content (413, 422) is answered as a ProblemDetails.
    /// </summary>
    public static async Task<Results<Created<TResponse>, BadRequest<ProblemDetails>, StatusProblem<PayloadTooLarge>, StatusProblem<UnsupportedMediaType>,
        UnprocessableEntity<ProblemDetails>>> UploadAsync<TResponse>(this MultipartUpload uploads, HttpRequest request, ArtifactKind kind,
        string collection, Func<Upload, Task<(Guid Id, TResponse Response)>> register, CancellationToken cancellationToken)
    {
        try
        {
            var upload = await uploads.ReadAsync(request, kind, cancellationToken);
            var (id, response) = await register(upload);
            return TypedResults.Created($"{collection}/{id}", response);
        }
        catch (SurgeryException refused) when (refused.Kind is not (ErrorKind.NotFound or ErrorKind.Conflict))
        {
            var status = DomainExceptionHandler.StatusOf(refused);
            var problem = new ProblemDetails { Status = status, Title = refused.Title, Detail = refused.Message };
            return status switch
            {
                StatusCodes.Status400BadRequest => TypedResults.BadRequest(problem),
                StatusCodes.Status413PayloadTooLarge => new StatusProblem<PayloadTooLarge>(problem),
                StatusCodes.Status415UnsupportedMediaType => new StatusProblem<UnsupportedMediaType>(problem),
                _ => TypedResults.UnprocessableEntity(problem),
            };
        }
    }
}
