using System.Reflection;
using Microsoft.AspNetCore.Http.Metadata;
using Microsoft.AspNetCore.Mvc;

namespace SurgeryService.Api.OpenApi;

/// <summary>A status code as a type, for <see cref="StatusProblem{TStatus}"/>.</summary>
public interface IProblemStatus
{
    static abstract int Code { get; }
}

public sealed class PayloadTooLarge : IProblemStatus
{
    public static int Code => StatusCodes.Status413PayloadTooLarge;
}

public sealed class UnsupportedMediaType : IProblemStatus
{
    public static int Code => StatusCodes.Status415UnsupportedMediaType;
}

/// <summary>
/// A ProblemDetails answer with a status ASP.NET Core has no typed result for (413, 415): a <c>Results&lt;...&gt;</c>
/// union needs a type per status to list it in the OpenAPI document.
/// </summary>
public sealed class StatusProblem<TStatus>(ProblemDetails problem)
    : IResult, IEndpointMetadataProvider, IStatusCodeHttpResult, IValueHttpResult, IValueHttpResult<ProblemDetails>
    where TStatus : IProblemStatus
{
    public int? StatusCode => TStatus.Code;
    public ProblemDetails Value => problem;
    object? IValueHttpResult.Value => problem;

    public Task ExecuteAsync(HttpContext httpContext) => TypedResults.Problem(problem).ExecuteAsync(httpContext);

    public static void PopulateMetadata(MethodInfo method, EndpointBuilder builder) =>
        builder.Metadata.Add(new ProducesResponseTypeMetadata(TStatus.Code, typeof(ProblemDetails), ["application/problem+json"]));
}
