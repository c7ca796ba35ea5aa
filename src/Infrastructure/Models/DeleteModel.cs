using Microsoft.EntityFrameworkCore;
using SurgeryService.Infrastructure.Artifacts;
using SurgeryService.Infrastructure.Jobs;
using SurgeryService.Infrastructure.Persistence;

namespace SurgeryService.Infrastructure.Models;

/// <summary>Deletes one of the tenant's models and its file, unless a queued or running job uses it.</summary>
public sealed class DeleteModel(SurgeryDbContext db, ArtifactStore artifacts)
{
    public Task<Deletion> ExecuteAsync(Guid id, CancellationToken cancellationToken) =>
        JobInputDeletion.DeleteUnlessInUseAsync(db, artifacts,
            db.Models.FromSql($"SELECT * FROM models WHERE \"Id\" = {id} FOR UPDATE"), _ => null, m => m.ArtifactId,
            "model", j => j.ModelId == id, cancellationToken);
}
