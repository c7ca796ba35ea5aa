using Microsoft.EntityFrameworkCore;
using SurgeryService.Domain.Datasets;
using SurgeryService.Domain.Jobs;
using SurgeryService.Domain.Models;
using SurgeryService.Domain.Surgery;
using SurgeryService.Infrastructure.Persistence;
using SurgeryService.Infrastructure.Tenants;

namespace SurgeryService.Infrastructure.Jobs;

/// <summary>Saves a job for the tenant and puts it on its Hangfire queue.</summary>
public sealed class SubmitJob(SurgeryDbContext db, JobQueuing queuing, ITenantAccessor tenant)
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
    /// Saves the job and enqueues it; accepted even when no worker serves <paramref name="queue"/> now (one may be starting:
    /// the job's standing warns of it, see <see cref="JobQueries.StandingsAsync"/>).
    /// </summary>
    public async Task<SurgeryJob> ExecuteAsync(ModelEntry model, DatasetEntry dataset, SurgerySettings settings,
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
        return job;
    }
}
