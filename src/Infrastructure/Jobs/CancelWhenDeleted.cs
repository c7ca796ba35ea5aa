using Hangfire;
using Hangfire.States;
using Hangfire.Storage;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using SurgeryService.Infrastructure.Persistence;

namespace SurgeryService.Infrastructure.Jobs;

/// <summary>
/// Cancels a surgery job whose Hangfire job is deleted (the dashboard's Delete button, which operator tenants have),
/// as the user's cancel does: a queued job ends Cancelled at once, a running one stops at its next iteration. Without
/// it the job stayed Queued, or Running, for ever, since nothing would run it again.
/// <para>Hangfire's filters are process-wide, and the service tests run several hosts in one process, each with its own
/// storage and database: a filter acts only on state changes in its own host's storage. A failure is logged and does
/// not stop the delete.</para>
/// </summary>
public sealed class CancelWhenDeleted(JobStorage storage, IServiceScopeFactory scopes, ILogger<CancelWhenDeleted> logger) : IApplyStateFilter
{
    /// <summary>Times the cancel is decided again on a reloaded job when the worker wrote it at the same moment.</summary>
    private const int MaxConflicts = 5;

    public void OnStateApplied(ApplyStateContext context, IWriteOnlyTransaction transaction)
    {
        if (context.NewState is not DeletedState || !ReferenceEquals(context.Storage, storage)
            || context.BackgroundJob.Job?.Type != typeof(SurgeryJobRunner))
        {
            return;
        }
        var hangfireJobId = context.BackgroundJob.Id;
        try
        {
            using var scope = scopes.CreateScope();
            var db = scope.ServiceProvider.GetRequiredService<SurgeryDbContext>();
            // An operator deletes any tenant's Hangfire job from the dashboard.
            var job = db.Jobs.IgnoreQueryFilters().SingleOrDefault(j => j.HangfireJobId == hangfireJobId);
            for (var conflicts = 0; job is { IsFinished: false }; conflicts++)
            {
                job.RequestCancel(DateTimeOffset.UtcNow);
                try
                {
                    db.SaveChanges();
                    logger.LogWarning("Job {JobId}: its Hangfire job {HangfireJobId} was deleted, so the job is {State}",
                        job.Id, hangfireJobId, job.IsFinished ? job.State : "cancelling at its next iteration");
                    return;
                }
                catch (DbUpdateConcurrencyException) when (conflicts < MaxConflicts)
                {
                    db.Entry(job).Reload();
                }
            }
        }
        catch (Exception e)
        {
            logger.LogError(e, "Hangfire job {HangfireJobId} was deleted, but cancelling its surgery job failed", hangfireJobId);
        }
    }

    public void OnStateUnapplied(ApplyStateContext context, IWriteOnlyTransaction transaction)
    {
    }
}
