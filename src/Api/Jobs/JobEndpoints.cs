using System.Net.ServerSentEvents;
using System.Runtime.CompilerServices;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using SurgeryService.Api.OpenApi;
using SurgeryService.Domain;
using SurgeryService.Domain.Datasets;
using SurgeryService.Domain.Jobs;
using SurgeryService.Domain.Models;
using SurgeryService.Domain.Surgery;
using SurgeryService.Infrastructure.Artifacts;
using SurgeryService.Infrastructure.Jobs;
using SurgeryService.Infrastructure.Persistence;

namespace SurgeryService.Api.Jobs;

/// <summary>The job resource: submit, list, progress, metrics, result, report, cancel.</summary>
public static class JobEndpoints
{
    public static RouteGroupBuilder MapJobs(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/api/jobs").WithTags("Jobs").RequireAuthorization();
        group.MapPost("/", Submit).WithName("SubmitJob").WithSummary("Queue a surgery job")
            .WithMetadata(new OpenApiExample(SubmitExample));
        group.MapPost("/sensitivity", SubmitSensitivity).WithName("SubmitSensitivityJob")
            .WithSummary("Queue a sensitivity analysis: each prunable layer alone pruned to a ladder of kept shares, validation top-1 without retraining")
            .WithMetadata(new OpenApiExample(SensitivityExample));
        group.MapGet("/", List).WithName("ListJobs").WithSummary("The tenant's jobs, newest first, with paging and a state filter")
            .WithMetadata(new OpenApiExample(new { state = "Running", page = 1, pageSize = 20 }));
        group.MapGet("/{id:guid}", Get).WithName("GetJob").WithSummary("State and progress of one job");
        group.MapGet("/{id:guid}/metrics", Metrics).WithName("GetJobMetrics")
            .WithSummary("Per-iteration series: JSON, or CSV with Accept: text/csv")
            .Produces<MetricsResponse>(StatusCodes.Status200OK, "application/json", "text/csv")
            .WithMetadata(new OpenApiExample(new { from = 0, to = 1000, stride = 10 }));
        group.MapGet("/{id:guid}/events", Events).WithName("GetJobEvents")
            .WithSummary("Server-Sent Events with progress until the job finishes")
            .Produces<JobProgressEvent>(StatusCodes.Status200OK, "text/event-stream");
        group.MapGet("/{id:guid}/result", Result).WithName("DownloadJobResult")
            .WithSummary("The compressed model; 409 until the job has succeeded")
            .Produces(StatusCodes.Status200OK, contentType: "application/octet-stream")
            .WithMetadata(new OpenApiExample(new { format = "onnx-sparse" }));
        group.MapGet("/{id:guid}/report", Report).WithName("GetJobReport")
            .WithSummary("Per-layer table, totals, accuracy before and after, file sizes");
        group.MapGet("/{id:guid}/report.svg", ReportSvg).WithName("GetJobReportSvg")
            .WithSummary("Per-layer remaining weights and accuracy against iteration, as SVG")
            .Produces(StatusCodes.Status200OK, contentType: "image/svg+xml");
        group.MapGet("/{id:guid}/sensitivity", SensitivityCurves).WithName("GetJobSensitivity")
            .WithSummary("Per-layer sensitivity curves (kept share -> validation top-1) of a sensitivity or budget-mode job; 409 until it has succeeded");
        group.MapGet("/{id:guid}/sensitivity.svg", SensitivitySvg).WithName("GetJobSensitivitySvg")
            .WithSummary("The sensitivity curves as an SVG line plot: validation top-1 against kept share (log axis), one line per layer")
            .Produces(StatusCodes.Status200OK, contentType: "image/svg+xml");
        group.MapGet("/{id:guid}/log", Log).WithName("GetJobLog")
            .WithSummary("The job's warnings, rollbacks and budget-search steps, in order (also while it runs)");
        group.MapPost("/{id:guid}/cancel", Cancel).WithName("CancelJob")
            .WithSummary("Stop a queued or running job at its next iteration");
        group.MapDelete("/{id:guid}", Delete).WithName("DeleteJob")
            .WithSummary("Delete a finished job with its metrics, log, checkpoint and result files; 409 while it is queued or running");
        return group;
    }

    private static readonly object SubmitExample = new
    {
        modelId = "0193a0c2-4f7e-7d2a-9a51-3c8f2b7e1d40",
        datasetId = "0193a0c2-5b1d-7c44-8e0f-6d2a9b3c4e51",
        method = "dns",
        queue = "cpu",
        checkpointInterval = 500,
        settings = new { iterations = 2000, batchSize = 64, learningRate = 0.01, cRate = 3, gamma = 0.0001, power = 1, evalInterval = 500 },
        preprocessing = new { scale = 1.0 / 255, trainLimit = 10000 },
    };

    private static readonly object SensitivityExample = new
    {
        modelId = "0193a0c2-4f7e-7d2a-9a51-3c8f2b7e1d40",
        datasetId = "0193a0c2-5b1d-7c44-8e0f-6d2a9b3c4e51",
        validation = 0.1,
        preprocessing = new { scale = 1.0 / 255 },
    };

    public static async Task<Results<Accepted<JobResponse>, ValidationProblem, UnprocessableEntity<HttpValidationProblemDetails>>> Submit(
        SubmitJobRequest request, SubmitJob submit, JobQueries jobs, IOptions<JobOptions> jobOptions, CancellationToken cancellationToken)
    {
        var malformed = new Dictionary<string, string[]>();
        var invalid = new Dictionary<string, string[]>();

        var queue = CheckInputsAndQueue(request.ModelId, request.DatasetId, request.Queue, malformed);
        SurgeryMethod? method = null;
        if (request.Method is not null)
        {
            if (Enum.TryParse<SurgeryMethod>(request.Method, ignoreCase: true, out var parsed) && Enum.IsDefined(parsed)
                && !char.IsDigit(request.Method[0]))
            {
                method = parsed;
            }
            else
            {
                malformed["method"] = ["must be 'dns' or 'magnitude'"];
            }
        }
        if (malformed.Count > 0) return TypedResults.ValidationProblem(malformed, title: "The job request is incomplete or malformed");

        var settings = request.Settings ?? new SurgerySettings();
        if (method is { } m) settings = settings with { Method = m };
        if (request.Target is not null)
        {
            if (settings.Target is not null) malformed["target"] = ["is given twice: at the top level and in settings; give it once"];
            settings = settings with { Target = request.Target };
        }
        if (settings.Sensitivity is not null) malformed["settings.sensitivity"] = ["ask for a sensitivity analysis with POST /api/jobs/sensitivity"];
        if (malformed.Count > 0) return TypedResults.ValidationProblem(malformed, title: "The job request is incomplete or malformed");
        // The target block is the job's, named as the request names it; the rest are settings.
        foreach (var (name, problem) in settings.ValidationErrors()) invalid[name.StartsWith("target", StringComparison.Ordinal) ? name : "settings." + name] = [problem];
        var preprocessing = request.Preprocessing ?? new JobPreprocessing();
        foreach (var (name, problem) in preprocessing.ValidationErrors()) invalid[name] = [problem];
        if (request.CheckpointInterval is <= 0 or > 10_000_000) invalid["checkpointInterval"] = ["must be between 1 and 10000000"];

        var output = request.Output ?? new JobOutput();
        if (!Enum.IsDefined(output.Quantize)) invalid["output.quantize"] = ["must be 'none' or 'int8'"];

        var (model, dataset) = await submit.FindInputsAsync(request.ModelId, request.DatasetId, preprocessing, invalid, cancellationToken);
        if (model is not null && output.Quantize == Quantization.Int8 && model.Format != ModelFormat.Onnx)
        {
            invalid["output.quantize"] = ["int8 output is an ONNX model: it needs an ONNX upload (this model is TorchSharp weights)"];
        }
        if (invalid.Count > 0) return CannotRun(invalid);
        submit.CheckMemory(model!, dataset!, settings, preprocessing, invalid);
        if (invalid.Count > 0) return CannotRun(invalid);

        var submitted = await submit.ExecuteAsync(model!, dataset!, settings, preprocessing, queue,
            request.CheckpointInterval ?? jobOptions.Value.DefaultCheckpointInterval,
            JobKind.Of(settings) is BudgetJob budget ? budget.MaxIterations : settings.Iterations, invalid, cancellationToken, output);
        return submitted is null ? CannotRun(invalid) : await AcceptedAsync(jobs, submitted, cancellationToken);
    }

    public static async Task<Results<Accepted<JobResponse>, ValidationProblem, UnprocessableEntity<HttpValidationProblemDetails>>> SubmitSensitivity(
        SubmitSensitivityRequest request, SubmitJob submit, JobQueries jobs, IOptions<JobOptions> jobOptions, CancellationToken cancellationToken)
    {
        var malformed = new Dictionary<string, string[]>();
        var queue = CheckInputsAndQueue(request.ModelId, request.DatasetId, request.Queue, malformed);
        if (malformed.Count > 0) return TypedResults.ValidationProblem(malformed, title: "The sensitivity request is incomplete or malformed");

        var invalid = new Dictionary<string, string[]>();
        var sensitivity = new SensitivitySettings { Validation = request.Validation ?? new SensitivitySettings().Validation };
        foreach (var (name, problem) in sensitivity.ValidationErrors()) invalid[name] = [problem];
        var preprocessing = request.Preprocessing ?? new JobPreprocessing();
        foreach (var (name, problem) in preprocessing.ValidationErrors()) invalid[name] = [problem];
        var (model, dataset) = await submit.FindInputsAsync(request.ModelId, request.DatasetId, preprocessing, invalid, cancellationToken);
        if (model is not null && !model.Layers.Any(l => l.Prunable)) invalid["modelId"] = ["the model has no prunable layers: there is nothing to analyse"];
        if (invalid.Count > 0) return CannotRun(invalid);

        // Progress counts layers measured; the worker corrects the count if the loaded model disagrees.
        var submitted = await submit.ExecuteAsync(model!, dataset!, new SurgerySettings { Sensitivity = sensitivity }, preprocessing, queue,
            jobOptions.Value.DefaultCheckpointInterval, model!.Layers.Count(l => l.Prunable), invalid, cancellationToken);
        return submitted is null ? CannotRun(invalid) : await AcceptedAsync(jobs, submitted, cancellationToken);
    }

    /// <summary>The model, dataset and queue every job names; problems go to <paramref name="malformed"/>.</summary>
    private static string CheckInputsAndQueue(Guid? modelId, Guid? datasetId, string? requestedQueue, Dictionary<string, string[]> malformed)
    {
        if (modelId is null) malformed["modelId"] = ["is required"];
        if (datasetId is null) malformed["datasetId"] = ["is required"];
        var queue = requestedQueue?.ToLowerInvariant() ?? JobQueues.Cpu;
        if (!JobQueues.ForJobs.Contains(queue)) malformed["queue"] = [$"must be {string.Join(" or ", JobQueues.ForJobs.Select(q => $"'{q}'"))}"];
        return queue;
    }

    private static UnprocessableEntity<HttpValidationProblemDetails> CannotRun(Dictionary<string, string[]> invalid) =>
        TypedResults.UnprocessableEntity(new HttpValidationProblemDetails(invalid)
        {
            Title = "The job cannot run with these values",
            Status = StatusCodes.Status422UnprocessableEntity,
        });

    /// <summary>202 with the job and its queue position; a warning tells the client when no live worker serves its queue (the job waits for one).</summary>
    private static async Task<Accepted<JobResponse>> AcceptedAsync(JobQueries jobs, SurgeryJob job, CancellationToken cancellationToken) =>
        TypedResults.Accepted($"/api/jobs/{job.Id}", JobResponse.From(job, await jobs.StandingAsync(job, cancellationToken)));

    /// <summary>The tenant's jobs, newest first.</summary>
    /// <param name="state">Only jobs in this state: Queued, Running, Succeeded, Failed or Cancelled (any case); all when absent.</param>
    /// <param name="page">The page to answer, from 1 (default 1).</param>
    /// <param name="pageSize">Jobs per page, 1 to 200 (default 20).</param>
    public static async Task<Results<Ok<ListPage<JobResponse>>, ValidationProblem>> List(
        JobQueries jobs, string? state = null, int page = 1, int pageSize = Paging.DefaultPageSize,
        CancellationToken cancellationToken = default)
    {
        var errors = new Dictionary<string, string[]>();
        JobState? filter = null;
        if (state is not null)
        {
            if (EnumNames.TryParse<JobState>(state, out var parsed)) filter = parsed;
            else errors["state"] = [$"must be one of {string.Join(", ", Enum.GetNames<JobState>())}"];
        }
        foreach (var (name, problem) in Paging.Errors(page, pageSize)) errors[name] = problem;
        if (errors.Count > 0) return TypedResults.ValidationProblem(errors);

        var rows = await jobs.ListAsync(filter, Paging.Skip(page, pageSize), pageSize, cancellationToken);
        var standings = await jobs.StandingsAsync(rows.Items, cancellationToken);
        return Paging.Ok(rows, j => JobResponse.Summary(j, standings[j.Id]), page, pageSize);
    }

    public static async Task<Results<Ok<JobResponse>, NotFound<ProblemDetails>>> Get(
        Guid id, JobQueries jobs, CancellationToken cancellationToken) =>
        await jobs.FindAsync(id, cancellationToken) is { } job
            ? TypedResults.Ok(JobResponse.From(job, await jobs.StandingAsync(job, cancellationToken)))
            : NotFoundProblem.For("job", id);

    public static async Task<Results<Ok<MetricsResponse>, ContentHttpResult, NotFound<ProblemDetails>, ValidationProblem>> Metrics(
        Guid id, HttpRequest http, JobQueries jobs, int? from = null, int? to = null, int stride = 1,
        int limit = 10_000, string? format = null, CancellationToken cancellationToken = default)
    {
        var errors = new Dictionary<string, string[]>();
        if (stride < 1) errors["stride"] = ["must be >= 1"];
        if (limit is < 1 or > 100_000) errors["limit"] = ["must be between 1 and 100000"];
        if (from < 0) errors["from"] = ["must be >= 0"];
        if (to is not null && from is not null && to < from) errors["to"] = ["must be >= from"];
        if (format is not null && format is not ("json" or "csv")) errors["format"] = ["must be 'json' or 'csv'"];
        if (errors.Count > 0) return TypedResults.ValidationProblem(errors);

        var job = await jobs.FindAsync(id, cancellationToken);
        if (job is null) return NotFoundProblem.For("job", id);
        var start = from ?? 0;
        var end = to ?? int.MaxValue;
        var points = await jobs.MetricsAsync(id, start, end, stride, limit,
            m => new MetricPoint(m.Iteration, m.Loss, m.LearningRate, m.Kept, m.Total, m.Total == 0 ? 0 : 1 - (double)m.Kept / m.Total, m.LayerKept),
            cancellationToken);
        var evaluations = (await jobs.EvaluationsAsync(id, start, end, cancellationToken))
            .Select(e => new EvaluationPoint(e.Iteration, e.Loss, e.Top1, e.Top5)).ToList();

        var wantsCsv = MetricsQuery.WantsCsv(http, format);
        var nextFrom = MetricsQuery.NextFrom(points, limit, stride);
        if (!wantsCsv)
        {
            return TypedResults.Ok(new MetricsResponse(id, job.LayerNames, points, evaluations, nextFrom,
                job.Kind is BudgetJob ? "validation" : "test"));
        }

        return TypedResults.Content(MetricsCsv.Write(job.LayerNames, points), "text/csv; charset=utf-8");
    }

    public static async Task<Results<ProgressEventStream, NotFound<ProblemDetails>>> Events(
        Guid id, JobQueries jobs, IOptions<ApiOptions> options, CancellationToken cancellationToken)
    {
        if (await jobs.ProgressAsync(id, cancellationToken) is null) return NotFoundProblem.For("job", id);
        return new ProgressEventStream(Progress(jobs, id, TimeSpan.FromMilliseconds(options.Value.EventPollMilliseconds),
            TimeSpan.FromSeconds(options.Value.EventKeepAliveSeconds), cancellationToken));
    }

    /// <summary>Progress events as the job changes, and null (a keep-alive comment) after <paramref name="keepAlive"/> of silence.</summary>
    private static async IAsyncEnumerable<SseItem<JobProgressEvent>?> Progress(
        JobQueries jobs, Guid id, TimeSpan poll, TimeSpan keepAlive, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        JobProgressEvent? last = null;
        var lastSent = DateTime.UtcNow;
        while (!cancellationToken.IsCancellationRequested)
        {
            var job = await jobs.ProgressAsync(id, cancellationToken);
            if (job is null) yield break; // deleted meanwhile
            // The event carries no warnings: only the queue position, without asking Hangfire for its servers every poll.
            var current = JobProgressEvent.From(job, await jobs.QueuePositionAsync(job, cancellationToken));
            if (current != last)
            {
                yield return new SseItem<JobProgressEvent>(current, job.IsFinished ? "finished" : "progress")
                {
                    EventId = $"{job.Iteration}-{job.State}",
                };
                last = current;
                lastSent = DateTime.UtcNow;
            }
            else if (DateTime.UtcNow - lastSent >= keepAlive)
            {
                yield return null;
                lastSent = DateTime.UtcNow;
            }
            if (job.IsFinished) yield break;
            await Task.Delay(poll, cancellationToken);
        }
    }

    public static async Task<Results<FileStreamHttpResult, NotFound<ProblemDetails>, Conflict<ProblemDetails>,
        UnprocessableEntity<ProblemDetails>, ValidationProblem>> Result(
        Guid id, JobQueries jobs, ArtifactStore artifacts, HttpResponse response, string? format = null,
        CancellationToken cancellationToken = default)
    {
        ResultFormat? parsed = null;
        if (format is not null && (parsed = ModelFormats.ParseResultFormat(format)) is null)
        {
            return TypedResults.ValidationProblem(new Dictionary<string, string[]>
            {
                ["format"] = ["must be 'onnx', 'onnx-sparse', 'onnx-int8' or 'torchsharp'"],
            });
        }
        var job = await jobs.FindAsync(id, cancellationToken);
        if (job is null) return NotFoundProblem.For("job", id);
        if (NoModelOutput(job) is { } none) return none;
        if (NotSucceeded(job, "result") is { } notDone) return notDone;
        var available = JobResponse.ResultFormatsOf(job);
        var chosen = parsed ?? ModelFormats.ParseResultFormat(available[0])!.Value;
        var artifactId = ResultStorage.ArtifactOf(job, chosen);
        if (artifactId is null)
        {
            var why = chosen == ResultFormat.OnnxInt8
                ? job.Deployment?.Quantization.FallbackReason ?? "the job did not ask for it (output.quantize: int8)"
                : "it follows the uploaded model's format";
            return Problems.Unprocessable("Format not available",
                $"this job's result is available as {string.Join(", ", available)}, not {chosen.Name()} ({why})");
        }
        var artifact = await jobs.ArtifactAsync(artifactId.Value, cancellationToken);
        var dense = chosen == ResultFormat.OnnxSparse && job.ResultOnnxArtifactId is { } denseId
            ? await jobs.ArtifactAsync(denseId, cancellationToken)
            : null;
        response.Headers[ResultStorage.Header] = ResultStorage.Of(chosen, artifact, dense);
        var stream = await artifacts.OpenReadAsync(artifactId.Value, cancellationToken);
        return TypedResults.Stream(stream, artifact.ContentType, artifact.FileName);
    }

    public static async Task<Results<Ok<JobReport>, NotFound<ProblemDetails>, Conflict<ProblemDetails>>> Report(
        Guid id, SurgeryDbContext db, CancellationToken cancellationToken)
    {
        var job = await Find(db, id, cancellationToken);
        if (job is null) return NotFoundProblem.For("job", id);
        if (NoModelOutput(job) is { } none) return none;
        if (NotSucceeded(job, "report") is { } notDone) return notDone;
        return TypedResults.Ok(await JobReportBuilder.BuildAsync(db, job, cancellationToken));
    }

    public static async Task<Results<ContentHttpResult, NotFound<ProblemDetails>, Conflict<ProblemDetails>>> ReportSvg(
        Guid id, JobQueries jobs, CancellationToken cancellationToken)
    {
        var job = await jobs.FindAsync(id, cancellationToken);
        if (job is null) return NotFoundProblem.For("job", id);
        if (NoModelOutput(job) is { } none) return none; // a sensitivity analysis trains nothing: nothing to plot here
        // Whatever has been recorded so far: the plot is useful while the job runs too.
        var stride = Math.Max(1, await jobs.MetricCountAsync(id, cancellationToken) / 400);
        var points = await jobs.MetricsEveryAsync(id, stride, m => new { m.Iteration, m.LayerKept }, cancellationToken);
        var evaluations = await jobs.EvaluationsAsync(id, 0, int.MaxValue, cancellationToken);
        var svg = JobReportSvg.Render(job, points.Select(p => (p.Iteration, p.LayerKept)).ToList(), job.LayerTotals,
            evaluations.Select(e => (e.Iteration, e.Top1)).ToList());
        return TypedResults.Content(svg, "image/svg+xml");
    }

    public static async Task<Results<Ok<SensitivityResponse>, NotFound<ProblemDetails>, Conflict<ProblemDetails>>> SensitivityCurves(
        Guid id, JobQueries jobs, CancellationToken cancellationToken)
    {
        var job = await jobs.FindAsync(id, cancellationToken);
        if (job is null) return NotFoundProblem.For("job", id);
        if (NoSensitivity(job) is { } none) return none;
        return TypedResults.Ok(SensitivityResponse.From(job, job.Search!));
    }

    public static async Task<Results<ContentHttpResult, NotFound<ProblemDetails>, Conflict<ProblemDetails>>> SensitivitySvg(
        Guid id, JobQueries jobs, CancellationToken cancellationToken)
    {
        var job = await jobs.FindAsync(id, cancellationToken);
        if (job is null) return NotFoundProblem.For("job", id);
        if (NoSensitivity(job) is { } none) return none;
        return TypedResults.Content(SensitivityPlot.Render(job, job.Search!), "image/svg+xml");
    }

    /// <summary>409 while the job has no sensitivity curves: not finished yet, failed, or a fixed-threshold job that measures none.</summary>
    private static Conflict<ProblemDetails>? NoSensitivity(SurgeryJob job)
    {
        if (job.Search is { Sensitivity.Count: > 0 }) return null;
        if (job.Kind is FixedJob)
        {
            return Problems.Conflict("No sensitivity curves",
                "fixed-threshold jobs (the job names cRates) do not measure sensitivity: ask for it with POST /api/jobs/sensitivity");
        }
        return NotSucceeded(job, "sensitivity curves", job.Kind is SensitivityJob ? "layer" : "iteration")
            ?? Problems.Conflict("No sensitivity curves", "the job finished without measuring sensitivity: ask for it with POST /api/jobs/sensitivity");
    }

    /// <summary>409 for a sensitivity-only job: it measures curves and delivers no model.</summary>
    private static Conflict<ProblemDetails>? NoModelOutput(SurgeryJob job) => job.Kind is SensitivityJob
        ? Problems.Conflict("No model output",
            $"job {job.Id} is a sensitivity analysis: it has no model output; its answer is GET /api/jobs/{job.Id}/sensitivity (or sensitivity.svg)")
        : null;

    public static async Task<Results<Ok<IReadOnlyList<JobLogEntry>>, NotFound<ProblemDetails>>> Log(
        Guid id, SurgeryDbContext db, CancellationToken cancellationToken)
    {
        var job = await Find(db, id, cancellationToken);
        if (job is null) return NotFoundProblem.For("job", id);
        return TypedResults.Ok(await JobReportBuilder.LogAsync(db, id, cancellationToken));
    }

    public static async Task<Results<Accepted<JobResponse>, NotFound<ProblemDetails>, Conflict<ProblemDetails>>> Cancel(
        Guid id, CancelJob useCase, CancellationToken cancellationToken) =>
        await useCase.ExecuteAsync(id, cancellationToken) switch
        {
            Cancellation.Requested requested => TypedResults.Accepted($"/api/jobs/{id}", JobResponse.From(requested.Job)),
            Cancellation.AlreadyFinished finished => Problems.Conflict("Job finished", $"the job is already {finished.State}"),
            _ => NotFoundProblem.For("job", id),
        };

    public static async Task<Results<NoContent, NotFound<ProblemDetails>, Conflict<ProblemDetails>>> Delete(
        Guid id, DeleteJob useCase, CancellationToken cancellationToken) =>
        await useCase.ExecuteAsync(id, cancellationToken) switch
        {
            JobDeletion.Deleted => TypedResults.NoContent(),
            JobDeletion.NotFinished running => Problems.Conflict("Job not finished",
                $"the job is {running.State}: cancel it (POST /api/jobs/{id}/cancel) and delete it once it is Cancelled"),
            _ => NotFoundProblem.For("job", id),
        };

    /// <summary>409 while the job has not succeeded: it has no result or report (yet, or at all).</summary>
    private static Conflict<ProblemDetails>? NotSucceeded(SurgeryJob job, string what, string step = "iteration") => job.State == JobState.Succeeded
        ? null
        : Problems.Conflict("Job not done",
            job.State is JobState.Failed or JobState.Cancelled
                ? $"the job is {job.State}: it has no {what}" + (job.Error is null ? "" : $" ({job.Error})")
                : $"the job is {job.State} at {step} {job.Iteration} of {job.TotalIterations}: the {what} " +
                  $"{(what.EndsWith('s') ? "are" : "is")} ready once it has succeeded");

    private static Task<SurgeryJob?> Find(SurgeryDbContext db, Guid id, CancellationToken cancellationToken) =>
        db.Jobs.AsNoTracking().SingleOrDefaultAsync(j => j.Id == id, cancellationToken);
}
