using Microsoft.EntityFrameworkCore;
using SurgeryService.Domain.Models;
using SurgeryService.Infrastructure.Persistence;

namespace SurgeryService.Infrastructure.Models;

/// <summary>The tenant's models (the DbContext's query filter keeps other tenants' out).</summary>
public sealed class ModelQueries(SurgeryDbContext db)
{
    /// <summary>Newest first.</summary>
    public Task<PageOf<ModelEntry>> ListAsync(int offset, int limit, CancellationToken cancellationToken) =>
        db.Models.AsNoTracking().OrderByDescending(m => m.CreatedAt).ThenBy(m => m.Id).ToPageAsync(offset, limit, cancellationToken);

    public Task<ModelEntry?> FindAsync(Guid id, CancellationToken cancellationToken) =>
        db.Models.AsNoTracking().SingleOrDefaultAsync(m => m.Id == id, cancellationToken);
}
