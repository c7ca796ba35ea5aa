using Microsoft.EntityFrameworkCore;
using SurgeryService.Domain.Datasets;
using SurgeryService.Infrastructure.Persistence;

namespace SurgeryService.Infrastructure.Datasets;

/// <summary>The tenant's datasets and the built-in ones (the DbContext's query filter keeps other tenants' out).</summary>
public sealed class DatasetQueries(SurgeryDbContext db)
{
    /// <summary>Built-in ones first, then newest first.</summary>
    public Task<PageOf<DatasetEntry>> ListAsync(int offset, int limit, CancellationToken cancellationToken) =>
        db.Datasets.AsNoTracking().OrderByDescending(d => d.BuiltIn).ThenByDescending(d => d.CreatedAt).ThenBy(d => d.Id)
            .ToPageAsync(offset, limit, cancellationToken);

    public Task<DatasetEntry?> FindAsync(Guid id, CancellationToken cancellationToken) =>
        db.Datasets.AsNoTracking().SingleOrDefaultAsync(d => d.Id == id, cancellationToken);
}
