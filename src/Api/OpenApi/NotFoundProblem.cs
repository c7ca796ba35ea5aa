using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;

namespace SurgeryService.Api.OpenApi;

public static class NotFoundProblem
{
    /// <summary>404 for an id that does not exist or belongs to another tenant: the two are indistinguishable on purpose.</summary>
    public static NotFound<ProblemDetails> For(string what, Guid id) => TypedResults.NotFound(new ProblemDetails
    {
        Status = StatusCodes.Status404NotFound,
        Title = $"No such {what}",
        Detail = $"there is no {what} with id {id}",
        Type = "https://tools.ietf.org/html/rfc9110#section-15.5.5",
    });
}
