using System.Reflection;
using Microsoft.AspNetCore.Http.Metadata;
using Microsoft.AspNetCore.Mvc;

namespace SurgeryService.Api.OpenApi;

/// <summary>413 with a ProblemDetails body; ASP.NET Core has no typed result for it, and a union needs one to list it.</summary>
public sealed class PayloadTooLargeProblem(ProblemDetails problem) : IResult, IEndpointMetadataProvider, IStatusCodeHttpResult, IValueHttpResult, IValueHttpResult<ProblemDetails>
{
    public int? StatusCode => StatusCodes.Status413PayloadTooLarge;
    public ProblemDetails Value => problem;
    object? IValueHttpResult.Value => problem;

    public Task ExecuteAsync(HttpContext httpContext) => TypedResults.Problem(problem).ExecuteAsync(httpContext);

    public static void PopulateMetadata(MethodInfo method, EndpointBuilder builder) =>
        builder.Metadata.Add(new ProducesResponseTypeMetadata(StatusCodes.Status413PayloadTooLarge, typeof(ProblemDetails), ["application/problem+json"]));
}

/// <summary>415 with a ProblemDetails body (see <see cref="PayloadTooLargeProblem"/>).</summary>
public sealed class UnsupportedMediaTypeProblem(ProblemDetails problem) : IResult, IEndpointMetadataProvider, IStatusCodeHttpResult, IValueHttpResult, IValueHttpResult<ProblemDetails>
{
    public int? StatusCode => StatusCodes.Status415UnsupportedMediaType;
    public ProblemDetails Value => problem;
    object? IValueHttpResult.Value => problem;

    public Task ExecuteAsync(HttpContext httpContext) => TypedResults.Problem(problem).ExecuteAsync(httpContext);

    public static void PopulateMetadata(MethodInfo method, EndpointBuilder builder) =>
        builder.Metadata.Add(new ProducesResponseTypeMetadata(StatusCodes.Status415UnsupportedMediaType, typeof(ProblemDetails), ["application/problem+json"]));
}
