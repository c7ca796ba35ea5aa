using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;
using Microsoft.Extensions.Options;
using SurgeryService.Api.OpenApi;
using SurgeryService.Api.Uploads;
using SurgeryService.Domain.Artifacts;
using SurgeryService.Domain.Datasets;
using SurgeryService.Infrastructure.Datasets;

namespace SurgeryService.Api.Datasets;

public sealed record DatasetResponse(
    Guid Id,
    string Name,
    string Format,
    bool BuiltIn,
    long Size,
    string Sha256,
    long[] SampleShape,
    string InputType,
    int ClassCount,
    long TrainCount,
    long TestCount,
    DateTimeOffset CreatedAt)
{
    /// <summary>
    /// Samples of the dataset's own validation split (<c>x_val</c>/<c>y_val</c>, or <c>val-*</c> IDX files); 0 when it has
    /// none. Jobs validate on it when present, instead of holding samples out of the training split.
    /// </summary>
    public long ValidationCount { get; init; }

    public static DatasetResponse From(DatasetEntry d) => new(
        d.Id, d.Name, d.Format == DatasetFormat.Npz ? "npz" : "idx", d.BuiltIn, d.Size, d.Sha256.Trim(), d.SampleShape,
        d.InputType, d.ClassCount, d.TrainCount, d.TestCount, d.CreatedAt) { ValidationCount = d.ValidationCount };
}

/// <summary>The multipart form of <c>POST /api/datasets</c>.</summary>
public sealed class DatasetUploadForm
{
    /// <summary>
    /// A zip of the four IDX files (train-images, train-labels, t10k-images, t10k-labels), or an .npz with x_train, y_train,
    /// x_test, y_test; either may add a validation split (val-images and val-labels, or x_val and y_val).
    /// </summary>
    public required IFormFile File { get; init; }

    /// <summary>A name to list the dataset under; the file name by default.</summary>
    public string? Name { get; init; }
}

public static class DatasetEndpoints
{
    public static RouteGroupBuilder MapDatasets(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/api/datasets").WithTags("Datasets").RequireAuthorization();
        group.MapPost("/", Upload).WithName("UploadDataset")
            .WithSummary("Upload a dataset (zip of IDX files, or .npz)")
            .AcceptsUpload<DatasetUploadForm>()
            .WithMetadata(new OpenApiExample(new { file = "(binary)", name = "mnist-small" }));
        group.MapGet("/", List).WithName("ListDatasets")
            .WithSummary("The built-in datasets, then the tenant's, newest first, a page at a time");
        group.MapGet("/{id:guid}", Get).WithName("GetDataset").WithSummary("One dataset");
        group.MapDelete("/{id:guid}", Delete).WithName("DeleteDataset").WithSummary("Delete a dataset no queued or running job uses");
        return group;
    }

    public static Task<Results<Created<DatasetResponse>, BadRequest<ProblemDetails>, StatusProblem<PayloadTooLarge>, StatusProblem<UnsupportedMediaType>,
        UnprocessableEntity<ProblemDetails>>> Upload(HttpRequest request, MultipartUpload uploads, UploadDataset useCase,
        IOptions<DatasetOptions> options, CancellationToken cancellationToken) =>
        uploads.UploadAsync(request, ArtifactKind.DatasetUpload, "/api/datasets", async upload =>
        {
            var dataset = await useCase.ExecuteAsync(upload.File, upload.Field("name"), options.Value.MaxDataBytes, cancellationToken);
            return (dataset.Id, DatasetResponse.From(dataset));
        }, cancellationToken);

    /// <summary>The built-in datasets, then the tenant's, newest first.</summary>
    /// <param name="page">The page to answer, from 1 (default 1).</param>
    /// <param name="pageSize">Datasets per page, 1 to 200 (default 20).</param>
    public static async Task<Results<Ok<ListPage<DatasetResponse>>, ValidationProblem>> List(
        DatasetQueries datasets, int page = 1, int pageSize = Paging.DefaultPageSize, CancellationToken cancellationToken = default)
    {
        if (Paging.Errors(page, pageSize) is { Count: > 0 } errors) return TypedResults.ValidationProblem(errors);
        return Paging.Ok(await datasets.ListAsync(Paging.Skip(page, pageSize), pageSize, cancellationToken), DatasetResponse.From, page, pageSize);
    }

    public static async Task<Results<Ok<DatasetResponse>, NotFound<ProblemDetails>>> Get(
        Guid id, DatasetQueries datasets, CancellationToken cancellationToken) =>
        await datasets.FindAsync(id, cancellationToken) is { } dataset
            ? TypedResults.Ok(DatasetResponse.From(dataset))
            : NotFoundProblem.For("dataset", id);

    public static async Task<Results<NoContent, NotFound<ProblemDetails>, Conflict<ProblemDetails>>> Delete(
        Guid id, DeleteDataset useCase, CancellationToken cancellationToken) =>
        Problems.ForDeletion(await useCase.ExecuteAsync(id, cancellationToken), "dataset", id);
}
