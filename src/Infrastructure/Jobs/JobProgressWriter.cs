using System.Diagnostics;
using System.Threading.Channels;
using Npgsql;
using NpgsqlTypes;
using SurgeryService.Domain;
using SurgeryService.Domain.Artifacts;
using SurgeryService.Domain.Jobs;
using SurgeryService.Domain.Surgery;
using SurgeryService.Infrastructure.Artifacts;

namespace SurgeryService.Infrastructure.Jobs;

/// <summary>
/// The engine's observer for a job. The training thread only enqueues; one background loop writes the queue in order:
/// metric rows in batches (binary COPY into a staging table, then INSERT .. ON CONFLICT DO NOTHING so a replayed
/// iteration can never appear twice), evaluations, the job's progress fields (phase, and the finish <see cref="JobPace"/>
/// estimates), and checkpoints, each checkpoint only
/// after every metric before it. Each write also reads the job's cancel flag. It writes progress only, never the job's
/// state, and only while the job is Running: a write that finds the job in another state (finished by another writer)
/// writes nothing and stops the run like a cancel. Every write changes the row's xmin, so an EF writer holding an older
/// copy of the job reloads before its transition (see <c>SurgeryJobConfiguration</c>).
/// </summary>
public sealed class JobProgressWriter : ISurgeryObserver, IAsyncDisposable
{
    private readonly Channel<object> _queue = Channel.CreateUnbounded<object>(new UnboundedChannelOptions { SingleReader = true });
    private readonly string _connectionString;
    private readonly Guid _jobId;
    private readonly string _tenantId;
    private readonly JobOptions _options;
    private readonly CancellationTokenSource _cancelRequested = new();
    private readonly CancellationTokenSource _failed = new();
    private readonly List<IterationMetrics> _metrics = [];
    private readonly List<EvaluationMetrics> _evaluations = [];
    private readonly List<(int Sequence, SurgeryEvent Event)> _events = [];
    private readonly bool _evaluatesOnValidation;
    private readonly JobPace? _pace;
    private int _nextEvent;
    private Guid? _checkpointArtifactId;
    private int? _progress;
    private int _checkpointSequence;
    private CheckpointData? _pendingCheckpoint;
    private PhaseUpdate? _phase;
    private double? _deliverable;
    private EvaluationSplits? _splits;
    private IReadOnlyList<string>? _layerNames;
    private long[]? _layerTotals;
    private Task? _loop;

    /// <summary>
    /// Events the job kept from before its checkpoint are <paramref name="eventsBefore"/>; new ones are numbered after them.
    /// The engine's evaluations are on the validation split when <paramref name="evaluatesOnValidation"/> (budget mode),
    /// otherwise on the test split; <paramref name="pace"/>, when given, estimates the finish.
    /// </summary>
    public JobProgressWriter(string connectionString, Guid jobId, string tenantId, Guid? checkpointArtifactId, JobOptions options,
        int eventsBefore = 0, bool evaluatesOnValidation = false, JobPace? pace = null)
    {
        _evaluatesOnValidation = evaluatesOnValidation;
        _pace = pace;
        _nextEvent = eventsBefore;
        _connectionString = connectionString;
        _jobId = jobId;
        _tenantId = tenantId;
        _checkpointArtifactId = checkpointArtifactId;
        _options = options;
    }

    /// <summary>Cancelled once the job's cancel flag is seen set in the database, or the job is seen no longer running.</summary>
    public CancellationToken CancelRequested => _cancelRequested.Token;

    /// <summary>Cancelled when writing fails (database lost): training stops, the attempt fails and is retried from its checkpoint.</summary>
    public CancellationToken Failed => _failed.Token;

    public void Start() => _loop = Task.Run(async () =>
    {
        try
        {
            await WriteLoopAsync();
        }
        catch
        {
            _failed.Cancel();
            throw;
        }
    });

    public void OnIteration(IterationMetrics metrics)
    {
        _pace?.OnIteration(metrics.Iteration);
        _queue.Writer.TryWrite(metrics);
    }

    public void OnEvaluation(EvaluationMetrics metrics) => _queue.Writer.TryWrite(metrics);

    public void OnEvent(SurgeryEvent surgeryEvent) => _queue.Writer.TryWrite(surgeryEvent);

    public void OnPhase(PhaseUpdate phase)
    {
        _pace?.OnPhase(phase);
        _queue.Writer.TryWrite(phase);
    }

    public void OnDeliverable(double compression) => _queue.Writer.TryWrite(new DeliverableData(compression));

    public void OnSplits(EvaluationSplits splits)
    {
        _pace?.OnSplits(splits);
        _queue.Writer.TryWrite(splits);
    }

    public void OnCheckpointDue(ICheckpointSource source) => Checkpoint(source);

    /// <summary>Progress of a job that does not train (a sensitivity analysis): <paramref name="done"/> steps of its total.</summary>
    public void Progress(int done) => _queue.Writer.TryWrite(new ProgressData(done));

    /// <summary>
    /// Snapshots the run now (on the training thread) into a temporary file, which is stored after the metrics before it.
    /// Only the newest checkpoint waits: one that the write loop has not taken when the next is due is deleted unwritten,
    /// so a slow database never holds several snapshots of the training state (a budget search's checkpoint carries three).
    /// </summary>
    public void Checkpoint(ICheckpointSource source)
    {
        var path = Path.GetTempFileName();
        try
        {
            using var file = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, bufferSize: 1 << 20);
            source.SaveCheckpoint(file);
        }
        catch
        {
            File.Delete(path);
            throw;
        }
        var checkpoint = new CheckpointData(++_checkpointSequence, source.Iteration, path);
        if (Interlocked.Exchange(ref _pendingCheckpoint, checkpoint) is { } superseded) File.Delete(superseded.Path);
        _queue.Writer.TryWrite(new CheckpointDue(checkpoint.Sequence));
    }

    /// <summary>The pending checkpoint when it is the one <paramref name="due"/> announced; it is then the caller's to delete.</summary>
    private CheckpointData? TakeCheckpoint(CheckpointDue due)
    {
        var pending = Volatile.Read(ref _pendingCheckpoint);
        return pending?.Sequence == due.Sequence && Interlocked.CompareExchange(ref _pendingCheckpoint, null, pending) == pending
            ? pending
            : null; // superseded: a newer checkpoint is announced later in the queue, after the metrics before it
    }

    /// <summary>Writes everything still queued and stops; rethrows a failure of the write loop.</summary>
    public async Task CompleteAsync()
    {
        _queue.Writer.TryComplete();
        if (_loop is not null) await _loop;
    }

    public async ValueTask DisposeAsync()
    {
        _queue.Writer.TryComplete();
        if (_loop is not null)
        {
            try { await _loop; } catch { /* already reported by CompleteAsync, or the job is failing anyway */ }
        }
        if (Interlocked.Exchange(ref _pendingCheckpoint, null) is { } unwritten) File.Delete(unwritten.Path);
        _cancelRequested.Dispose();
        _failed.Dispose();
    }

    /// <summary>A checkpoint's file, numbered in the order they were taken.</summary>
    private sealed record CheckpointData(int Sequence, int Iteration, string Path);

    private sealed record CheckpointDue(int Sequence);

    private sealed record ProgressData(int Done);

    private sealed record DeliverableData(double Compression);

    /// <summary>How the jobs table stores <see cref="JobState.Running"/> (the state column holds the enum's name).</summary>
    private static readonly string Running = nameof(JobState.Running);

    private async Task WriteLoopAsync()
    {
        await using var connection = new NpgsqlConnection(_connectionString);
        await connection.OpenAsync();
        await using (var staging = new NpgsqlCommand(
            "CREATE TEMP TABLE metric_staging (LIKE job_metrics) ON COMMIT DELETE ROWS", connection))
        {
            await staging.ExecuteNonQueryAsync();
        }

        var interval = TimeSpan.FromMilliseconds(_options.FlushIntervalMilliseconds);
        var sinceFlush = Stopwatch.StartNew();
        var open = true;
        while (open)
        {
            using (var wait = new CancellationTokenSource(interval))
            {
                try
                {
                    open = await _queue.Reader.WaitToReadAsync(wait.Token);
                }
                catch (OperationCanceledException)
                {
                    // Nothing arrived within the interval: still write progress and read the cancel flag below.
                }
            }
            while (_queue.Reader.TryRead(out var item))
            {
                switch (item)
                {
                    case IterationMetrics metrics:
                        _metrics.Add(metrics);
                        if (_metrics.Count >= _options.MetricBatchSize) await FlushAsync(connection);
                        break;
                    case EvaluationMetrics evaluation:
                        _evaluations.Add(evaluation);
                        break;
                    case SurgeryEvent surgeryEvent:
                        _events.Add((_nextEvent++, surgeryEvent));
                        break;
                    case ProgressData progress:
                        _progress = progress.Done;
                        break;
                    case PhaseUpdate phase:
                        _phase = phase;
                        break;
                    case DeliverableData deliverable:
                        _deliverable = deliverable.Compression;
                        break;
                    case EvaluationSplits splits:
                        _splits = splits;
                        break;
                    case CheckpointDue due when TakeCheckpoint(due) is { } checkpoint:
                        try
                        {
                            await FlushAsync(connection);
                            await WriteCheckpointAsync(connection, checkpoint);
                        }
                        finally
                        {
                            File.Delete(checkpoint.Path);
                        }
                        break;
                }
            }
            if (!open || sinceFlush.Elapsed >= interval)
            {
                await FlushAsync(connection);
                sinceFlush.Restart();
            }
        }
    }

    /// <summary>Metric rows, copied into a staging table <c>LIKE job_metrics</c> and moved on with <c>SELECT *</c>: every column.</summary>
    internal const string CopyMetrics = """
        COPY metric_staging ("JobId", "Iteration", "Loss", "LearningRate", "Kept", "Total", "LayerKept", "LayerPruned", "LayerSpliced")
        FROM STDIN (FORMAT BINARY)
        """;

    internal const string InsertEvaluations = """
        INSERT INTO job_evaluations ("JobId", "Iteration", "Loss", "Top1", "Top5")
        SELECT @job, e.* FROM unnest(@iteration, @loss, @top1, @top5) AS e
        ON CONFLICT DO NOTHING
        """;

    internal const string InsertEvents = """
        INSERT INTO job_events ("JobId", "Sequence", "Iteration", "Kind", "Message", "CreatedAt")
        SELECT @job, e.*, now() FROM unnest(@sequence, @iteration, @kind, @message) AS e
        ON CONFLICT DO NOTHING
        """;

    internal const string UpdateProgress = """
        UPDATE jobs SET
            "Iteration" = COALESCE(@iteration, "Iteration"),
            "Loss" = COALESCE(@loss, "Loss"),
            "Kept" = COALESCE(@kept, "Kept"),
            "Total" = COALESCE(@total, "Total"),
            "StageCompression" = COALESCE(@stage, "StageCompression"),
            "ValidationTop1" = COALESCE(@validationTop1, "ValidationTop1"),
            "ValidationTop1Before" = COALESCE("ValidationTop1Before", @validationBefore),
            "TestTop1" = COALESCE(@testTop1, "TestTop1"),
            "TestTop5" = COALESCE(@testTop5, "TestTop5"),
            "TestTop1Before" = COALESCE("TestTop1Before", @testBefore),
            "ValidationSplit" = COALESCE(@validationSplit, "ValidationSplit"),
            "ValidationSamples" = COALESCE(@validationSamples, "ValidationSamples"),
            "TestSplit" = COALESCE(@testSplit, "TestSplit"),
            "TestSamples" = COALESCE(@testSamples, "TestSamples"),
            "Phase" = COALESCE(@phase, "Phase"),
            "PhaseStep" = COALESCE(@phaseStep, "PhaseStep"),
            "PhaseSteps" = COALESCE(@phaseSteps, "PhaseSteps"),
            "BestCompression" = COALESCE(@best, "BestCompression"),
            "EstimatedFinishAt" = @finish,
            "LayerNames" = COALESCE(@layers, "LayerNames"),
            "LayerTotals" = COALESCE(@totals, "LayerTotals"),
            "UpdatedAt" = now()
        WHERE "Id" = @id AND "State" = @running
        RETURNING "CancelRequested"
        """;

    internal const string UpdateCheckpoint = """
        UPDATE jobs SET "CheckpointArtifactId" = @artifact, "CheckpointIteration" = @iteration, "CheckpointEvents" = @events
        WHERE "Id" = @id AND "State" = @running
        """;

    /// <summary>
    /// The SQL this writer sends past EF, with the table each statement writes and whether it writes whole rows (then it
    /// names every column). The schema is EF's: a test holds the column names here against the EF model.
    /// </summary>
    public static IReadOnlyList<(string Table, string Sql, bool WholeRows)> Statements { get; } =
    [
        ("job_metrics", CopyMetrics, true),
        ("job_evaluations", InsertEvaluations, true),
        ("job_events", InsertEvents, true),
        ("jobs", UpdateProgress, false),
        ("jobs", UpdateCheckpoint, false),
    ];

    /// <summary>One transaction: the batched metrics, evaluations and events, then the job's progress fields.</summary>
    private async Task FlushAsync(NpgsqlConnection connection)
    {
        await using var transaction = await connection.BeginTransactionAsync();
        if (_metrics.Count > 0) await WriteMetricsAsync(connection, transaction);
        if (_evaluations.Count > 0) await WriteEvaluationsAsync(connection, transaction);
        if (_events.Count > 0) await WriteEventsAsync(connection, transaction);
        switch (await UpdateProgressAsync(connection, transaction))
        {
            case null:
                // No longer running: another writer finished the job. Nothing of this batch belongs to it any more.
                await transaction.RollbackAsync();
                ClearBatch();
                _cancelRequested.Cancel();
                return;
            case true:
                _cancelRequested.Cancel();
                break;
        }
        await transaction.CommitAsync();
        ClearBatch();
    }

    private void ClearBatch()
    {
        _metrics.Clear();
        _evaluations.Clear();
        _events.Clear();
    }

    private async Task WriteMetricsAsync(NpgsqlConnection connection, NpgsqlTransaction transaction)
    {
        _layerNames ??= _metrics[0].Layers.Select(l => l.Layer).ToList();
        _layerTotals ??= _metrics[0].Layers.Select(l => l.Total).ToArray();
        await using (var import = await connection.BeginBinaryImportAsync(CopyMetrics))
        {
            foreach (var m in _metrics)
            {
                await import.StartRowAsync();
                await import.WriteAsync(_jobId, NpgsqlDbType.Uuid);
                await import.WriteAsync(m.Iteration, NpgsqlDbType.Integer);
                await import.WriteAsync(m.Loss, NpgsqlDbType.Double);
                await import.WriteAsync(m.LearningRate, NpgsqlDbType.Double);
                await import.WriteAsync(m.Kept, NpgsqlDbType.Bigint);
                await import.WriteAsync(m.Total, NpgsqlDbType.Bigint);
                await import.WriteAsync(m.Layers.Select(l => l.Kept).ToArray(), NpgsqlDbType.Array | NpgsqlDbType.Bigint);
                await import.WriteAsync(m.Layers.Select(l => l.Pruned).ToArray(), NpgsqlDbType.Array | NpgsqlDbType.Bigint);
                await import.WriteAsync(m.Layers.Select(l => l.Spliced).ToArray(), NpgsqlDbType.Array | NpgsqlDbType.Bigint);
            }
            await import.CompleteAsync();
        }
        await using var insert = new NpgsqlCommand(
            "INSERT INTO job_metrics SELECT * FROM metric_staging ON CONFLICT DO NOTHING", connection, transaction);
        await insert.ExecuteNonQueryAsync();
    }

    private async Task WriteEvaluationsAsync(NpgsqlConnection connection, NpgsqlTransaction transaction)
    {
        await using var insert = new NpgsqlCommand(InsertEvaluations, connection, transaction);
        insert.Parameters.AddWithValue("job", _jobId);
        insert.Parameters.AddWithValue("iteration", _evaluations.Select(e => e.Iteration).ToArray());
        insert.Parameters.AddWithValue("loss", _evaluations.Select(e => e.Loss).ToArray());
        insert.Parameters.AddWithValue("top1", _evaluations.Select(e => e.Top1).ToArray());
        insert.Parameters.Add(new NpgsqlParameter("top5", NpgsqlDbType.Array | NpgsqlDbType.Double)
        {
            Value = _evaluations.Select(e => (object?)e.Top5 ?? DBNull.Value).ToArray(),
        });
        await insert.ExecuteNonQueryAsync();
    }

    private async Task WriteEventsAsync(NpgsqlConnection connection, NpgsqlTransaction transaction)
    {
        await using var insert = new NpgsqlCommand(InsertEvents, connection, transaction);
        insert.Parameters.AddWithValue("job", _jobId);
        insert.Parameters.AddWithValue("sequence", _events.Select(e => e.Sequence).ToArray());
        insert.Parameters.AddWithValue("iteration", _events.Select(e => e.Event.Iteration).ToArray());
        insert.Parameters.AddWithValue("kind", _events.Select(e => e.Event.Kind.ToString()).ToArray());
        insert.Parameters.AddWithValue("message", _events.Select(e => StoredText.Truncate(e.Event.Message, ColumnLimits.Message)).ToArray());
        await insert.ExecuteNonQueryAsync();
    }

    /// <summary>The job's cancel flag after the update, or null when the job is no longer running (nothing was updated).</summary>
    private async Task<bool?> UpdateProgressAsync(NpgsqlConnection connection, NpgsqlTransaction transaction)
    {
        var last = _metrics.Count > 0 ? _metrics[^1] : null;
        var evaluation = _evaluations.Count > 0 ? _evaluations[^1] : null;
        await using var update = new NpgsqlCommand(UpdateProgress, connection, transaction);
        update.Parameters.AddWithValue("id", _jobId);
        update.Parameters.AddWithValue("running", Running);
        update.Parameters.Add(new NpgsqlParameter("iteration", NpgsqlDbType.Integer)
        {
            Value = last is not null ? last.Iteration + 1 : (object?)_progress ?? DBNull.Value,
        });
        update.Parameters.Add(new NpgsqlParameter("loss", NpgsqlDbType.Double) { Value = (object?)last?.Loss ?? DBNull.Value });
        update.Parameters.Add(new NpgsqlParameter("kept", NpgsqlDbType.Bigint) { Value = (object?)last?.Kept ?? DBNull.Value });
        update.Parameters.Add(new NpgsqlParameter("total", NpgsqlDbType.Bigint) { Value = (object?)last?.Total ?? DBNull.Value });
        void Add(string name, NpgsqlDbType type, object? value) =>
            update.Parameters.Add(new NpgsqlParameter(name, type) { Value = value ?? DBNull.Value });
        Add("stage", NpgsqlDbType.Double, last is { Kept: > 0 } ? (double)last.Total / last.Kept : null);
        var before = _evaluations.FirstOrDefault(e => e.Iteration == 0);
        var (validation, test) = _evaluatesOnValidation ? (evaluation, (EvaluationMetrics?)null) : (null, evaluation);
        var (validationBefore, testBefore) = _evaluatesOnValidation ? (before, (EvaluationMetrics?)null) : (null, before);
        Add("validationTop1", NpgsqlDbType.Double, validation?.Top1);
        Add("validationBefore", NpgsqlDbType.Double, validationBefore?.Top1);
        Add("testTop1", NpgsqlDbType.Double, test?.Top1);
        Add("testTop5", NpgsqlDbType.Double, test?.Top5);
        Add("testBefore", NpgsqlDbType.Double, testBefore?.Top1);
        Add("validationSplit", NpgsqlDbType.Text, _splits?.Validation?.ToString());
        Add("validationSamples", NpgsqlDbType.Integer, _splits?.Validation is null ? null : (int)_splits.ValidationSamples);
        Add("testSplit", NpgsqlDbType.Text, _splits?.Test.ToString());
        Add("testSamples", NpgsqlDbType.Integer, _splits is null ? null : (int)_splits.TestSamples);
        Add("phase", NpgsqlDbType.Text, _phase?.Phase.ToString());
        Add("phaseStep", NpgsqlDbType.Integer, _phase?.Step);
        Add("phaseSteps", NpgsqlDbType.Integer, _phase?.Steps);
        Add("best", NpgsqlDbType.Double, _deliverable is { } d && double.IsFinite(d) ? d : null);
        // Whole seconds: the estimate is no finer, and a finish that moves by milliseconds would be a new SSE event.
        Add("finish", NpgsqlDbType.TimestampTz, _pace?.Remaining() is { } remaining
            ? DateTimeOffset.FromUnixTimeSeconds((DateTimeOffset.UtcNow + remaining).ToUnixTimeSeconds() + 1) : null);
        update.Parameters.Add(new NpgsqlParameter("layers", NpgsqlDbType.Array | NpgsqlDbType.Text)
        {
            Value = (object?)_layerNames?.ToArray() ?? DBNull.Value,
        });
        update.Parameters.Add(new NpgsqlParameter("totals", NpgsqlDbType.Array | NpgsqlDbType.Bigint)
        {
            Value = (object?)_layerTotals ?? DBNull.Value,
        });
        return await update.ExecuteScalarAsync() is bool cancelRequested ? cancelRequested : null;
    }

    private async Task WriteCheckpointAsync(NpgsqlConnection connection, CheckpointData checkpoint)
    {
        await using var content = File.OpenRead(checkpoint.Path);
        await using var transaction = await connection.BeginTransactionAsync();
        var artifact = await ArtifactStore.SaveAsync(connection, transaction, _tenantId, ArtifactKind.Checkpoint,
            $"checkpoint-{_jobId}-{checkpoint.Iteration}.bin", "application/octet-stream", content);
        await using (var update = new NpgsqlCommand(UpdateCheckpoint, connection, transaction))
        {
            update.Parameters.AddWithValue("events", _nextEvent);
            update.Parameters.AddWithValue("id", _jobId);
            update.Parameters.AddWithValue("running", Running);
            update.Parameters.AddWithValue("artifact", artifact.Id);
            update.Parameters.AddWithValue("iteration", checkpoint.Iteration);
            if (await update.ExecuteNonQueryAsync() == 0)
            {
                await transaction.RollbackAsync(); // finished by another writer: its checkpoint is no longer needed
                _cancelRequested.Cancel();
                return;
            }
        }
        if (_checkpointArtifactId is { } previous)
        {
            await using var delete = new NpgsqlCommand("""DELETE FROM artifacts WHERE "Id" = @id""", connection, transaction);
            delete.Parameters.AddWithValue("id", previous);
            await delete.ExecuteNonQueryAsync();
        }
        await transaction.CommitAsync();
        _checkpointArtifactId = artifact.Id;
    }
}
