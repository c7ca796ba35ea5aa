using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;
using SurgeryService.Infrastructure.Jobs;

namespace SurgeryService.Api.OpenApi;

/// <summary>ProblemDetails results that endpoints return (and so list in their <c>Results&lt;...&gt;</c>) for expected refusals.</summary>
public static class Problems
{
    /// <summary>409: the request contradicts the resource's current state.</summary>
    public static Conflict<ProblemDetails> Conflict(string title, string detail) => TypedResults.Conflict(new ProblemDetails
    {
        Status = StatusCodes.Status409Conflict,
        Title = title,
        Detail = detail,
        Type = "https://tools.ietf.org/html/rfc9110#section-15.5.10",
    });

    /// <summary>422: the request is well-formed but asks for something this resource cannot give.</summary>
    public static UnprocessableEntity<ProblemDetails> Unprocessable(string title, string detail) => TypedResults.UnprocessableEntity(new ProblemDetails
    {
        Status = StatusCodes.Status422UnprocessableEntity,
        Title = title,
        Detail = detail,
        Type = "https://tools.ietf.org/html/rfc9110#section-15.5.21",
    });

    /// <summary>The answer to deleting a model or dataset: 204, 404, or 409 with the reason it stays.</summary>
    public static Results<NoContent, NotFound<ProblemDetails>, Conflict<ProblemDetails>> ForDeletion(Deletion outcome, string what, Guid id) =>
        outcome switch
        {
            Deletion.Deleted => TypedResults.NoContent(),
            Deletion.Refused refused => Conflict(refused.Title, refused.Detail),
            _ => NotFoundProblem.For(what, id),
        };
}
