using System.Linq.Expressions;
using Microsoft.EntityFrameworkCore;
using SurgeryService.Domain.Artifacts;
using SurgeryService.Domain.Jobs;
using SurgeryService.Domain.Surgery;
using SurgeryService.Infrastructure.Persistence;

namespace SurgeryService.Infrastructure.Jobs;

/// <summary>What a job's row alone does not say: its place in its queue (queued jobs) and its warnings.</summary>
public sealed record JobStanding(int? QueuePosition, IReadOnlyList<string> Warnings);

/// <summary>
/// The columns of a job that its progress events are made of (see <see cref="JobQueries.ProgressAsync"/>): not its
/// settings, preprocessing, search report or per-layer arrays, which can be large and which a poll has no use for.
/// </summary>
public sealed record JobProgress(
    Guid Id, JobState State, string Mode, string Queue, DateTimeOffset CreatedAt, RunPhase? Phase, int PhaseStep, int PhaseSteps,
    int Iteration, int TotalIterations, DateTimeOffset? EstimatedFinishAt, double? Loss, long? Kept, long? Total,
    double? BestCompression, double? StageCompression, double? ValidationTop1, double? TestTop1, int CheckpointIteration,
    string? Error)
{
    public bool IsFinished => State.IsFinished();
}

/// <summary>
/// The tenant's jobs and what they recorded (the DbContext's query filter keeps other tenants' jobs out; a job's series
/// are read only after its job was found).
/// </summary>
public sealed class JobQueries(SurgeryDbContext db, IWorkerPresence workers)
{
    /// <summary>
    /// Each job's standing. A queued job's position counts the queued jobs of every tenant submitted to its queue
    /// before it (the order a Hangfire queue serves them in); its warnings add that no live worker serves the queue.
    /// </summary>
    public async Task<IReadOnlyDictionary<Guid, JobStanding>> StandingsAsync(IReadOnlyCollection<SurgeryJob> jobs,
        CancellationToken cancellationToken)
    {
        var ids = jobs.Select(j => j.Id).ToList();
        var warning = nameof(SurgeryEventKind.Warning);
        var events = await db.JobEvents.AsNoTracking().Where(e => ids.Contains(e.JobId) && e.Kind == warning)
            .OrderBy(e => e.Sequence).Select(e => new { e.JobId, e.Message }).ToListAsync(cancellationToken);
        var warningsOf = events.ToLookup(e => e.JobId, e => e.Message);
        var positions = await QueuePositionsAsync(jobs.Where(j => j.State == JobState.Queued).ToList(), cancellationToken);
        var served = new Dictionary<string, bool>();
        var standings = new Dictionary<Guid, JobStanding>();
        foreach (var job in jobs)
        {
            var warnings = warningsOf[job.Id].ToList();
            int? position = null;
            if (job.State == JobState.Queued)
            {
                position = positions[job.Id];
                if (!(served.TryGetValue(job.Queue, out var serves) ? serves : served[job.Queue] = workers.ServesQueue(job.Queue)))
                {
                    warnings.Insert(0, NoWorker(job.Queue));
                }
            }
            standings[job.Id] = new JobStanding(position, warnings);
        }
        return standings;
    }

    /// <summary>
    /// The positions of <paramref name="queued"/>, as <see cref="QueuePositionAsync"/> counts them, from one read of the
    /// queued jobs (of every tenant) in their queues submitted before the latest of them.
    /// </summary>
    private async Task<Dictionary<Guid, int>> QueuePositionsAsync(IReadOnlyCollection<SurgeryJob> queued, CancellationToken cancellationToken)
    {
        if (queued.Count == 0) return [];
        var queues = queued.Select(j => j.Queue).Distinct().ToList();
        var latest = queued.Max(j => AsStored(j.CreatedAt));
        var ahead = await db.Jobs.IgnoreQueryFilters().AsNoTracking()
            .Where(o => o.State == JobState.Queued && queues.Contains(o.Queue) && o.CreatedAt < latest)
            .OrderBy(o => o.CreatedAt).Select(o => new { o.Queue, o.CreatedAt }).ToListAsync(cancellationToken);
        var aheadIn = ahead.GroupBy(o => o.Queue).ToDictionary(g => g.Key, g => g.Select(o => o.CreatedAt).ToList());
        return queued.ToDictionary(j => j.Id,
            j => 1 + (aheadIn.TryGetValue(j.Queue, out var times) ? CountBefore(times, AsStored(j.CreatedAt)) : 0));
    }

    /// <summary>
    /// <paramref name="time"/> as PostgreSQL holds it: Npgsql drops the ticks below a microsecond, which a job just
    /// submitted still has in memory.
    /// </summary>
    private static DateTimeOffset AsStored(DateTimeOffset time) => time.AddTicks(-(time.Ticks % TimeSpan.TicksPerMicrosecond));

    /// <summary>How many of <paramref name="sorted"/> are earlier than <paramref name="time"/>.</summary>
    private static int CountBefore(List<DateTimeOffset> sorted, DateTimeOffset time)
    {
        int low = 0, high = sorted.Count;
        while (low < high)
        {
            var middle = (low + high) / 2;
            if (sorted[middle] < time) low = middle + 1;
            else high = middle;
        }
        return low;
    }

    /// <summary>1 + the queued jobs of every tenant submitted to <paramref name="job"/>'s queue before it; null unless it is queued.</summary>
    public async Task<int?> QueuePositionAsync(JobProgress job, CancellationToken cancellationToken) => job.State == JobState.Queued
        ? 1 + await db.Jobs.IgnoreQueryFilters().CountAsync(
            o => o.State == JobState.Queued && o.Queue == job.Queue && o.CreatedAt < job.CreatedAt, cancellationToken)
        : null;

    /// <summary>The job's progress columns, read without the rest of its row; null when the tenant has no such job.</summary>
    public Task<JobProgress?> ProgressAsync(Guid id, CancellationToken cancellationToken) =>
        db.Jobs.AsNoTracking().Where(j => j.Id == id)
            .Select(j => new JobProgress(j.Id, j.State, j.Mode, j.Queue, j.CreatedAt, j.Phase, j.PhaseStep, j.PhaseSteps,
                j.Iteration, j.TotalIterations, j.EstimatedFinishAt, j.Loss, j.Kept, j.Total, j.BestCompression, j.StageCompression,
                j.ValidationTop1, j.TestTop1, j.CheckpointIteration, j.Error))
            .SingleOrDefaultAsync(cancellationToken);

    public async Task<JobStanding> StandingAsync(SurgeryJob job, CancellationToken cancellationToken) =>
        (await StandingsAsync([job], cancellationToken))[job.Id];

    /// <summary>The warning for a queued job that no live worker will take.</summary>
    public static string NoWorker(string queue) => $"no live worker serves the '{queue}' queue right now: the job waits until one starts";

    /// <summary>Newest first; only jobs in <paramref name="state"/> when one is given.</summary>
    public Task<PageOf<SurgeryJob>> ListAsync(JobState? state, int offset, int limit, CancellationToken cancellationToken)
    {
        var query = db.Jobs.AsNoTracking();
        if (state is { } s) query = query.Where(j => j.State == s);
        return query.OrderByDescending(j => j.CreatedAt).ToPageAsync(offset, limit, cancellationToken);
    }

    public Task<SurgeryJob?> FindAsync(Guid id, CancellationToken cancellationToken) =>
        db.Jobs.AsNoTracking().SingleOrDefaultAsync(j => j.Id == id, cancellationToken);

    /// <summary>
    /// Metric rows from <paramref name="from"/> to <paramref name="to"/> (inclusive), every <paramref name="stride"/>-th
    /// counted from <paramref name="from"/>, at most <paramref name="limit"/>, in iteration order, projected in SQL.
    /// </summary>
    public Task<List<T>> MetricsAsync<T>(Guid jobId, int from, int to, int stride, int limit, Expression<Func<JobMetric, T>> select,
        CancellationToken cancellationToken) =>
        db.JobMetrics.AsNoTracking()
            .Where(m => m.JobId == jobId && m.Iteration >= from && m.Iteration <= to && (m.Iteration - from) % stride == 0)
            .OrderBy(m => m.Iteration).Take(limit).Select(select).ToListAsync(cancellationToken);

    /// <summary>Every metric row whose iteration is a multiple of <paramref name="stride"/>, in order, projected in SQL.</summary>
    public Task<List<T>> MetricsEveryAsync<T>(Guid jobId, int stride, Expression<Func<JobMetric, T>> select, CancellationToken cancellationToken) =>
        db.JobMetrics.AsNoTracking().Where(m => m.JobId == jobId && m.Iteration % stride == 0)
            .OrderBy(m => m.Iteration).Select(select).ToListAsync(cancellationToken);

    public Task<int> MetricCountAsync(Guid jobId, CancellationToken cancellationToken) =>
        db.JobMetrics.CountAsync(m => m.JobId == jobId, cancellationToken);

    /// <summary>Evaluations from <paramref name="from"/> to <paramref name="to"/> (inclusive), in iteration order.</summary>
    public Task<List<JobEvaluation>> EvaluationsAsync(Guid jobId, int from, int to, CancellationToken cancellationToken) =>
        db.JobEvaluations.AsNoTracking().Where(e => e.JobId == jobId && e.Iteration >= from && e.Iteration <= to)
            .OrderBy(e => e.Iteration).ToListAsync(cancellationToken);

    /// <summary>The stored file's row (name, content type) of one of a job's artifacts.</summary>
    public Task<Artifact> ArtifactAsync(Guid artifactId, CancellationToken cancellationToken) =>
        db.Artifacts.AsNoTracking().SingleAsync(a => a.Id == artifactId, cancellationToken);
}
