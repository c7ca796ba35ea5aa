using SurgeryService.Domain.Artifacts;
using SurgeryService.Domain.Datasets;
using SurgeryService.Infrastructure.Artifacts;
using SurgeryService.Infrastructure.Persistence;
using SurgeryService.Infrastructure.Tenants;

namespace SurgeryService.Infrastructure.Datasets;

/// <summary>Registers an uploaded file as the tenant's dataset: reads the archive's headers and saves the row.</summary>
public sealed class UploadDataset(SurgeryDbContext db, ArtifactStore artifacts, ITenantAccessor tenant)
{
    /// <summary>
    /// The dataset stored in <paramref name="file"/>, listed under <paramref name="name"/> (the file name by default). An
    /// archive that cannot be read, or whose arrays announce more than <paramref name="maxDataBytes"/>, throws a
    /// <see cref="Domain.SurgeryException"/>, and the file is deleted.
    /// </summary>
    public Task<DatasetEntry> ExecuteAsync(Artifact file, string? name, long maxDataBytes, CancellationToken cancellationToken) =>
        artifacts.RegisterOrDeleteAsync(file.Id, async () =>
        {
            DatasetSummary summary;
            await using (var content = await artifacts.OpenReadAsync(file.Id, cancellationToken))
            {
                summary = DatasetArchive.Inspect(content, maxDataBytes);
            }
            var dataset = Entry(summary, name ?? file.FileName, tenant.RequiredTenantId, file);
            db.Datasets.Add(dataset);
            await db.SaveChangesAsync(cancellationToken);
            return dataset;
        });

    /// <summary>The row of a dataset in <paramref name="file"/>; a dataset without a tenant is built in.</summary>
    public static DatasetEntry Entry(DatasetSummary summary, string name, string? tenantId, Artifact file) => new()
    {
        Id = Guid.CreateVersion7(),
        TenantId = tenantId,
        Name = name,
        Format = summary.Format,
        BuiltIn = tenantId is null,
        ArtifactId = file.Id,
        Size = file.Size,
        Sha256 = file.Sha256,
        SampleShape = summary.SampleShape,
        InputType = summary.InputType,
        ClassCount = summary.ClassCount,
        TrainCount = summary.TrainCount,
        TestCount = summary.TestCount,
        ValidationCount = summary.ValidationCount,
        CreatedAt = DateTimeOffset.UtcNow,
    };
}
