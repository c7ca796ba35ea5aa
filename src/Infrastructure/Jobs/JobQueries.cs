using Microsoft.EntityFrameworkCore;
using SurgeryService.Domain.Jobs;
using SurgeryService.Infrastructure.Persistence;

namespace SurgeryService.Infrastructure.Jobs;

/// <summary>The tenant's jobs (the DbContext's query filter keeps other tenants' out).</summary>
public sealed class JobQueries(SurgeryDbContext db)
{
    /// <summary>Newest first; only jobs in <paramref name="state"/> when one is given.</summary>
    public Task<PageOf<SurgeryJob>> ListAsync(JobState? state, int offset, int limit, CancellationToken cancellationToken)
    {
        var query = db.Jobs.AsNoTracking();
        if (state is { } s) query = query.Where(j => j.State == s);
        return query.OrderByDescending(j => j.CreatedAt).ToPageAsync(offset, limit, cancellationToken);
    }

    public Task<SurgeryJob?> FindAsync(Guid id, CancellationToken cancellationToken) =>
        db.Jobs.AsNoTracking().SingleOrDefaultAsync(j => j.Id == id, cancellationToken);
}
