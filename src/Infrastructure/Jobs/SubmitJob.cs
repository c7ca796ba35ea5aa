using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using SurgeryService.Domain.Datasets;
using SurgeryService.Domain.Jobs;
using SurgeryService.Domain.Models;
using SurgeryService.Domain.Surgery;
using SurgeryService.Infrastructure.Persistence;
using SurgeryService.Infrastructure.Tenants;

namespace SurgeryService.Infrastructure.Jobs;

/// <summary>Saves a job for the tenant and puts it on its Hangfire queue (see <see cref="JobQueuing"/>).</summary>
public sealed class SubmitJob(SurgeryDbContext db, JobQueuing queuing, ITenantAccessor tenant, IOptions<JobOptions> options)
{
    /// <summary>The tenant's model and a dataset it may use (its own or a built-in one) that fit together; problems go to <paramref name="invalid"/>.</summary>
    public async Task<(ModelEntry? Model, DatasetEntry? Dataset)> FindInputsAsync(Guid? modelId, Guid? datasetId,
        JobPreprocessing preprocessing, Dictionary<string, string[]> invalid, CancellationToken cancellationToken)
    {
        var model = await db.Models.AsNoTracking().SingleOrDefaultAsync(x => x.Id == modelId, cancellationToken);
        if (model is null) invalid["modelId"] = [$"there is no model with id {modelId}"];
        var dataset = await db.Datasets.AsNoTracking().SingleOrDefaultAsync(x => x.Id == datasetId, cancellationToken);
        if (dataset is null) invalid["datasetId"] = [$"there is no dataset with id {datasetId}"];
        if (model is not null && dataset is not null && SampleShapes.Problem(dataset.SampleShape, preprocessing.Layout, model.InputShape) is { } shape)
        {
            invalid["datasetId"] = [shape];
        }
        else if (model is { ClassCount: { } classes } && dataset is not null && dataset.ClassCount > classes)
        {
            invalid["datasetId"] = [$"the dataset's labels go up to {dataset.ClassCount - 1} but the model scores {classes} classes " +
                $"(labels 0 to {classes - 1}): use a model with at least {dataset.ClassCount} outputs"];
        }
        if (dataset is not null)
        {
            // The engine's rule (InputPreprocessing): one value for every channel, or one per channel.
            var channels = dataset.SampleShape.Length > 0 ? dataset.SampleShape[0] : 1;
            foreach (var (name, values) in new[] { ("preprocessing.mean", preprocessing.Mean), ("preprocessing.std", preprocessing.Std) })
            {
                if (values.Count > 1 && values.Count != channels)
                {
                    invalid[name] = [$"has {values.Count} values but the dataset's samples have {channels} channel(s) " +
                        $"(the first dimension of [{string.Join(", ", dataset.SampleShape)}]): give one value for all, or one per channel"];
                }
            }
        }
        return (model, dataset);
    }

    /// <summary>
    /// Refuses, into <paramref name="invalid"/>, a job whose estimated peak memory is over <see cref="JobOptions.MaxJobMemoryBytes"/>:
    /// a worker would run out of memory in its first iterations rather than finish it.
    /// </summary>
    public void CheckMemory(ModelEntry model, DatasetEntry dataset, SurgerySettings settings, JobPreprocessing preprocessing,
        Dictionary<string, string[]> invalid)
    {
        var estimate = JobMemoryEstimate.For(model, dataset, settings, preprocessing);
        if (estimate.Problem(options.Value.MaxJobMemoryBytes, settings.BatchSize) is { } problem) invalid["settings.batchSize"] = [problem];
        if (JobMemoryEstimate.SnapshotProblem(model.ParameterCount, settings.Optimizer) is { } state) invalid["modelId"] = [state];
    }

    /// <summary>
    /// Saves the job and enqueues it; accepted even when no worker serves <paramref name="queue"/> now (one may be
    /// starting: the job's standing warns of it, see <see cref="JobQueries.StandingsAsync"/>). Null when the model or
    /// dataset was deleted since <see cref="FindInputsAsync"/>: the problem goes to <paramref name="invalid"/>.
    /// </summary>
    public async Task<SurgeryJob?> ExecuteAsync(ModelEntry model, DatasetEntry dataset, SurgerySettings settings,
        JobPreprocessing preprocessing, string queue, int checkpointInterval, int totalIterations,
        Dictionary<string, string[]> invalid, CancellationToken cancellationToken, JobOutput? output = null)
    {
        var kind = JobKind.Of(settings);
        var (expectedSeconds, expectedBasis) = ExpectedDuration.Of(kind, totalIterations,
            kind is SensitivityJob ? null : await LatestFinishedRunAsync(model.Id, queue, cancellationToken));
        var job = new SurgeryJob
        {
            Id = Guid.CreateVersion7(),
            TenantId = tenant.RequiredTenantId,
            ModelId = model.Id,
            DatasetId = dataset.Id,
            Settings = settings,
            Preprocessing = preprocessing,
            Output = output ?? new JobOutput(),
            Queue = queue,
            CheckpointInterval = checkpointInterval,
            TotalIterations = totalIterations,
            ExpectedSeconds = expectedSeconds,
            ExpectedBasis = expectedBasis,
            CreatedAt = DateTimeOffset.UtcNow,
            UpdatedAt = DateTimeOffset.UtcNow,
        };
        await using (var transaction = await db.Database.BeginTransactionAsync(cancellationToken))
        {
            // Held until the job row is committed, so a delete of either (FOR UPDATE, see JobInputDeletion) either waits
            // and then sees the job, or went first and leaves nothing to hold. Shared: submits do not wait for each other.
            if (!await HoldAsync(db.Database.SqlQuery<Guid>($"SELECT \"Id\" AS \"Value\" FROM models WHERE \"Id\" = {model.Id} FOR KEY SHARE"), cancellationToken))
            {
                invalid["modelId"] = [$"model {model.Id} was deleted while the job was being submitted"];
            }
            if (!await HoldAsync(db.Database.SqlQuery<Guid>($"SELECT \"Id\" AS \"Value\" FROM datasets WHERE \"Id\" = {dataset.Id} FOR KEY SHARE"), cancellationToken))
            {
                invalid["datasetId"] = [$"dataset {dataset.Id} was deleted while the job was being submitted"];
            }
            if (invalid.Count > 0) return null;
            db.Jobs.Add(job);
            await db.SaveChangesAsync(cancellationToken);
            await transaction.CommitAsync(cancellationToken);
        }
        await queuing.EnqueueAsync(job);
        return job;
    }

    /// <summary>
    /// The tenant's latest training job (fixed or budget) on <paramref name="modelId"/> and <paramref name="queue"/> that
    /// succeeded, whose pace a new job there goes by; null when there is none.
    /// </summary>
    private async Task<FinishedRun?> LatestFinishedRunAsync(Guid modelId, string queue, CancellationToken cancellationToken)
    {
        var recent = await db.Jobs.AsNoTracking()
            .Where(j => j.ModelId == modelId && j.Queue == queue && j.State == JobState.Succeeded && j.Iteration > 0
                && j.StartedAt != null && j.FinishedAt != null)
            .OrderByDescending(j => j.FinishedAt)
            .Take(RecentRuns)
            .Select(j => new { j.Id, j.Settings, j.Iteration, j.StartedAt, j.FinishedAt })
            .ToListAsync(cancellationToken);
        return recent.Where(j => JobKind.Of(j.Settings) is not SensitivityJob)
            .Select(j => new FinishedRun(j.Id, j.Iteration, j.Settings.BatchSize, (j.FinishedAt!.Value - j.StartedAt!.Value).TotalSeconds))
            .FirstOrDefault();
    }

    /// <summary>Finished jobs looked at for a training one (sensitivity analyses count layers, not iterations).</summary>
    private const int RecentRuns = 10;

    private static async Task<bool> HoldAsync(IQueryable<Guid> lockRow, CancellationToken cancellationToken) =>
        (await lockRow.ToListAsync(cancellationToken)).Count == 1;
}
