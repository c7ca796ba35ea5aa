using Hangfire;
using Microsoft.EntityFrameworkCore;
using SurgeryService.Domain.Jobs;
using SurgeryService.Infrastructure.Persistence;

namespace SurgeryService.Infrastructure.Jobs;

/// <summary>What a cancel request came to.</summary>
public abstract record Cancellation
{
    /// <summary>Recorded: a queued job is Cancelled now, a running one stops at its next iteration.</summary>
    public sealed record Requested(SurgeryJob Job) : Cancellation;

    /// <summary>No such job for this tenant.</summary>
    public sealed record NotFound : Cancellation;

    /// <summary>The job had already finished in <see cref="State"/>.</summary>
    public sealed record AlreadyFinished(JobState State) : Cancellation;
}

/// <summary>Cancels one of the tenant's jobs: a queued one at once (its Hangfire job is deleted), a running one at its next iteration.</summary>
public sealed class CancelJob(SurgeryDbContext db, IBackgroundJobClient hangfire)
{
    /// <summary>Times the cancel is decided again on a reloaded job when a worker wrote it at the same moment.</summary>
    private const int MaxConflicts = 5;

    public async Task<Cancellation> ExecuteAsync(Guid id, CancellationToken cancellationToken)
    {
        var job = await db.Jobs.SingleOrDefaultAsync(j => j.Id == id, cancellationToken);
        if (job is null) return new Cancellation.NotFound();
        for (var conflicts = 0; ; conflicts++)
        {
            if (job.IsFinished) return new Cancellation.AlreadyFinished(job.State);
            var wasQueued = job.RequestCancel(DateTimeOffset.UtcNow);
            try
            {
                await db.SaveChangesAsync(cancellationToken);
            }
            catch (DbUpdateConcurrencyException) when (conflicts < MaxConflicts)
            {
                // The worker changed the job meanwhile (it started, wrote progress or finished): decide on the new row.
                await db.Entry(job).ReloadAsync(cancellationToken);
                continue;
            }
            if (wasQueued && job.HangfireJobId is not null) hangfire.Delete(job.HangfireJobId);
            return new Cancellation.Requested(job);
        }
    }
}
