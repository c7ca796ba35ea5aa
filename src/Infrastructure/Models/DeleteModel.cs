using Microsoft.EntityFrameworkCore;
using SurgeryService.Infrastructure.Artifacts;
using SurgeryService.Infrastructure.Jobs;
using SurgeryService.Infrastructure.Persistence;

namespace SurgeryService.Infrastructure.Models;

/// <summary>Deletes one of the tenant's models and its file, unless a queued or running job uses it.</summary>
public sealed class DeleteModel(SurgeryDbContext db, ArtifactStore artifacts)
{
    public async Task<Deletion> ExecuteAsync(Guid id, CancellationToken cancellationToken)
    {
        var model = await db.Models.SingleOrDefaultAsync(m => m.Id == id, cancellationToken);
        if (model is null) return new Deletion.NotFound();
        return await JobInputDeletion.DeleteUnlessInUseAsync(db, artifacts, model, model.ArtifactId, "model", j => j.ModelId == id, cancellationToken);
    }
}
