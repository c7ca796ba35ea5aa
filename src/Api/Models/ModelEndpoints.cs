using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;
using SurgeryService.Api.OpenApi;
using SurgeryService.Api.Uploads;
using SurgeryService.Domain.Artifacts;
using SurgeryService.Domain.Models;
using SurgeryService.Infrastructure.Models;

namespace SurgeryService.Api.Models;

public sealed record ModelLayerResponse(string Name, string Operator, long Parameters, bool Prunable);

/// <summary>An uploaded model as the service read it.</summary>
/// <param name="Id">The model's id, for jobs' <c>modelId</c>.</param>
/// <param name="Name">The name it is listed under.</param>
/// <param name="Format"><c>onnx</c> or <c>torchsharp</c>.</param>
/// <param name="Architecture">The built-in architecture of TorchSharp weights; null for ONNX.</param>
/// <param name="Size">The file's size in bytes.</param>
/// <param name="Sha256">Lower-case hex SHA-256 of the file.</param>
/// <param name="InputShape">The shape of one input sample, without the batch dimension; -1 where the model leaves it open.</param>
/// <param name="Operators">The operator types the model uses.</param>
/// <param name="Layers">Every layer that holds parameters, and whether the engine prunes it.</param>
/// <param name="ParameterCount">Parameters of all layers.</param>
/// <param name="PrunableParameterCount">Parameters of the prunable layers.</param>
/// <param name="CreatedAt">When it was uploaded.</param>
/// <param name="ClassCount">
/// The classes the model scores: the size of its output [batch, classes]; null when an ONNX graph does not declare it.
/// A job's dataset labels must lie in 0 to classCount - 1.
/// </param>
public sealed record ModelResponse(
    Guid Id,
    string Name,
    string Format,
    string? Architecture,
    long Size,
    string Sha256,
    long[] InputShape,
    int? ClassCount,
    IReadOnlyList<string> Operators,
    IReadOnlyList<ModelLayerResponse> Layers,
    long ParameterCount,
    long PrunableParameterCount,
    DateTimeOffset CreatedAt)
{
    public static ModelResponse From(ModelEntry m) => new(
        m.Id, m.Name, m.Format == ModelFormat.Onnx ? "onnx" : "torchsharp", m.Architecture, m.Size, m.Sha256.Trim(),
        m.InputShape, m.ClassCount, m.Operators, m.Layers.Select(l => new ModelLayerResponse(l.Name, l.Operator, l.Parameters, l.Prunable)).ToList(),
        m.ParameterCount, m.Layers.Where(l => l.Prunable).Sum(l => l.Parameters), m.CreatedAt);
}

/// <summary>The multipart form of <c>POST /api/models</c> (documents the form in Swagger UI).</summary>
public sealed class ModelUploadForm
{
    /// <summary>
    /// The model: an ONNX file with one input, FLOAT (images, features) or INT64/INT32 (token ids, read from the data
    /// set's samples), or a TorchSharp weight file (Module.save) of a built-in architecture. Convolutions, matrix
    /// products (Gemm, MatMul), and LSTM/GRU/RNN weights gate by gate are prunable; embedding tables (Gather) with
    /// <c>settings.pruneEmbeddings</c>.
    /// </summary>
    public required IFormFile File { get; init; }

    /// <summary>
    /// For TorchSharp weights: lenet-300-100, lenet-5, or one of TorchSharp's TorchVision classifiers (resnet18, resnet34,
    /// resnet50, mobilenet_v2, vgg11, vgg11_bn, vgg16, vgg16_bn, alexnet). Leave empty for ONNX.
    /// </summary>
    public string? Architecture { get; init; }

    /// <summary>
    /// For TorchSharp weights of a TorchVision classifier: the class count the file must hold. By default, the one its
    /// classifier weight holds (the first dimension of fc.weight or classifier.*.weight).
    /// </summary>
    public int? Classes { get; init; }

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
        group.MapGet("/", List).WithName("ListModels").WithSummary("The tenant's models, newest first, a page at a time");
        group.MapGet("/{id:guid}", Get).WithName("GetModel").WithSummary("One model with its layers");
        group.MapDelete("/{id:guid}", Delete).WithName("DeleteModel").WithSummary("Delete a model no queued or running job uses");
        return group;
    }

    public static Task<Results<Created<ModelResponse>, BadRequest<ProblemDetails>, StatusProblem<PayloadTooLarge>, StatusProblem<UnsupportedMediaType>,
        UnprocessableEntity<ProblemDetails>>> Upload(HttpRequest request, MultipartUpload uploads, UploadModel useCase,
        CancellationToken cancellationToken) =>
        uploads.UploadAsync(request, ArtifactKind.ModelUpload, "/api/models", async upload =>
        {
            var model = await useCase.ExecuteAsync(upload.File, upload.Field("name"), upload.Field("architecture"),
                upload.Field("classes"), cancellationToken);
            return (model.Id, ModelResponse.From(model));
        }, cancellationToken);

    /// <summary>The tenant's models, newest first.</summary>
    /// <param name="page">The page to answer, from 1 (default 1).</param>
    /// <param name="pageSize">Models per page, 1 to 200 (default 20).</param>
    public static async Task<Results<Ok<ListPage<ModelResponse>>, ValidationProblem>> List(
        ModelQueries models, int page = 1, int pageSize = Paging.DefaultPageSize, CancellationToken cancellationToken = default)
    {
        if (Paging.Errors(page, pageSize) is { Count: > 0 } errors) return TypedResults.ValidationProblem(errors);
        return Paging.Ok(await models.ListAsync(Paging.Skip(page, pageSize), pageSize, cancellationToken), ModelResponse.From, page, pageSize);
    }

    public static async Task<Results<Ok<ModelResponse>, NotFound<ProblemDetails>>> Get(
        Guid id, ModelQueries models, CancellationToken cancellationToken) =>
        await models.FindAsync(id, cancellationToken) is { } model ? TypedResults.Ok(ModelResponse.From(model)) : NotFoundProblem.For("model", id);

    public static async Task<Results<NoContent, NotFound<ProblemDetails>, Conflict<ProblemDetails>>> Delete(
        Guid id, DeleteModel useCase, CancellationToken cancellationToken) =>
        Problems.ForDeletion(await useCase.ExecuteAsync(id, cancellationToken), "model", id);
}
