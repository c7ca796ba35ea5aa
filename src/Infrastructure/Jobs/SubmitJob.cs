using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using SurgeryService.Domain.Datasets;
using SurgeryService.Domain.Jobs;
using SurgeryService.Domain.Models;
using SurgeryService.Domain.Surgery;
using SurgeryService.Infrastructure.Persistence;
using SurgeryService.Infrastructure.Tenants;

namespace SurgeryService.Infrastructure.Jobs;

/// <summary>A saved and enqueued job, and what the client should know about it (no live worker serves its queue).</summary>
public sealed record SubmittedJob(SurgeryJob Job, string? Warning);

/// <summary>Saves a job for the tenant and puts it on its Hangfire queue.</summary>
public sealed class SubmitJob(SurgeryDbContext db, JobQueuing queuing, IWorkerPresence workers, ITenantAccessor tenant,
    IOptions<JobOptions> options)
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
    }

    /// <summary>Saves the job and enqueues it; accepted even when no worker serves <paramref name="queue"/> now (one may be starting).</summary>
    public async Task<SubmittedJob> ExecuteAsync(ModelEntry model, DatasetEntry dataset, SurgerySettings settings,
        JobPreprocessing preprocessing, string queue, int checkpointInterval, int totalIterations, CancellationToken cancellationToken)
    {
        var job = new SurgeryJob
        {
            Id = Guid.CreateVersion7(),
            TenantId = tenant.RequiredTenantId,
            ModelId = model.Id,
            DatasetId = dataset.Id,
            Settings = settings,
            Preprocessing = preprocessing,
            Queue = queue,
            CheckpointInterval = checkpointInterval,
            TotalIterations = totalIterations,
            CreatedAt = DateTimeOffset.UtcNow,
            UpdatedAt = DateTimeOffset.UtcNow,
        };
        await queuing.SubmitAsync(job, cancellationToken);
        var warning = workers.ServesQueue(job.Queue)
            ? null
            : $"no live worker serves the '{job.Queue}' queue right now: the job waits until one starts";
        return new SubmittedJob(job, warning);
    }
}
