using System.Linq.Expressions;
using Microsoft.EntityFrameworkCore;
using SurgeryService.Domain.Jobs;
using SurgeryService.Infrastructure.Artifacts;
using SurgeryService.Infrastructure.Persistence;

namespace SurgeryService.Infrastructure.Jobs;

/// <summary>What deleting a job's input (a model or a dataset) came to.</summary>
public abstract record Deletion
{
    public sealed record Deleted : Deletion;

    /// <summary>No such row for this tenant.</summary>
    public sealed record NotFound : Deletion;

    /// <summary>The row stays: <see cref="Detail"/> says why and what the user can do.</summary>
    public sealed record Refused(string Title, string Detail) : Deletion;
}

/// <summary>Deletes a model or dataset with its file, unless a queued or running job still reads it.</summary>
public static class JobInputDeletion
{
    public static async Task<Deletion> DeleteUnlessInUseAsync<TEntry>(SurgeryDbContext db, ArtifactStore artifacts, TEntry entry,
        Guid artifactId, string what, Expression<Func<SurgeryJob, bool>> usesEntry, CancellationToken cancellationToken)
        where TEntry : class
    {
        var active = await db.Jobs.Where(usesEntry).Where(j => j.State == JobState.Queued || j.State == JobState.Running)
            .Select(j => j.Id).ToListAsync(cancellationToken);
        if (active.Count > 0)
        {
            return new Deletion.Refused($"{char.ToUpperInvariant(what[0])}{what[1..]} in use",
                $"jobs {string.Join(", ", active)} still use this {what}: cancel them or wait until they finish");
        }
        db.Remove(entry);
        await db.SaveChangesAsync(cancellationToken);
        await artifacts.DeleteAsync(artifactId, cancellationToken);
        return new Deletion.Deleted();
    }
}
