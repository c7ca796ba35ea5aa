using Hangfire;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;
using SurgeryService.Domain;
using SurgeryService.Domain.Artifacts;
using SurgeryService.Domain.Datasets;
using SurgeryService.Domain.Jobs;
using SurgeryService.Domain.Models;
using SurgeryService.Domain.Surgery;
using SurgeryService.Domain.Deployment;
using SurgeryService.Domain.Torch;
using SurgeryService.Infrastructure.Artifacts;
using SurgeryService.Infrastructure.Deployment;
using SurgeryService.Infrastructure.Persistence;

namespace SurgeryService.Infrastructure.Jobs;

/// <summary>Another worker runs the job right now; Hangfire retries later.</summary>
public sealed class JobBusyException(Guid jobId) : Exception($"job {jobId} is running on another worker");

/// <summary>
/// The Hangfire job: runs one surgery job from its stored model and data set, resuming from the job's last checkpoint
/// when an earlier attempt was lost. Safe to run twice: a finished job is left alone, and a PostgreSQL advisory lock
/// keeps two workers off the same job. Every change of the job's state goes through a method of
/// <see cref="SurgeryJob"/>, saved with <see cref="TransitionAsync"/>.
/// </summary>
public sealed class SurgeryJobRunner(SurgeryDbContext db, ArtifactStore artifacts, IOptions<JobOptions> options, TrainingThreads threads,
    ILogger<SurgeryJobRunner> logger)
{
    /// <summary>
    /// The one retry policy: a job started this many times without finishing (workers lost, attempts that crashed) is
    /// failed. Each start counts (<see cref="SurgeryJob.Attempts"/>); Hangfire retries a crashed attempt as often, so the
    /// start after the last one is the run that fails the job, with its last error.
    /// </summary>
    public const int MaxAttempts = 5;

    /// <summary>Times a transition is reloaded and applied again when another process changed the job meanwhile.</summary>
    private const int MaxConflicts = 5;

    [AutomaticRetry(Attempts = MaxAttempts, DelaysInSeconds = [10, 30, 60, 120, 300], OnAttemptsExceeded = AttemptsExceededAction.Fail)]
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

        var resumeFrom = 0;
        await TransitionAsync(job, j =>
        {
            if (j.CancelRequested) j.Cancel(DateTimeOffset.UtcNow);
            else if (j.Attempts >= MaxAttempts)
            {
                j.Fail($"the job was started {j.Attempts} times without finishing (workers lost or crashed); last error: {j.Error ?? "none"}",
                    DateTimeOffset.UtcNow);
            }
            else resumeFrom = j.StartAttempt(DateTimeOffset.UtcNow);
        });
        if (job.IsFinished) return;
        // Rows past the checkpoint came from a lost attempt; the resumed run writes them again from the same state.
        await db.JobMetrics.Where(m => m.JobId == jobId && m.Iteration >= resumeFrom).ExecuteDeleteAsync(CancellationToken.None);
        await db.JobEvaluations.Where(e => e.JobId == jobId && e.Iteration > resumeFrom).ExecuteDeleteAsync(CancellationToken.None);
        var eventsBefore = job.CheckpointArtifactId is null ? 0 : job.CheckpointEvents;
        await db.JobEvents.Where(e => e.JobId == jobId && e.Sequence >= eventsBefore).ExecuteDeleteAsync(CancellationToken.None);
        logger.LogInformation("Job {JobId} attempt {Attempt} starts at iteration {Iteration}", jobId, job.Attempts, resumeFrom);

        try
        {
            await RunAttemptAsync(job, connectionString, cancellationToken);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // A clean hand-back (deploy, scale-in) is not a lost attempt: it does not count towards MaxAttempts.
            await TransitionAsync(job, j => j.HandBack(DateTimeOffset.UtcNow));
            logger.LogInformation("Job {JobId} handed back at worker shutdown; it resumes from iteration {Iteration}",
                jobId, job.CheckpointIteration);
            throw;
        }
        // LibTorch's errors are ExternalExceptions, and so are Npgsql's: a lost database is not the user's input, it is retried.
        catch (Exception e) when (e is SurgeryException or System.Runtime.InteropServices.ExternalException and not System.Data.Common.DbException)
        {
            // The user's model, data or settings: running again would fail the same way.
            logger.LogWarning(e, "Job {JobId} failed", jobId);
            await TransitionAsync(job, j => j.Fail(e.Message.Split('\n')[0], DateTimeOffset.UtcNow));
        }
        catch (Exception e)
        {
            logger.LogError(e, "Job {JobId} attempt {Attempt} failed unexpectedly", jobId, job.Attempts);
            await TransitionAsync(job, j => j.AttemptFailed(e.Message, DateTimeOffset.UtcNow));
            throw;
        }
        finally
        {
            // This runs as the attempt's continuation, inline, while the attempt's finished state machine still holds the
            // model's and the dataset's bytes (cleared only once its frame unwinds): 759 MB were live here after a VGG11-BN
            // job. Yielding lets the frame unwind first; then the attempt's model, data, trainer and snapshots are
            // unreachable, and an idle worker goes back to its baseline.
            await Task.Yield();
            ProcessMemory.Release();
            logger.LogInformation("Job {JobId}: memory released, worker resident {ResidentMb} MB (peak {PeakMb} MB); {Account}", jobId,
                ProcessMemory.ResidentBytes() / (1 << 20), ProcessMemory.PeakResidentBytes() / (1 << 20), ProcessMemory.Account());
        }
    }

    private async Task RunAttemptAsync(SurgeryJob job, string connectionString, CancellationToken shutdown)
    {
        var model = await db.Models.AsNoTracking().SingleOrDefaultAsync(m => m.Id == job.ModelId, shutdown)
            ?? throw new SurgeryException("Model missing", "the job's model was deleted before the job ran", ErrorKind.Conflict);
        var dataset = await db.Datasets.AsNoTracking().SingleOrDefaultAsync(d => d.Id == job.DatasetId, shutdown)
            ?? throw new SurgeryException("Dataset missing", "the job's dataset was deleted before the job ran", ErrorKind.Conflict);
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

        // A sensitivity job's steps are layers, which the pace counts from its analysis; training jobs count iterations.
        var pace = new JobPace(job.Kind is SensitivityJob ? 0 : job.TotalIterations, job.Iteration, job.Settings.BatchSize, TimeProvider.System)
        {
            Deadline = job.Kind is BudgetJob { Target.MaxMinutes: { } minutes } && job.StartedAt is { } started ? started.AddMinutes(minutes) : null,
        };
        await using var writer = new JobProgressWriter(connectionString, job.Id, job.TenantId, job.CheckpointArtifactId, options.Value,
            job.CheckpointArtifactId is null ? 0 : job.CheckpointEvents, evaluatesOnValidation: job.Kind is BudgetJob, pace);
        writer.Start();
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(shutdown, writer.CancelRequested, writer.Failed);
        var checkpointInterval = job.CheckpointInterval > 0 ? job.CheckpointInterval : options.Value.DefaultCheckpointInterval;

        // When the engine handed over its delivered model, and when its files were written: with the last iteration's
        // time and the stored results', the log says where the time after the last iteration went.
        long delivering = 0, exported = 0;

        // The engine runs synchronously on a thread of its own: TorchSharp's dispose scopes are thread-static.
        var result = await Task.Factory.StartNew(() =>
        {
            var observer = threads.Observe(writer, job.TotalIterations - job.Iteration, (count, why) =>
                logger.LogInformation("Job {JobId} trains with {Threads} LibTorch threads ({Why})", job.Id, count, why));
            using var loaded = ModelFormats.Load(modelBytes, model.Format, model.Architecture);
            using var raw = DatasetArchive.Read(new MemoryStream(datasetBytes));
            using var samples = JobInputs.Prepare(raw, dataset, job.Preprocessing, loaded.InputShape);
            using var trainer = new SurgeryTrainer(loaded.Module, loaded.Layers, job.Settings);
            return job.Kind switch
            {
                SensitivityJob sensitivity =>
                    RunSensitivity(trainer, sensitivity.Sensitivity, samples, observer, writer, stop.Token) is { } report
                        ? new Attempt.Analysed(report)
                        : new Attempt.Stopped(),
                BudgetJob budget => RunBudget(budget),
                // Fixed mode holds no validation split out: int8 is checked on the test split against the pruned float model.
                _ => Delivered(RunFixed(trainer, samples.Train, samples.Test, checkpoint, observer, checkpointInterval, stop.Token),
                    samples.Train, _ => new Int8Budget("test", samples.Test, null, new SurgeryTarget().MaxAccuracyDrop)),
            };

            Attempt RunBudget(BudgetJob budget)
            {
                using var split = BudgetSplit.Of(budget, samples);
                var run = RunBudgetSearch(trainer, budget, split, checkpoint, job.StartedAt, observer, checkpointInterval, stop.Token);
                if (run.Outcome.Search?.ValidationSplit == ValidationSplit.TestHalf)
                {
                    // The model had seen its validation samples, so the search validated on half of the test split (the
                    // same seeded half): int8 is checked there too, against the starting model's top-1 on that half.
                    var (rest, half) = samples.Test.Split((int)(samples.Test.Count / 2), SurgeryTarget.ValidationSplitSeed);
                    using var _rest = rest;
                    using var _half = half;
                    return Delivered(run, split.Fit, outcome => new Int8Budget("validation (test half)", half,
                        outcome.Search?.ValidationTop1Before, budget.Target.MaxAccuracyDrop));
                }
                return Delivered(run, split.Fit, outcome => new Int8Budget("validation", split.Validation,
                    outcome.Search?.ValidationTop1Before, budget.Target.MaxAccuracyDrop));
            }

            Attempt Delivered(RunResult run, TensorDataset calibration, Func<SurgeryOutcome, Int8Budget> int8Budget)
            {
                if (run.Outcome.Cancelled)
                {
                    if (!writer.CancelRequested.IsCancellationRequested) writer.Checkpoint(run.Source); // shutdown: keep the work
                    return new Attempt.Stopped();
                }
                delivering = TimeProvider.System.GetTimestamp();
                writer.OnPhase(new PhaseUpdate(RunPhase.Exporting));
                // Each result streams into a temporary file as it is written: a large model's files are never whole
                // arrays in memory (the int8 step, asked for small models, reads the two it needs back).
                var files = new List<(ResultFormat Format, string Path)>();
                string TemporaryFile(ResultFormat format)
                {
                    var path = Path.GetTempFileName();
                    files.Add((format, path));
                    return path;
                }
                JobDeployment? deployment = null;
                try
                {
                    ModelFormats.WriteResults(loaded, job.Settings, run.Outcome,
                        format => new FileStream(TemporaryFile(format), FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20));
                    if (job.Output.Quantize == Quantization.Int8)
                    {
                        var fp32 = files.ToDictionary(f => f.Format, f => File.ReadAllBytes(f.Path));
                        var int8 = Int8Delivery.Run(modelBytes, fp32[ResultFormat.Onnx], fp32[ResultFormat.OnnxSparse], calibration,
                            options.Value.Int8CalibrationSamples, int8Budget(run.Outcome), samples.Test,
                            new LatencySettings(options.Value.DeploymentThreads, options.Value.DeploymentWarmupRuns, options.Value.DeploymentRuns),
                            line =>
                            {
                                logger.LogInformation("Job {JobId} {Deployment}", job.Id, line);
                                writer.OnEvent(new SurgeryEvent(run.Outcome.Iterations, SurgeryEventKind.Deployment, line));
                            });
                        if (int8.Int8 is { } delivered) File.WriteAllBytes(TemporaryFile(ResultFormat.OnnxInt8), delivered);
                        deployment = int8.Deployment;
                    }
                }
                catch
                {
                    foreach (var (_, path) in files) File.Delete(path);
                    throw;
                }
                exported = TimeProvider.System.GetTimestamp();
                return new Attempt.Trained(run.Outcome, files, deployment);
            }
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);

        try
        {
            await writer.CompleteAsync();
            switch (result)
            {
                case Attempt.Stopped when writer.CancelRequested.IsCancellationRequested:
                    await TransitionAsync(job, j => j.Cancel(DateTimeOffset.UtcNow));
                    return;
                case Attempt.Stopped:
                    shutdown.ThrowIfCancellationRequested();
                    throw new InvalidOperationException("the run stopped early without a cancel request or a shutdown");
                case Attempt.Analysed(var report):
                    if (await TransitionAsync(job, j => j.SucceedAnalysis(report, DateTimeOffset.UtcNow)))
                    {
                        logger.LogInformation("Job {JobId} succeeded: sensitivity of {Layers} layers", job.Id, report.Curves.Count);
                    }
                    return;
                case Attempt.Trained(var outcome, var files, var deployment):
                    await StoreResultsAsync(job, model, outcome, files, deployment);
                    if (pace.LastIterationTimestamp is { } last && last < delivering)
                    {
                        var clock = TimeProvider.System;
                        logger.LogInformation(
                            "Job {JobId} after its last iteration: {Total:F1} s to its results: {Final:F1} s of final evaluations " +
                            "and delivery in the engine, {Export:F1} s of export (and int8 when asked), {Store:F1} s storing",
                            job.Id, clock.GetElapsedTime(last).TotalSeconds, clock.GetElapsedTime(last, delivering).TotalSeconds,
                            clock.GetElapsedTime(delivering, exported).TotalSeconds, clock.GetElapsedTime(exported).TotalSeconds);
                    }
                    return;
            }
        }
        finally
        {
            if (result is Attempt.Trained trained)
            {
                foreach (var (_, path) in trained.Files) File.Delete(path);
            }
        }
    }

    /// <summary>What an attempt produced: nothing (cancelled or handed back), a sensitivity report, or a trained model's files.</summary>
    private abstract record Attempt
    {
        public sealed record Stopped : Attempt;

        public sealed record Analysed(SensitivityReport Report) : Attempt;

        public sealed record Trained(SurgeryOutcome Outcome, List<(ResultFormat Format, string Path)> Files, JobDeployment? Deployment) : Attempt;
    }

    /// <summary>
    /// A sensitivity-only job: it measures on the dataset's own validation split, or else on samples held out of the
    /// training samples exactly as in budget mode (same seed), so its curves describe the samples a budget job on the
    /// dataset would validate on. Progress counts layers. Nothing is checkpointed: a resumed attempt measures again from
    /// the first layer.
    /// </summary>
    private static SensitivityReport? RunSensitivity(SurgeryTrainer trainer, SensitivitySettings sensitivity, JobSamples samples,
        ISurgeryObserver observer, JobProgressWriter writer, CancellationToken stop)
    {
        if (samples.Validation is { } own)
        {
            observer.OnSplits(new EvaluationSplits(ValidationSplit.Dataset, own.Count, TestSplit.Whole, samples.Test.Count));
            return Sensitivity.Measure(trainer, own, samples.Test, observer, writer.Progress, stop);
        }
        var train = samples.Train;
        if (train.Count < 2)
        {
            throw new SurgeryException("Bad dataset", "a sensitivity analysis needs at least 2 training samples to hold a validation split out of");
        }
        var (rest, validation) = train.Split(SurgeryTarget.ValidationCount(sensitivity.Validation, train.Count), SurgeryTarget.ValidationSplitSeed);
        using var _rest = rest;
        using var _validation = validation;
        observer.OnSplits(new EvaluationSplits(ValidationSplit.TrainingHoldout, validation.Count, TestSplit.Whole, samples.Test.Count));
        return Sensitivity.Measure(trainer, validation, samples.Test, observer, writer.Progress, stop);
    }

    /// <summary>The paper's fixed thresholds (the job names cRates).</summary>
    private static RunResult RunFixed(SurgeryTrainer trainer, TensorDataset train, TensorDataset test, byte[]? checkpoint,
        ISurgeryObserver observer, int checkpointInterval, CancellationToken stop)
    {
        if (checkpoint is not null) trainer.LoadCheckpoint(new MemoryStream(checkpoint));
        return new RunResult(trainer.Run(train, test, observer, checkpointInterval, stop), trainer);
    }

    /// <summary>
    /// Budget mode: the search validates on the dataset's own validation split, or else on samples held out of the
    /// training samples (the same samples for every job on the dataset) and never trained on; it picks the thresholds.
    /// A time budget counts from the job's first start, <paramref name="startedAt"/>.
    /// </summary>
    private static RunResult RunBudgetSearch(SurgeryTrainer trainer, BudgetJob budget, BudgetSplit split,
        byte[]? checkpoint, DateTimeOffset? startedAt, ISurgeryObserver observer, int checkpointInterval, CancellationToken stop)
    {
        var search = new BudgetSearch(trainer, budget.Settings, budget.Target) { ValidationSource = split.Source, StartedAt = startedAt };
        if (checkpoint is not null) search.LoadCheckpoint(new MemoryStream(checkpoint));
        return new RunResult(search.Run(split.Fit, split.Validation, split.Test, observer, checkpointInterval, stop), search);
    }

    /// <summary>
    /// What a budget job fits on and validates on: the dataset's own validation split, or else samples held out of the
    /// training samples with a fixed seed (owned here, and disposed with the split). The int8 check uses the same split.
    /// </summary>
    private sealed class BudgetSplit : IDisposable
    {
        private readonly bool owned;

        private BudgetSplit(TensorDataset fit, TensorDataset validation, TensorDataset test, ValidationSplit source, bool owned)
        {
            (Fit, Validation, Test, Source, this.owned) = (fit, validation, test, source, owned);
        }

        public TensorDataset Fit { get; }

        public TensorDataset Validation { get; }

        public TensorDataset Test { get; }

        public ValidationSplit Source { get; }

        public static BudgetSplit Of(BudgetJob budget, JobSamples samples)
        {
            if (samples.Validation is { } own) return new BudgetSplit(samples.Train, own, samples.Test, ValidationSplit.Dataset, owned: false);
            var train = samples.Train;
            if (train.Count < 2)
            {
                throw new SurgeryException("Bad dataset", "budget mode needs at least 2 training samples: one to train on and one to validate on");
            }
            var (fit, validation) = train.Split(budget.Target.ValidationCount(train.Count), SurgeryTarget.ValidationSplitSeed);
            return new BudgetSplit(fit, validation, samples.Test, ValidationSplit.TrainingHoldout, owned: true);
        }

        public void Dispose()
        {
            if (!owned) return;
            Fit.Dispose();
            Validation.Dispose();
        }
    }

    /// <summary>A run's outcome and what can checkpoint it (the trainer, or the search around it).</summary>
    private sealed record RunResult(SurgeryOutcome Outcome, ICheckpointSource Source);

    private async Task StoreResultsAsync(SurgeryJob job, ModelEntry model, SurgeryOutcome outcome, List<(ResultFormat Format, string Path)> files,
        JobDeployment? deployment)
    {
        await using var transaction = await db.Database.BeginTransactionAsync(CancellationToken.None);
        var baseName = Path.GetFileNameWithoutExtension(model.Name);
        var method = job.Settings.Method.Name();
        var results = new Dictionary<ResultFormat, Guid>();
        foreach (var (format, path) in files)
        {
            await using var file = File.OpenRead(path);
            var (extension, contentType) = format == ResultFormat.TorchSharp ? (".bin", "application/octet-stream") : (".onnx", "application/onnx");
            var suffix = format switch { ResultFormat.OnnxSparse => "-sparse", ResultFormat.OnnxInt8 => "-int8", _ => "" };
            var artifact = await artifacts.SaveAsync(job.TenantId, ArtifactKind.Result, $"{baseName}-{method}{suffix}{extension}",
                contentType, file, cancellationToken: CancellationToken.None);
            results[format] = artifact.Id;
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
        if (!await TransitionAsync(job, j => j.Succeed(outcome, results, DateTimeOffset.UtcNow, deployment)))
        {
            return; // finished meanwhile by another writer: the transaction (with the result files) is rolled back
        }
        await transaction.CommitAsync(CancellationToken.None);
        logger.LogInformation("Job {JobId} succeeded: {Kept}/{Total} weights kept ({Compression:F1}x)",
            job.Id, outcome.Kept, outcome.Total, outcome.Compression);
    }

    /// <summary>
    /// Applies <paramref name="transition"/> to the job as the database holds it now and saves it. When another process
    /// (the Api's cancel, a progress write) changed the row since it was read, the save fails on the xmin token and the
    /// transition is decided again on the reloaded row. Returns false, saving nothing, when the job has finished meanwhile.
    /// </summary>
    private async Task<bool> TransitionAsync(SurgeryJob job, Action<SurgeryJob> transition)
    {
        for (var conflicts = 0; ; conflicts++)
        {
            await db.Entry(job).ReloadAsync(CancellationToken.None);
            if (job.IsFinished) return false;
            transition(job);
            try
            {
                await db.SaveChangesAsync(CancellationToken.None);
                return true;
            }
            catch (DbUpdateConcurrencyException) when (conflicts < MaxConflicts)
            {
                logger.LogInformation("Job {JobId} changed while this worker wrote it; reading it again", job.Id);
            }
        }
    }

    private static async Task<bool> TryLockAsync(NpgsqlConnection connection, Guid jobId)
    {
        await using var command = new NpgsqlCommand("SELECT pg_try_advisory_lock(@key)", connection);
        command.Parameters.AddWithValue("key", BitConverter.ToInt64(jobId.ToByteArray(), 8));
        return await command.ExecuteScalarAsync() is true;
    }
}
