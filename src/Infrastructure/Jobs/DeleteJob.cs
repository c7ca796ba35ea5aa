using Microsoft.EntityFrameworkCore;
using SurgeryService.Domain.Jobs;
using SurgeryService.Infrastructure.Artifacts;
using SurgeryService.Infrastructure.Persistence;

namespace SurgeryService.Infrastructure.Jobs;

/// <summary>What deleting a job came to.</summary>
public abstract record JobDeletion
{
    public sealed record Deleted : JobDeletion;

    /// <summary>No such job for this tenant (or another delete of it got there first).</summary>
    public sealed record NotFound : JobDeletion;

    /// <summary>The job is still queued or running, in <see cref="State"/>: it must be cancelled (and have stopped) first.</summary>
    public sealed record NotFinished(JobState State) : JobDeletion;
}

/// <summary>
/// Deletes one of the tenant's finished jobs with everything it recorded: its metrics, evaluations, events and
/// per-layer results (cascaded by the database), and its checkpoint and result files. Its Hangfire entry, which holds
/// only the job's id, expires with Hangfire's own retention.
/// </summary>
public sealed class DeleteJob(SurgeryDbContext db, ArtifactStore artifacts)
{
    /// <summary>Times the delete is decided again on a reloaded job when a worker wrote it at the same moment.</summary>
    private const int MaxConflicts = 5;

    public async Task<JobDeletion> ExecuteAsync(Guid id, CancellationToken cancellationToken)
    {
        await using var transaction = await db.Database.BeginTransactionAsync(cancellationToken);
        var job = await db.Jobs.SingleOrDefaultAsync(j => j.Id == id, cancellationToken);
        for (var conflicts = 0; ; conflicts++)
        {
            if (job is null) return new JobDeletion.NotFound();
            // A finished job is written no more, so a job seen finished stays so; the row version catches the rest.
            if (!job.IsFinished) return new JobDeletion.NotFinished(job.State);
            db.Jobs.Remove(job);
            try
            {
                await db.SaveChangesAsync(cancellationToken);
                break;
            }
            catch (DbUpdateConcurrencyException) when (conflicts < MaxConflicts)
            {
                // Another delete of it committed (the row is gone), or a writer changed it: decide on what is there now.
                db.ChangeTracker.Clear();
                job = await db.Jobs.SingleOrDefaultAsync(j => j.Id == id, cancellationToken);
            }
        }
        foreach (var artifactId in new[] { job.CheckpointArtifactId, job.ResultOnnxArtifactId, job.ResultOnnxSparseArtifactId, job.ResultTorchSharpArtifactId })
        {
            if (artifactId is { } artifact) await artifacts.DeleteAsync(artifact, cancellationToken);
        }
        await transaction.CommitAsync(cancellationToken);
        return new JobDeletion.Deleted();
    }
}
