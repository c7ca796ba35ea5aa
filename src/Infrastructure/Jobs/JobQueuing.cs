using Hangfire;
using Hangfire.States;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using SurgeryService.Domain.Jobs;
using SurgeryService.Infrastructure.Persistence;

namespace SurgeryService.Infrastructure.Jobs;

/// <summary>
/// Puts surgery jobs on their Hangfire queue. A job row and its Hangfire job live in two stores (EF's connection and
/// Hangfire's), so saving both cannot be one transaction: <see cref="SubmitJob"/> commits the row first and then
/// <see cref="EnqueueAsync"/> enqueues it, and <see cref="RequeueOrphansAsync"/> enqueues any row left without a Hangfire job by a process that
/// stopped in between. Running a job twice is safe (see <see cref="SurgeryJobRunner"/>), so the sweep may err that way.
/// </summary>
public sealed class JobQueuing(SurgeryDbContext db, IBackgroundJobClient hangfire, IOptions<JobOptions> options, ILogger<JobQueuing> logger)
{
    /// <summary>
    /// Enqueues every queued job that has had no Hangfire job for longer than <see cref="JobOptions.OrphanAfterSeconds"/>
    /// (a submit needs milliseconds between its two writes). Returns how many it enqueued.
    /// </summary>
    public async Task<int> RequeueOrphansAsync(CancellationToken cancellationToken)
    {
        var cutoff = DateTimeOffset.UtcNow.AddSeconds(-options.Value.OrphanAfterSeconds);
        var orphans = await db.Jobs.IgnoreQueryFilters()
            .Where(j => j.State == JobState.Queued && j.HangfireJobId == null && j.CreatedAt < cutoff)
            .OrderBy(j => j.CreatedAt).Take(100).ToListAsync(cancellationToken);
        var enqueued = 0;
        foreach (var job in orphans)
        {
            logger.LogWarning("Job {JobId} was saved without a Hangfire job at {CreatedAt}; enqueuing it now", job.Id, job.CreatedAt);
            if (await EnqueueAsync(job)) enqueued++;
        }
        return enqueued;
    }

    /// <summary>Enqueues a saved (committed) job on its queue and records its Hangfire job; false when it was cancelled meanwhile.</summary>
    public async Task<bool> EnqueueAsync(SurgeryJob job)
    {
        var hangfireJobId = hangfire.Create<SurgeryJobRunner>(r => r.RunAsync(job.Id, CancellationToken.None), new EnqueuedState(job.Queue));
        job.Enqueued(hangfireJobId, DateTimeOffset.UtcNow);
        try
        {
            await db.SaveChangesAsync(CancellationToken.None);
            return true;
        }
        catch (DbUpdateConcurrencyException)
        {
            // Cancelled (or enqueued by another sweep) meanwhile: the extra Hangfire job finds the job taken or finished.
            await db.Entry(job).ReloadAsync(CancellationToken.None);
            return false;
        }
    }
}

/// <summary>Runs <see cref="JobQueuing.RequeueOrphansAsync"/> every <see cref="JobOptions.OrphanSweepSeconds"/> in a host that runs jobs.</summary>
public sealed class OrphanJobSweeper(IServiceScopeFactory scopes, IOptions<JobOptions> options, ILogger<OrphanJobSweeper> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(options.Value.OrphanSweepSeconds));
        while (await timer.WaitForNextTickAsync(stoppingToken))
        {
            try
            {
                await using var scope = scopes.CreateAsyncScope();
                await scope.ServiceProvider.GetRequiredService<JobQueuing>().RequeueOrphansAsync(stoppingToken);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                logger.LogError(e, "The sweep for jobs without a Hangfire job failed; it runs again in {Seconds} s", options.Value.OrphanSweepSeconds);
            }
        }
    }
}
