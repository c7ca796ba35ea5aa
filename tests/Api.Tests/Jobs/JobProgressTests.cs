using System.Net;
using System.Text.Json;
using SurgeryService.Api.Tests.Infrastructure;
using SurgeryService.Domain.Surgery;
using SurgeryService.Infrastructure.Jobs;
using Xunit.Abstractions;

namespace SurgeryService.Api.Tests.Jobs;

public sealed class JobProgressHost() : ServiceHost("progress", withWorker: false);

/// <summary>
/// What a user watching a job sees through HTTP, with real Worker processes and PostgreSQL: its place in the queue, its
/// phase and estimated time left, and which samples its figures come from.
/// </summary>
public sealed class JobProgressTests(JobProgressHost host, ITestOutputHelper output) : IClassFixture<JobProgressHost>
{
    [Fact]
    public async Task AQueuedJobSaysItsPlaceInItsQueueAndThatNoWorkerServesIt()
    {
        // No worker of the test suite listens to the gpu queue: the jobs stay queued.
        var client = host.Client();
        var (model, dataset) = await BudgetModeTests.UploadAsync(client);
        object Request() => new { modelId = model, datasetId = dataset, queue = "gpu", settings = new { iterations = 100 } };
        var first = await client.PostJsonAsync("/api/jobs", Request()).ExpectAsync(HttpStatusCode.Accepted);
        var second = await client.PostJsonAsync("/api/jobs", Request()).ExpectAsync(HttpStatusCode.Accepted);
        Assert.Equal(1, first.GetProperty("queuePosition").GetInt32());
        Assert.Equal(2, second.GetProperty("queuePosition").GetInt32());
        Assert.Contains(second.GetProperty("warnings").EnumerateArray(), w => w.GetString()!.Contains("no live worker serves the 'gpu' queue"));

        // Another tenant's job on the same queue is ahead of a later job too: the queue is shared.
        var globex = host.Client(ServiceHost.GlobexKey);
        var (otherModel, otherDataset) = await BudgetModeTests.UploadAsync(globex);
        await globex.PostJsonAsync("/api/jobs", new { modelId = otherModel, datasetId = otherDataset, queue = "gpu" })
            .ExpectAsync(HttpStatusCode.Accepted);
        var third = await client.PostJsonAsync("/api/jobs", Request()).ExpectAsync(HttpStatusCode.Accepted);
        Assert.Equal(4, third.GetProperty("queuePosition").GetInt32());

        var secondId = second.GetProperty("id").GetGuid();
        var firstId = first.GetProperty("id").GetGuid();
        await client.PostAsync($"/api/jobs/{firstId}/cancel", null).ExpectAsync(HttpStatusCode.Accepted);
        var moved = await JobScenario.GetJobAsync(client, secondId);
        Assert.Equal(1, moved.GetProperty("queuePosition").GetInt32());
        Assert.Equal(JsonValueKind.Null, moved.GetProperty("phase").ValueKind);
        var listed = await client.GetAsync("/api/jobs?state=queued").ExpectAsync(HttpStatusCode.OK);
        Assert.Equal([1, 3], listed.GetProperty("items").EnumerateArray().Select(j => j.GetProperty("queuePosition").GetInt32()).Order());
        var cancelled = await JobScenario.GetJobAsync(client, firstId);
        Assert.Equal(JsonValueKind.Null, cancelled.GetProperty("queuePosition").ValueKind);
        Assert.False(cancelled.TryGetProperty("warnings", out _));
    }

    [Fact]
    public async Task TheAnalysisBeforeTheFirstIterationMovesThePhaseAndSendsEventsWithAnEstimate()
    {
        // The worker's progress writer against the real jobs table, driven as the engine drives it through an analysis
        // of three layers, with a job that no worker takes (gpu queue) marked running.
        var client = host.Client();
        var (model, dataset) = await BudgetModeTests.UploadAsync(client);
        var job = (await client.PostJsonAsync("/api/jobs", new { modelId = model, datasetId = dataset, queue = "gpu", settings = new { iterations = 300 } })
            .ExpectAsync(HttpStatusCode.Accepted)).GetProperty("id").GetGuid();
        await host.Db.ScalarAsync<int>($"UPDATE jobs SET \"State\" = 'Running' WHERE \"Id\" = '{job}'");

        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        using var response = await client.GetAsync($"/api/jobs/{job}/events", HttpCompletionOption.ResponseHeadersRead, cts.Token);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cts.Token));
        var events = new List<JsonElement>();
        var listening = Task.Run(async () =>
        {
            while (await reader.ReadLineAsync(cts.Token) is { } line)
            {
                if (line.StartsWith("data: ", StringComparison.Ordinal)) lock (events) events.Add(JsonDocument.Parse(line[6..]).RootElement);
            }
        }, cts.Token);

        var pace = new JobPace(totalIterations: 300, startIteration: 0, batchSize: 32, TimeProvider.System);
        await using (var writer = new JobProgressWriter(host.Db.ConnectionString, job, "acme", null,
                         new JobOptions { FlushIntervalMilliseconds = 50 }, evaluatesOnValidation: true, pace: pace))
        {
            writer.Start();
            writer.OnSplits(new EvaluationSplits(ValidationSplit.TrainingHoldout, 400, TestSplit.Whole, 500));
            writer.OnPhase(new PhaseUpdate(RunPhase.Evaluating));
            writer.OnEvaluation(new EvaluationMetrics(0, 0.3, 0.9, null));
            for (var layer = 0; layer <= 3; layer++)
            {
                writer.OnPhase(new PhaseUpdate(RunPhase.Sensitivity, layer, 3));
                await JobScenario.WaitForAsync(client, job,
                    j => j.GetProperty("phase") is { ValueKind: JsonValueKind.Object } p && p.GetProperty("step").GetInt32() == layer, TimeSpan.FromSeconds(20));
                await Task.Delay(300);
            }
            await writer.CompleteAsync();
        }
        var analysed = await JobScenario.GetJobAsync(client, job);
        Assert.Equal("sensitivity: 3 of 3 layers measured", analysed.GetProperty("phase").GetProperty("description").GetString());
        Assert.Equal(0, analysed.GetProperty("iteration").GetInt32());
        Assert.Equal("trainingHoldout", analysed.GetProperty("validation").GetProperty("split").GetString());
        Assert.Equal(400, analysed.GetProperty("validation").GetProperty("samples").GetInt32());
        Assert.Equal(0.9, analysed.GetProperty("validation").GetProperty("top1Before").GetDouble());
        Assert.Equal(JsonValueKind.Null, analysed.GetProperty("test").GetProperty("top1Before").ValueKind);
        // From the measured pace of the analysis, an estimate for the iterations to come.
        Assert.True(analysed.GetProperty("etaSeconds").GetDouble() > 0, analysed.ToString());

        await Eventually.TrueAsync(() => Task.FromResult(Steps().Contains(3)), TimeSpan.FromSeconds(10));
        cts.Cancel();
        try
        {
            await listening;
        }
        catch (Exception e) when (e is OperationCanceledException or IOException)
        {
            // The stream ends when the test stops reading it.
        }
        // An event for each layer measured, all before the first iteration.
        Assert.Equal([0, 1, 2, 3], Steps());
        lock (events) Assert.All(events, e => Assert.Equal(0, e.GetProperty("iteration").GetInt32()));

        List<int> Steps()
        {
            lock (events)
            {
                return events.Where(e => e.GetProperty("phase") is { ValueKind: JsonValueKind.Object } p && p.GetProperty("name").GetString() == "sensitivity")
                    .Select(e => e.GetProperty("phase").GetProperty("step").GetInt32()).Distinct().ToList();
            }
        }
    }

    [Fact]
    public async Task OnlyTheNewestCheckpointIsStoredWhenSeveralWaitAndNoTemporaryFileIsLeft()
    {
        // Three checkpoints taken while the write loop has not yet run (a database slower than training): the two older
        // ones are superseded unwritten, the newest is stored after every metric before it.
        var client = host.Client();
        var (model, dataset) = await BudgetModeTests.UploadAsync(client);
        var job = (await client.PostJsonAsync("/api/jobs", new { modelId = model, datasetId = dataset, queue = "gpu" })
            .ExpectAsync(HttpStatusCode.Accepted)).GetProperty("id").GetGuid();
        await host.Db.ScalarAsync<int>($"UPDATE jobs SET \"State\" = 'Running' WHERE \"Id\" = '{job}'");

        var files = new List<string>();
        await using (var writer = new JobProgressWriter(host.Db.ConnectionString, job, "acme", null, new JobOptions { FlushIntervalMilliseconds = 50 }))
        {
            foreach (var iteration in new[] { 10, 20, 30 })
            {
                writer.OnIteration(new IterationMetrics(iteration, 0.5, 0.01, [new LayerIterationStats("fc1", 10, 20, 10, 0, true)]));
                writer.Checkpoint(new FakeCheckpoint(iteration, files));
            }
            writer.Start();
            await writer.CompleteAsync();
        }

        Assert.Equal(3, files.Count);
        Assert.All(files, f => Assert.False(File.Exists(f), $"{f} was left behind"));
        Assert.Equal(30, await host.Db.ScalarAsync<int>($"SELECT \"CheckpointIteration\" FROM jobs WHERE \"Id\" = '{job}'"));
        Assert.Equal(1, await host.Db.ScalarAsync<long>(
            $"SELECT count(*) FROM artifacts WHERE \"Kind\" = 'Checkpoint' AND \"FileName\" LIKE 'checkpoint-{job}-%'"));
        Assert.Equal(3, await host.Db.ScalarAsync<long>($"SELECT count(*) FROM job_metrics WHERE \"JobId\" = '{job}'"));
        Assert.Equal(FakeCheckpoint.Content(30).LongLength, await host.Db.ScalarAsync<long>(
            $"SELECT a.\"Size\" FROM artifacts a JOIN jobs j ON j.\"CheckpointArtifactId\" = a.\"Id\" WHERE j.\"Id\" = '{job}'"));
    }

    /// <summary>A run's state of a size that depends on its iteration; it notes the file it was written to.</summary>
    private sealed class FakeCheckpoint(int iteration, List<string> files) : ICheckpointSource
    {
        public int Iteration => iteration;

        public static byte[] Content(int iteration) => Enumerable.Repeat((byte)iteration, 1000 * iteration).ToArray();

        public void SaveCheckpoint(Stream stream)
        {
            files.Add(((FileStream)stream).Name);
            stream.Write(Content(iteration));
        }
    }

    [Fact]
    public async Task SwaggerDescribesEveryFieldOfTheJobAndItsFigures()
    {
        var document = await host.Client().GetAsync("/swagger/v1/swagger.json").ExpectAsync(HttpStatusCode.OK);
        var schemas = document.GetProperty("components").GetProperty("schemas");
        // A property whose schema is a reference carries no description of its own: the referenced schema's describes it.
        static string? Reference(JsonElement property) =>
            property.TryGetProperty("$ref", out var direct) ? direct.GetString()
            : new[] { "allOf", "oneOf", "anyOf" }.Where(k => property.TryGetProperty(k, out _))
                .SelectMany(k => property.GetProperty(k).EnumerateArray()).Select(Reference).FirstOrDefault(r => r is not null);
        bool Described(JsonElement schema) => schema.TryGetProperty("description", out var d) && !string.IsNullOrWhiteSpace(d.GetString())
            || Reference(schema) is { } reference && Described(schemas.GetProperty(reference.Split('/')[^1]));
        foreach (var name in new[] { "JobResponse", "JobPhaseResponse", "JobValidationFigures", "JobTestFigures" })
        {
            var undocumented = schemas.GetProperty(name).GetProperty("properties").EnumerateObject()
                .Where(p => !Described(p.Value)).Select(p => p.Name).ToList();
            Assert.True(undocumented.Count == 0, $"{name} lacks descriptions of {string.Join(", ", undocumented)}");
        }
        Assert.Contains("[0, 1]", schemas.GetProperty("JobValidationFigures").GetProperty("properties").GetProperty("top1Before")
            .GetProperty("description").GetString());
    }

    [Fact]
    public async Task PhaseAndEtaArePresentAndMoveWhileABudgetJobRuns()
    {
        var client = host.Client();
        var (model, dataset) = await BudgetModeTests.UploadAsync(client);
        var job = await JobScenario.SubmitAsync(client,
            BudgetModeTests.BudgetRequest(model, dataset, iterations: 3000, checkpointInterval: 1000, new { maxAccuracyDrop = 1.0, validation = 0.2 }));
        host.Worker ??= host.StartWorker();
        var seen = await JobScenario.WatchAsync(client, job,
            j => JobScenario.IsFinished(j) || j.GetProperty("iteration").GetInt32() >= 1300, TimeSpan.FromSeconds(240), () => host.Worker.Output);
        await client.PostAsync($"/api/jobs/{job}/cancel", null).ExpectAsync(HttpStatusCode.Accepted);
        var done = await JobScenario.WaitForAsync(client, job, JobScenario.IsFinished, TimeSpan.FromSeconds(60), () => host.Worker.Output);

        var running = seen.Where(j => j.GetProperty("state").GetString() == "Running").ToList();
        foreach (var j in running.Where((_, i) => i % 10 == 0))
        {
            output.WriteLine($"{j.GetProperty("iteration")} {j.GetProperty("phase")} eta {j.GetProperty("etaSeconds")}");
        }
        // Once it trains, the job always says what it does; stages count up, each of at most the stages left.
        var training = running.Where(j => j.GetProperty("iteration").GetInt32() > 0).ToList();
        Assert.NotEmpty(training);
        Assert.All(training, j => Assert.Equal(JsonValueKind.Object, j.GetProperty("phase").ValueKind));
        var phases = training.Select(j => j.GetProperty("phase")).ToList();
        Assert.All(phases, p => Assert.Contains(p.GetProperty("name").GetString(), new[] { "stage", "fineTune", "evaluating" }));
        var stages = phases.Where(p => p.GetProperty("name").GetString() == "stage")
            .Select(p => (Step: p.GetProperty("step").GetInt32(), Steps: p.GetProperty("steps").GetInt32())).Distinct().ToList();
        Assert.True(stages.Select(s => s.Step).Distinct().Count() >= 2, $"stages seen: {string.Join(", ", stages)}");
        Assert.All(stages, s => Assert.InRange(s.Step, 1, s.Steps));
        Assert.Equal(stages.Select(s => s.Step).Order(), stages.Select(s => s.Step));

        // The estimate is there once iterations are timed, and it moves with the measured pace (how it moves depends on
        // the machine's load, which JobPaceTests hold fixed).
        var estimated = training.Where(j => j.GetProperty("etaSeconds").ValueKind == JsonValueKind.Number).ToList();
        Assert.True(estimated.Count >= training.Count / 2, $"{estimated.Count} estimates among {training.Count} answers");
        Assert.True(estimated.Select(j => j.GetProperty("etaSeconds").GetDouble()).Distinct().Count() >= 2, "the estimate never moved");
        Assert.All(estimated, j =>
        {
            Assert.True(j.GetProperty("etaSeconds").GetDouble() >= 0);
            Assert.True(j.GetProperty("estimatedFinishAt").GetDateTimeOffset() > j.GetProperty("startedAt").GetDateTimeOffset());
        });

        // Cancelled, or Succeeded when a quiet machine finished the job between the last poll and the cancel.
        Assert.Contains(done.GetProperty("state").GetString(), new[] { "Cancelled", "Succeeded" });
        Assert.Equal(JsonValueKind.Null, done.GetProperty("phase").ValueKind);
        Assert.Equal(JsonValueKind.Null, done.GetProperty("etaSeconds").ValueKind);
    }

    [Fact]
    public async Task ADatasetWithItsOwnValidationSplitValidatesTheSearch()
    {
        var client = host.Client();
        var (model, _) = await BudgetModeTests.UploadAsync(client);
        const int train = 2000, validation = 400, test = 500;
        var stored = await client.PostAsync("/api/datasets",
            HttpExtensions.Form(TestData.MnistNpzWithValidation(train, validation, test), "mnist-with-val.npz")).ExpectAsync(HttpStatusCode.Created);
        Assert.Equal(validation, stored.GetProperty("validationCount").GetInt64());

        var job = await JobScenario.SubmitAsync(client, BudgetModeTests.BudgetRequest(model, stored.GetProperty("id").GetGuid(),
            iterations: 300, checkpointInterval: 100, new { maxAccuracyDrop = 1.0 }));
        host.Worker ??= host.StartWorker();
        var done = await JobScenario.WaitForAsync(client, job, JobScenario.IsFinished, TimeSpan.FromSeconds(240), () => host.Worker.Output);
        output.WriteLine(done.ToString());

        Assert.Equal("Succeeded", done.GetProperty("state").GetString());
        Assert.Equal("dataset", done.GetProperty("validation").GetProperty("split").GetString());
        Assert.Equal(validation, done.GetProperty("validation").GetProperty("samples").GetInt32());
        Assert.Equal("whole", done.GetProperty("test").GetProperty("split").GetString());
        Assert.Equal(test, done.GetProperty("test").GetProperty("samples").GetInt32());
        var report = await client.GetAsync($"/api/jobs/{job}/report").ExpectAsync(HttpStatusCode.OK);
        Assert.Equal(validation, report.GetProperty("budget").GetProperty("validationSamples").GetInt32());
        Assert.Equal("dataset", report.GetProperty("budget").GetProperty("validationSplit").GetString());
    }
}
