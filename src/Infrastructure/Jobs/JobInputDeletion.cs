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

    /// <summary>No such row for this tenant (or another delete of it got there first).</summary>
    public sealed record NotFound : Deletion;

    /// <summary>The row stays: <see cref="Detail"/> says why and what the user can do.</summary>
    public sealed record Refused(string Title, string Detail) : Deletion;
}

/// <summary>
/// Deletes a model or dataset with its file, unless a queued or running job still reads it.
/// <para>Delete and submit are exclusive in the database: the delete locks the row (<c>FOR UPDATE</c>) before it looks for
/// jobs that use it, and a submit holds <c>FOR KEY SHARE</c> on it while it inserts its job (see
/// <see cref="SubmitJob"/>). So either the submit commits first and the delete sees its job (409), or the delete
/// commits first and the submit finds the row gone (422); a parallel delete waits and finds it gone (404).</para>
/// </summary>
public static class JobInputDeletion
{
    /// <summary>
    /// Deletes the row that <paramref name="lockRow"/> selects <c>FOR UPDATE</c> (it sees no row a concurrent delete
    /// removed), and its file, unless <paramref name="refusal"/> gives a reason to keep it (a built-in dataset) or a job
    /// that <paramref name="usesEntry"/> is queued or running.
    /// </summary>
    public static async Task<Deletion> DeleteUnlessInUseAsync<TEntry>(SurgeryDbContext db, ArtifactStore artifacts,
        IQueryable<TEntry> lockRow, Func<TEntry, Deletion.Refused?> refusal, Func<TEntry, Guid> artifactOf, string what,
        Expression<Func<SurgeryJob, bool>> usesEntry, CancellationToken cancellationToken)
        where TEntry : class
    {
        await using var transaction = await db.Database.BeginTransactionAsync(cancellationToken);
        var entry = await lockRow.SingleOrDefaultAsync(cancellationToken);
        if (entry is null) return new Deletion.NotFound();
        if (refusal(entry) is { } refused) return refused;
        var active = await db.Jobs.Where(usesEntry).Where(j => j.State == JobState.Queued || j.State == JobState.Running)
            .Select(j => j.Id).ToListAsync(cancellationToken);
        if (active.Count > 0)
        {
            return new Deletion.Refused($"{char.ToUpperInvariant(what[0])}{what[1..]} in use",
                $"jobs {string.Join(", ", active)} still use this {what}: cancel them or wait until they finish");
        }
        db.Remove(entry);
        await db.SaveChangesAsync(cancellationToken);
        await artifacts.DeleteAsync(artifactOf(entry), cancellationToken);
        await transaction.CommitAsync(cancellationToken);
        return new Deletion.Deleted();
    }
}
