using SurgeryService.Domain.Artifacts;
using SurgeryService.Domain.Models;
using SurgeryService.Domain.Torch;
using SurgeryService.Infrastructure.Artifacts;
using SurgeryService.Infrastructure.Persistence;
using SurgeryService.Infrastructure.Tenants;

namespace SurgeryService.Infrastructure.Models;

/// <summary>Registers an uploaded file as the tenant's model: inspects it (format, layers, input shape) and saves the row.</summary>
public sealed class UploadModel(SurgeryDbContext db, ArtifactStore artifacts, ModelInspectionGate gate, ITenantAccessor tenant)
{
    /// <summary>Files from this size on (64 MiB) are followed by a collection and a native heap trim.</summary>
    private const long ReleaseAfterBytes = 64L << 20;

    /// <summary>
    /// The model stored in <paramref name="file"/>, listed under <paramref name="name"/> (the file name by default). A file
    /// that is not a model the service can prune throws a <see cref="Domain.SurgeryException"/>, and is deleted.
    /// <paramref name="classes"/> is the form's text: for TorchSharp weights, the class count the file must hold.
    /// </summary>
    public Task<ModelEntry> ExecuteAsync(Artifact file, string? name, string? architecture, string? classes,
        CancellationToken cancellationToken) =>
        artifacts.RegisterOrDeleteAsync(file.Id, async () =>
        {
            ModelInspection inspection;
            using (await gate.EnterAsync(cancellationToken))
            {
                var classCount = ModelFormats.ParseClassCount(classes);
                // An ONNX graph is read from the stream without its large weights, whose chunks are never fetched.
                await using var content = await artifacts.OpenReadAsync(file.Id, cancellationToken);
                inspection = ModelFormats.Inspect(content, architecture?.ToLowerInvariant(), classCount);
            }
            // TorchSharp weights are read whole, and an ONNX graph's chunks pass through the large object heap: give a
            // large file's memory back to the machine now rather than keep the Api at its peak until the GC next needs it.
            if (file.Size >= ReleaseAfterBytes) ProcessMemory.Release();
            var model = new ModelEntry
            {
                Id = Guid.CreateVersion7(),
                TenantId = tenant.RequiredTenantId,
                Name = name ?? file.FileName,
                Format = inspection.Format,
                Architecture = inspection.Architecture,
                ArtifactId = file.Id,
                Size = file.Size,
                Sha256 = file.Sha256,
                InputShape = inspection.InputShape,
                ClassCount = inspection.ClassCount,
                Operators = inspection.Operators.ToList(),
                Layers = inspection.Layers.ToList(),
                ParameterCount = inspection.ParameterCount,
                ActivationBytesPerSample = inspection.ActivationBytesPerSample,
                CreatedAt = DateTimeOffset.UtcNow,
            };
            db.Models.Add(model);
            await db.SaveChangesAsync(cancellationToken);
            return model;
        });
}
