using System.Security.Claims;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;
using SurgeryService.Api.OpenApi;
using SurgeryService.Api.Tenants;
using SurgeryService.Api.Uploads;
using SurgeryService.Domain;
using SurgeryService.Domain.Artifacts;
using SurgeryService.Domain.Jobs;
using SurgeryService.Domain.Models;
using SurgeryService.Infrastructure.Artifacts;
using SurgeryService.Infrastructure.Persistence;

namespace SurgeryService.Api.Models;

public sealed record ModelLayerResponse(string Name, string Operator, long Parameters, bool Prunable);

public sealed record ModelResponse(
    Guid Id,
    string Name,
    string Format,
    string? Architecture,
    long Size,
    string Sha256,
    long[] InputShape,
    IReadOnlyList<string> Operators,
    IReadOnlyList<ModelLayerResponse> Layers,
    long ParameterCount,
    long PrunableParameterCount,
    DateTimeOffset CreatedAt)
{
    public static ModelResponse From(ModelEntry m) => new(
        m.Id, m.Name, m.Format == ModelFormat.Onnx ? "onnx" : "torchsharp", m.Architecture, m.Size, m.Sha256.Trim(),
        m.InputShape, m.Operators, m.Layers.Select(l => new ModelLayerResponse(l.Name, l.Operator, l.Parameters, l.Prunable)).ToList(),
        m.ParameterCount, m.Layers.Where(l => l.Prunable).Sum(l => l.Parameters), m.CreatedAt);
}

/// <summary>The multipart form of <c>POST /api/models</c> (documents the form in Swagger UI).</summary>
public sealed class ModelUploadForm
{
    /// <summary>The model: an ONNX file, or a TorchSharp weight file (Module.save) of a built-in architecture.</summary>
    public required IFormFile File { get; init; }

    /// <summary>For TorchSharp weights: lenet-300-100 or lenet-5. Leave empty for ONNX.</summary>
    public string? Architecture { get; init; }

    /// <summary>A name to list the model under; the file name by default.</summary>
    public string? Name { get; init; }
}

public static class ModelEndpoints
{
    public static RouteGroupBuilder MapModels(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/api/models").WithTags("Models").RequireAuthorization();
        group.MapPost("/", Upload).WithName("UploadModel")
            .WithSummary("Upload a model (ONNX, or TorchSharp weights with an architecture)")
            .AcceptsUpload<ModelUploadForm>()
            .WithMetadata(new OpenApiExample(new { file = "(binary)", architecture = "lenet-300-100", name = "lenet-300-100-dense" }));
        group.MapGet("/", List).WithName("ListModels").WithSummary("The tenant's models, newest first");
        group.MapGet("/{id:guid}", Get).WithName("GetModel").WithSummary("One model with its layers");
        group.MapDelete("/{id:guid}", Delete).WithName("DeleteModel").WithSummary("Delete a model no queued or running job uses")
            .ProducesProblem(StatusCodes.Status409Conflict);
        return group;
    }

    public static async Task<Created<ModelResponse>> Upload(
        HttpRequest request, ClaimsPrincipal user, MultipartUpload uploads, ArtifactStore artifacts, SurgeryDbContext db,
        CancellationToken cancellationToken)
    {
        var tenant = user.TenantId();
        var upload = await uploads.ReadAsync(request, tenant, ArtifactKind.ModelUpload, cancellationToken);
        try
        {
            var architecture = upload.Field("architecture")?.ToLowerInvariant();
            var bytes = await artifacts.ReadAllBytesAsync(upload.File.Id, cancellationToken);
            var inspection = ModelFormats.Inspect(bytes, architecture);
            var model = new ModelEntry
            {
                Id = Guid.CreateVersion7(),
                TenantId = tenant,
                Name = upload.Field("name") ?? upload.File.FileName,
                Format = inspection.Format,
                Architecture = inspection.Architecture,
                ArtifactId = upload.File.Id,
                Size = upload.File.Size,
                Sha256 = upload.File.Sha256,
                InputShape = inspection.InputShape,
                Operators = inspection.Operators.ToList(),
                Layers = inspection.Layers.ToList(),
                ParameterCount = inspection.ParameterCount,
                CreatedAt = DateTimeOffset.UtcNow,
            };
            db.Models.Add(model);
            await db.SaveChangesAsync(cancellationToken);
            return TypedResults.Created($"/api/models/{model.Id}", ModelResponse.From(model));
        }
        catch
        {
            await artifacts.DeleteAsync(upload.File.Id, CancellationToken.None);
            throw;
        }
    }

    public static async Task<Ok<List<ModelResponse>>> List(ClaimsPrincipal user, SurgeryDbContext db, CancellationToken cancellationToken)
    {
        var tenant = user.TenantId();
        var models = await db.Models.AsNoTracking().Where(m => m.TenantId == tenant)
            .OrderByDescending(m => m.CreatedAt).ToListAsync(cancellationToken);
        return TypedResults.Ok(models.Select(ModelResponse.From).ToList());
    }

    public static async Task<Results<Ok<ModelResponse>, NotFound<Microsoft.AspNetCore.Mvc.ProblemDetails>>> Get(
        Guid id, ClaimsPrincipal user, SurgeryDbContext db, CancellationToken cancellationToken)
    {
        var tenant = user.TenantId();
        var model = await db.Models.AsNoTracking().SingleOrDefaultAsync(m => m.Id == id && m.TenantId == tenant, cancellationToken);
        return model is null ? NotFoundProblem.For("model", id) : TypedResults.Ok(ModelResponse.From(model));
    }

    public static async Task<Results<NoContent, NotFound<Microsoft.AspNetCore.Mvc.ProblemDetails>>> Delete(
        Guid id, ClaimsPrincipal user, SurgeryDbContext db, ArtifactStore artifacts, CancellationToken cancellationToken)
    {
        var tenant = user.TenantId();
        var model = await db.Models.SingleOrDefaultAsync(m => m.Id == id && m.TenantId == tenant, cancellationToken);
        if (model is null) return NotFoundProblem.For("model", id);
        var active = await db.Jobs.Where(j => j.ModelId == id && (j.State == JobState.Queued || j.State == JobState.Running))
            .Select(j => j.Id).ToListAsync(cancellationToken);
        if (active.Count > 0)
        {
            throw new SurgeryException("Model in use",
                $"jobs {string.Join(", ", active)} still use this model: cancel them or wait until they finish", ErrorKind.Conflict);
        }
        db.Models.Remove(model);
        await db.SaveChangesAsync(cancellationToken);
        await artifacts.DeleteAsync(model.ArtifactId, cancellationToken);
        return TypedResults.NoContent();
    }
}
