using System.Linq.Expressions;
using Microsoft.EntityFrameworkCore;
using SurgeryService.Domain.Artifacts;
using SurgeryService.Domain.Jobs;
using SurgeryService.Infrastructure.Persistence;

namespace SurgeryService.Infrastructure.Jobs;

/// <summary>A job's progress columns, as the events stream shows them.</summary>
public sealed record JobProgress(JobState State, int Iteration, int TotalIterations, double? Loss, long? Kept, long? Total,
    double? LastTop1, int CheckpointIteration, string? Error)
{
    public bool IsFinished => State is JobState.Succeeded or JobState.Failed or JobState.Cancelled;
}

/// <summary>
/// The tenant's jobs and what they recorded (the DbContext's query filter keeps other tenants' jobs out; a job's series
/// are read only after its job was found).
/// </summary>
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

    /// <summary>Where the job stands, read from its progress columns only (not its settings or search report).</summary>
    public Task<JobProgress?> ProgressAsync(Guid id, CancellationToken cancellationToken) =>
        db.Jobs.AsNoTracking().Where(j => j.Id == id)
            .Select(j => new JobProgress(j.State, j.Iteration, j.TotalIterations, j.Loss, j.Kept, j.Total, j.LastTop1, j.CheckpointIteration, j.Error))
            .SingleOrDefaultAsync(cancellationToken);

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
