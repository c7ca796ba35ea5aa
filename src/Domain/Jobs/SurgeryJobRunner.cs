using Hangfire;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;
using SurgeryService.Domain.Artifacts;
using SurgeryService.Domain.Datasets;
using SurgeryService.Domain.Models;
using SurgeryService.Domain.Persistence;
using SurgeryService.Domain.Surgery;

namespace SurgeryService.Domain.Jobs;

/// <summary>Another worker runs the job right now; Hangfire retries later.</summary>
public sealed class JobBusyException(Guid jobId) : Exception($"job {jobId} is running on another worker");

/// <summary>
/// The Hangfire job: runs one surgery job from its stored model and data set, resuming from the job's last checkpoint
/// when an earlier attempt was lost. Safe to run twice: a finished job is left alone, and a PostgreSQL advisory lock
/// keeps two workers off the same job.
/// </summary>
public sealed class SurgeryJobRunner(SurgeryDbContext db, ArtifactStore artifacts, IOptions<JobOptions> options, TrainingThreads threads,
    ILogger<SurgeryJobRunner> logger)
{
    [AutomaticRetry(Attempts = 5, DelaysInSeconds = [10, 30, 60, 120, 300], OnAttemptsExceeded = AttemptsExceededAction.Fail)]
    [JobDisplayName("surgery job {0}")]
    public async Task RunAsync(Guid jobId, CancellationToken cancellationToken)
    {
        var job = await db.Jobs.SingleOrDefaultAsync(j => j.Id == jobId, CancellationToken.None);
        if (job is null || job.IsFinished)
        {
            logger.LogInformation("Job {JobId} is {State}: nothing to do", jobId, job?.State.ToString() ?? "gone");
            return;
        }

        var connectionString = db.Database.GetConnectionString()!;
        // Unpooled: closing it (or the process dying) ends the session and so releases the advisory lock at once.
        await using var lockConnection = new NpgsqlConnection(
            new NpgsqlConnectionStringBuilder(connectionString) { Pooling = false }.ConnectionString);
        await lockConnection.OpenAsync(CancellationToken.None);
        if (!await TryLockAsync(lockConnection, jobId)) throw new JobBusyException(jobId);

        await db.Entry(job).ReloadAsync(CancellationToken.None);
        if (job.IsFinished) return;
        if (job.CancelRequested)
        {
            await FinishAsync(job, JobState.Cancelled, null);
            return;
        }
        if (job.Attempts >= options.Value.MaxAttempts)
        {
            await FinishAsync(job, JobState.Failed,
                $"the job was started {job.Attempts} times without finishing (workers lost or crashed); last error: {job.Error ?? "none"}");
            return;
        }

        job.Attempts++;
        job.State = JobState.Running;
        job.StartedAt ??= DateTimeOffset.UtcNow;
        job.UpdatedAt = DateTimeOffset.UtcNow;
        job.ResumedFromIteration = job.CheckpointArtifactId is null ? null : job.CheckpointIteration;
        var resumeFrom = job.CheckpointArtifactId is null ? 0 : job.CheckpointIteration;
        job.Iteration = resumeFrom;
        // Rows past the checkpoint came from a lost attempt; the resumed run writes them again from the same state.
        await db.JobMetrics.Where(m => m.JobId == jobId && m.Iteration >= resumeFrom).ExecuteDeleteAsync(CancellationToken.None);
        await db.JobEvaluations.Where(e => e.JobId == jobId && e.Iteration > resumeFrom).ExecuteDeleteAsync(CancellationToken.None);
        await db.SaveChangesAsync(CancellationToken.None);
        logger.LogInformation("Job {JobId} attempt {Attempt} starts at iteration {Iteration}", jobId, job.Attempts, resumeFrom);

        try
        {
            await RunAttemptAsync(job, connectionString, cancellationToken);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // A clean hand-back (deploy, scale-in) is not a lost attempt: it does not count towards MaxAttempts.
            await db.Entry(job).ReloadAsync(CancellationToken.None);
            job.Attempts--;
            await db.SaveChangesAsync(CancellationToken.None);
            logger.LogInformation("Job {JobId} handed back at worker shutdown; it resumes from iteration {Iteration}",
                jobId, job.CheckpointIteration);
            throw;
        }
        catch (Exception e) when (e is SurgeryException or System.Runtime.InteropServices.ExternalException)
        {
            // The user's model, data or settings: running again would fail the same way.
            logger.LogWarning(e, "Job {JobId} failed", jobId);
            await FinishAsync(job, JobState.Failed, e.Message.Split('\n')[0]);
        }
        catch (Exception e)
        {
            logger.LogError(e, "Job {JobId} attempt {Attempt} failed unexpectedly", jobId, job.Attempts);
            await db.Entry(job).ReloadAsync(CancellationToken.None);
            job.Error = $"attempt {job.Attempts} failed: {e.Message}; retrying from the last checkpoint";
            await db.SaveChangesAsync(CancellationToken.None);
            throw;
        }
    }

    private async Task RunAttemptAsync(SurgeryJob job, string connectionString, CancellationToken shutdown)
    {
        var model = await db.Models.AsNoTracking().SingleOrDefaultAsync(m => m.Id == job.ModelId, shutdown)
            ?? throw new SurgeryException("Model missing", "the job's model was deleted before the job ran", 409);
        var dataset = await db.Datasets.AsNoTracking().SingleOrDefaultAsync(d => d.Id == job.DatasetId, shutdown)
            ?? throw new SurgeryException("Dataset missing", "the job's dataset was deleted before the job ran", 409);
        var modelBytes = await artifacts.ReadAllBytesAsync(model.ArtifactId, shutdown);
        byte[] datasetBytes;
        await using (var stream = await artifacts.OpenReadAsync(dataset.ArtifactId, shutdown))
        {
            datasetBytes = new byte[stream.Length];
            await stream.ReadExactlyAsync(datasetBytes, shutdown);
        }
        var checkpoint = job.CheckpointArtifactId is { } checkpointId
            ? await artifacts.ReadAllBytesAsync(checkpointId, shutdown)
            : null;

        await using var writer = new JobProgressWriter(connectionString, job.Id, job.TenantId, job.CheckpointArtifactId, options.Value);
        writer.Start();
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(shutdown, writer.CancelRequested, writer.Failed);
        var checkpointInterval = job.CheckpointInterval > 0 ? job.CheckpointInterval : options.Value.DefaultCheckpointInterval;

        // The engine runs synchronously on a thread of its own: TorchSharp's dispose scopes are thread-static.
        var result = await Task.Factory.StartNew(() =>
        {
            var observer = threads.Observe(writer, (count, why) =>
                logger.LogInformation("Job {JobId} trains with {Threads} LibTorch threads ({Why})", job.Id, count, why));
            using var loaded = ModelFormats.Load(modelBytes, model.Format, model.Architecture);
            using var raw = DatasetArchive.Read(new MemoryStream(datasetBytes));
            var (train, test) = JobInputs.Prepare(raw, dataset, job.Preprocessing, loaded.InputShape);
            using var _train = train;
            using var _test = test;
            using var trainer = new SurgeryTrainer(loaded.Module, loaded.Layers, job.Settings);
            if (checkpoint is not null) trainer.LoadCheckpoint(new MemoryStream(checkpoint));
            var outcome = trainer.Run(train, test, observer, checkpointInterval, stop.Token);
            if (outcome.Cancelled)
            {
                if (!writer.CancelRequested.IsCancellationRequested) writer.Checkpoint(trainer); // shutdown: keep the work
                return (outcome, Files: new List<(ResultFormat, string)>());
            }
            var files = new List<(ResultFormat, string)>();
            foreach (var (format, content) in ModelFormats.WriteResults(loaded, job.Settings, outcome))
            {
                var path = Path.GetTempFileName();
                File.WriteAllBytes(path, content);
                files.Add((format, path));
            }
            return (outcome, Files: files);
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);

        try
        {
            await writer.CompleteAsync();
            var (outcome, files) = result;
            if (outcome.Cancelled)
            {
                if (writer.CancelRequested.IsCancellationRequested)
                {
                    await FinishAsync(job, JobState.Cancelled, null);
                    return;
                }
                shutdown.ThrowIfCancellationRequested();
                throw new InvalidOperationException("the run stopped early without a cancel request or a shutdown");
            }
            await StoreResultsAsync(job, model, outcome, files);
        }
        finally
        {
            foreach (var (_, path) in result.Files) File.Delete(path);
        }
    }

    private async Task StoreResultsAsync(SurgeryJob job, ModelEntry model, SurgeryOutcome outcome, List<(ResultFormat Format, string Path)> files)
    {
        await using var transaction = await db.Database.BeginTransactionAsync(CancellationToken.None);
        await db.Entry(job).ReloadAsync(CancellationToken.None);
        var baseName = Path.GetFileNameWithoutExtension(model.Name);
        foreach (var (format, path) in files)
        {
            await using var file = File.OpenRead(path);
            var (extension, contentType) = format == ResultFormat.TorchSharp ? (".bin", "application/octet-stream") : (".onnx", "application/onnx");
            var suffix = format == ResultFormat.OnnxSparse ? "-sparse" : "";
            var artifact = await artifacts.SaveAsync(job.TenantId, ArtifactKind.Result, $"{baseName}-dns{suffix}{extension}",
                contentType, file, cancellationToken: CancellationToken.None);
            switch (format)
            {
                case ResultFormat.Onnx: job.ResultOnnxArtifactId = artifact.Id; break;
                case ResultFormat.OnnxSparse: job.ResultOnnxSparseArtifactId = artifact.Id; break;
                default: job.ResultTorchSharpArtifactId = artifact.Id; break;
            }
        }
        await db.JobLayerResults.Where(l => l.JobId == job.Id).ExecuteDeleteAsync(CancellationToken.None);
        db.JobLayerResults.AddRange(outcome.Layers.Select((l, i) => new JobLayerResult
        {
            JobId = job.Id,
            Layer = l.Layer,
            Order = i,
            Kind = l.Kind,
            Total = l.Total,
            Kept = l.Kept,
            PrunedTotal = l.PrunedTotal,
            SplicedTotal = l.SplicedTotal,
        }));
        job.Iteration = outcome.Iterations;
        job.Kept = outcome.Kept;
        job.Total = outcome.Total;
        if (outcome.Before is { } before) job.Top1Before ??= before.Top1;
        if (outcome.After is { } after)
        {
            job.Top1After = after.Top1;
            job.LastTop1 = after.Top1;
            job.LastTop5 = after.Top5;
        }
        job.State = JobState.Succeeded;
        job.Error = null;
        job.FinishedAt = DateTimeOffset.UtcNow;
        job.UpdatedAt = job.FinishedAt.Value;
        await db.SaveChangesAsync(CancellationToken.None);
        await transaction.CommitAsync(CancellationToken.None);
        logger.LogInformation("Job {JobId} succeeded: {Kept}/{Total} weights kept ({Compression:F1}x)",
            job.Id, outcome.Kept, outcome.Total, outcome.Compression);
    }

    private async Task FinishAsync(SurgeryJob job, JobState state, string? error)
    {
        await db.Entry(job).ReloadAsync(CancellationToken.None);
        job.State = state;
        job.Error = error is null ? null : error.Length > 4000 ? error[..4000] : error;
        job.FinishedAt = DateTimeOffset.UtcNow;
        job.UpdatedAt = job.FinishedAt.Value;
        await db.SaveChangesAsync(CancellationToken.None);
    }

    private static async Task<bool> TryLockAsync(NpgsqlConnection connection, Guid jobId)
    {
        await using var command = new NpgsqlCommand("SELECT pg_try_advisory_lock(@key)", connection);
        command.Parameters.AddWithValue("key", BitConverter.ToInt64(jobId.ToByteArray(), 8));
        return await command.ExecuteScalarAsync() is true;
    }
}
