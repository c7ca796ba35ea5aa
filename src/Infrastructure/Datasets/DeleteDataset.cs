using Microsoft.EntityFrameworkCore;
using SurgeryService.Infrastructure.Artifacts;
using SurgeryService.Infrastructure.Jobs;
using SurgeryService.Infrastructure.Persistence;

namespace SurgeryService.Infrastructure.Datasets;

/// <summary>Deletes one of the tenant's datasets and its file, unless it is built in or a queued or running job uses it.</summary>
public sealed class DeleteDataset(SurgeryDbContext db, ArtifactStore artifacts)
{
    public Task<Deletion> ExecuteAsync(Guid id, CancellationToken cancellationToken) =>
        JobInputDeletion.DeleteUnlessInUseAsync(db, artifacts,
            db.Datasets.FromSql($"SELECT * FROM datasets WHERE \"Id\" = {id} FOR UPDATE"),
            d => d.BuiltIn ? new Deletion.Refused("Built-in dataset", $"'{d.Name}' is built in and cannot be deleted") : null,
            d => d.ArtifactId, "dataset", j => j.DatasetId == id, cancellationToken);
}
