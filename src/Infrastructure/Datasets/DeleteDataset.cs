using Microsoft.EntityFrameworkCore;
using SurgeryService.Infrastructure.Artifacts;
using SurgeryService.Infrastructure.Jobs;
using SurgeryService.Infrastructure.Persistence;

namespace SurgeryService.Infrastructure.Datasets;

/// <summary>Deletes one of the tenant's datasets and its file, unless it is built in or a queued or running job uses it.</summary>
public sealed class DeleteDataset(SurgeryDbContext db, ArtifactStore artifacts)
{
    public async Task<Deletion> ExecuteAsync(Guid id, CancellationToken cancellationToken)
    {
        var dataset = await db.Datasets.SingleOrDefaultAsync(d => d.Id == id, cancellationToken);
        if (dataset is null) return new Deletion.NotFound();
        if (dataset.BuiltIn) return new Deletion.Refused("Built-in dataset", $"'{dataset.Name}' is built in and cannot be deleted");
        return await JobInputDeletion.DeleteUnlessInUseAsync(db, artifacts, dataset, dataset.ArtifactId, "dataset", j => j.DatasetId == id, cancellationToken);
    }
}
