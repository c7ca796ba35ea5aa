using System.Security.Claims;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;
using Microsoft.EntityFrameworkCore;
using SurgeryService.Api.OpenApi;
using SurgeryService.Api.Tenants;
using SurgeryService.Api.Uploads;
using SurgeryService.Domain;
using SurgeryService.Domain.Artifacts;
using SurgeryService.Domain.Datasets;
using SurgeryService.Domain.Jobs;
using SurgeryService.Infrastructure.Artifacts;
using SurgeryService.Infrastructure.Persistence;

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
    public static DatasetResponse From(DatasetEntry d) => new(
        d.Id, d.Name, d.Format == DatasetFormat.Npz ? "npz" : "idx", d.BuiltIn, d.Size, d.Sha256.Trim(), d.SampleShape,
        d.InputType, d.ClassCount, d.TrainCount, d.TestCount, d.CreatedAt);
}

/// <summary>The multipart form of <c>POST /api/datasets</c>.</summary>
public sealed class DatasetUploadForm
{
    /// <summary>A zip of the four IDX files (train-images, train-labels, t10k-images, t10k-labels), or an .npz with x_train, y_train, x_test, y_test.</summary>
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
        group.MapGet("/", List).WithName("ListDatasets").WithSummary("The tenant's datasets and the built-in ones");
        group.MapGet("/{id:guid}", Get).WithName("GetDataset").WithSummary("One dataset");
        group.MapDelete("/{id:guid}", Delete).WithName("DeleteDataset").WithSummary("Delete a dataset no queued or running job uses")
            .ProducesProblem(StatusCodes.Status409Conflict);
        return group;
    }

    public static async Task<Created<DatasetResponse>> Upload(
        HttpRequest request, ClaimsPrincipal user, MultipartUpload uploads, ArtifactStore artifacts, SurgeryDbContext db,
        CancellationToken cancellationToken)
    {
        var tenant = user.TenantId();
        var upload = await uploads.ReadAsync(request, tenant, ArtifactKind.DatasetUpload, cancellationToken);
        try
        {
            DatasetSummary summary;
            await using (var content = await artifacts.OpenReadAsync(upload.File.Id, cancellationToken))
            {
                summary = DatasetArchive.Inspect(content);
            }
            var dataset = Entry(summary, upload.Field("name") ?? upload.File.FileName, tenant, upload.File);
            db.Datasets.Add(dataset);
            await db.SaveChangesAsync(cancellationToken);
            return TypedResults.Created($"/api/datasets/{dataset.Id}", DatasetResponse.From(dataset));
        }
        catch
        {
            await artifacts.DeleteAsync(upload.File.Id, CancellationToken.None);
            throw;
        }
    }

    public static DatasetEntry Entry(DatasetSummary summary, string name, string? tenant, Artifact file) => new()
    {
        Id = Guid.CreateVersion7(),
        TenantId = tenant,
        Name = name,
        Format = summary.Format,
        BuiltIn = tenant is null,
        ArtifactId = file.Id,
        Size = file.Size,
        Sha256 = file.Sha256,
        SampleShape = summary.SampleShape,
        InputType = summary.InputType,
        ClassCount = summary.ClassCount,
        TrainCount = summary.TrainCount,
        TestCount = summary.TestCount,
        CreatedAt = DateTimeOffset.UtcNow,
    };

    public static async Task<Ok<List<DatasetResponse>>> List(ClaimsPrincipal user, SurgeryDbContext db, CancellationToken cancellationToken)
    {
        var tenant = user.TenantId();
        var datasets = await db.Datasets.AsNoTracking().Where(d => d.TenantId == tenant || d.BuiltIn)
            .OrderByDescending(d => d.BuiltIn).ThenByDescending(d => d.CreatedAt).ToListAsync(cancellationToken);
        return TypedResults.Ok(datasets.Select(DatasetResponse.From).ToList());
    }

    public static async Task<Results<Ok<DatasetResponse>, NotFound<ProblemDetails>>> Get(
        Guid id, ClaimsPrincipal user, SurgeryDbContext db, CancellationToken cancellationToken)
    {
        var tenant = user.TenantId();
        var dataset = await db.Datasets.AsNoTracking()
            .SingleOrDefaultAsync(d => d.Id == id && (d.TenantId == tenant || d.BuiltIn), cancellationToken);
        return dataset is null ? NotFoundProblem.For("dataset", id) : TypedResults.Ok(DatasetResponse.From(dataset));
    }

    public static async Task<Results<NoContent, NotFound<ProblemDetails>>> Delete(
        Guid id, ClaimsPrincipal user, SurgeryDbContext db, ArtifactStore artifacts, CancellationToken cancellationToken)
    {
        var tenant = user.TenantId();
        var dataset = await db.Datasets.SingleOrDefaultAsync(d => d.Id == id && (d.TenantId == tenant || d.BuiltIn), cancellationToken);
        if (dataset is null) return NotFoundProblem.For("dataset", id);
        if (dataset.BuiltIn)
        {
            throw new SurgeryException("Built-in dataset", $"'{dataset.Name}' is built in and cannot be deleted", ErrorKind.Conflict);
        }
        var active = await db.Jobs.Where(j => j.DatasetId == id && (j.State == JobState.Queued || j.State == JobState.Running))
            .Select(j => j.Id).ToListAsync(cancellationToken);
        if (active.Count > 0)
        {
            throw new SurgeryException("Dataset in use",
                $"jobs {string.Join(", ", active)} still use this dataset: cancel them or wait until they finish", ErrorKind.Conflict);
        }
        db.Datasets.Remove(dataset);
        await db.SaveChangesAsync(cancellationToken);
        await artifacts.DeleteAsync(dataset.ArtifactId, cancellationToken);
        return TypedResults.NoContent();
    }
}
