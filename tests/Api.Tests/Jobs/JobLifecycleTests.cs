using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Google.Protobuf;
using Hangfire;
using Microsoft.Extensions.DependencyInjection;
using SurgeryService.Api.Tests.Infrastructure;
using SurgeryService.Domain.Models;
using static TorchSharp.torch;

namespace SurgeryService.Api.Tests.Jobs;

public sealed class JobLifecycleHost() : ServiceHost("lifecycle", withWorker: true);

/// <summary>Jobs through HTTP with the real Worker process and PostgreSQL.</summary>
public sealed class JobLifecycleTests(JobLifecycleHost host) : IClassFixture<JobLifecycleHost>
{
    private static readonly TimeSpan JobTimeout = TimeSpan.FromSeconds(90);

    [Fact]
    public async Task CompressesAModelEndToEndWithProgressMetricsReportAndDownload()
    {
        var client = host.Client();
        var (model, dataset) = await JobScenario.UploadAsync(client);
        const int iterations = 80;
        var job = await JobScenario.SubmitAsync(client, JobScenario.Request(model, dataset, iterations, checkpointInterval: 40));

        // Progress over SSE until the final event.
        var events = await ReadEventsAsync(client, job, JobTimeout);
        Assert.Equal("finished", events[^1].Event);
        Assert.Equal("Succeeded", events[^1].Data.GetProperty("state").GetString());
        Assert.Equal(iterations, events[^1].Data.GetProperty("iteration").GetInt32());
        Assert.Contains(events, e => e.Event == "progress");
        var seen = events.Select(e => e.Data.GetProperty("iteration").GetInt32()).ToList();
        Assert.Equal(seen.Order(), seen);

        var done = await JobScenario.GetJobAsync(client, job);
        Assert.Equal(iterations, done.GetProperty("iteration").GetInt32());
        Assert.Equal(1.0, done.GetProperty("progress").GetDouble());
        Assert.True(done.GetProperty("sparsity").GetDouble() > 0, done.ToString());
        Assert.Equal(["torchsharp"], done.GetProperty("resultFormats").EnumerateArray().Select(f => f.GetString()));

        // Metrics: every iteration once, JSON and CSV agree, stride and range apply.
        var metrics = await client.GetAsync($"/api/jobs/{job}/metrics").ExpectAsync(HttpStatusCode.OK);
        var points = metrics.GetProperty("points").EnumerateArray().ToList();
        Assert.Equal(Enumerable.Range(0, iterations), points.Select(p => p.GetProperty("iteration").GetInt32()));
        Assert.Equal(["fc1", "fc2", "fc3"], metrics.GetProperty("layers").EnumerateArray().Select(l => l.GetString()));
        Assert.Contains(metrics.GetProperty("evaluations").EnumerateArray(), e => e.GetProperty("iteration").GetInt32() == iterations);

        var strided = await client.GetAsync($"/api/jobs/{job}/metrics?from=10&to=50&stride=20").ExpectAsync(HttpStatusCode.OK);
        Assert.Equal([10, 30, 50], strided.GetProperty("points").EnumerateArray().Select(p => p.GetProperty("iteration").GetInt32()));
        Assert.Equal(System.Text.Json.JsonValueKind.Null, strided.GetProperty("nextFrom").ValueKind);
        var page = await client.GetAsync($"/api/jobs/{job}/metrics?from=10&stride=5&limit=3").ExpectAsync(HttpStatusCode.OK);
        Assert.Equal([10, 15, 20], page.GetProperty("points").EnumerateArray().Select(p => p.GetProperty("iteration").GetInt32()));
        Assert.Equal(25, page.GetProperty("nextFrom").GetInt32());

        var csvRequest = new HttpRequestMessage(HttpMethod.Get, $"/api/jobs/{job}/metrics");
        csvRequest.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("text/csv"));
        var csvResponse = await client.SendAsync(csvRequest);
        Assert.Equal("text/csv", csvResponse.Content.Headers.ContentType?.MediaType);
        var lines = (await csvResponse.Content.ReadAsStringAsync()).TrimEnd('\n').Split('\n');
        Assert.Equal("iteration,loss,learning_rate,kept,total,sparsity,kept_fc1,kept_fc2,kept_fc3", lines[0]);
        Assert.Equal(iterations + 1, lines.Length);
        var lastCsv = lines[^1].Split(',');
        Assert.Equal(points[^1].GetProperty("loss").GetDouble(), double.Parse(lastCsv[1], CultureInfo.InvariantCulture));

        // Report: per-layer table and totals consistent with the job; the SVG plots it.
        var report = await client.GetAsync($"/api/jobs/{job}/report").ExpectAsync(HttpStatusCode.OK);
        var layers = report.GetProperty("layers").EnumerateArray().ToList();
        Assert.Equal(3, layers.Count);
        var kept = layers.Sum(l => l.GetProperty("after").GetInt64());
        Assert.Equal(kept, report.GetProperty("totals").GetProperty("after").GetInt64());
        Assert.Equal(done.GetProperty("kept").GetInt64(), kept);
        Assert.Equal(266_610, report.GetProperty("totals").GetProperty("before").GetInt64());
        Assert.Contains(report.GetProperty("files").EnumerateArray(), f => f.GetProperty("role").GetString() == "torchsharp");
        var svg = await client.GetAsync($"/api/jobs/{job}/report.svg");
        Assert.Equal("image/svg+xml", svg.Content.Headers.ContentType?.MediaType);
        var svgText = await svg.Content.ReadAsStringAsync();
        Assert.StartsWith("<svg", svgText);
        Assert.Contains("fc1", svgText);
        Assert.Equal(4, System.Text.RegularExpressions.Regex.Count(svgText, "<polyline")); // three layers and the accuracy

        // The download is the pruned model: exact zeros where pruned, and it scores the reported accuracy.
        var download = await client.GetAsync($"/api/jobs/{job}/result?format=torchsharp");
        Assert.Equal(HttpStatusCode.OK, download.StatusCode);
        Assert.Equal("dense", Assert.Single(download.Headers.GetValues("X-Model-Storage")));
        var bytes = await download.Content.ReadAsByteArrayAsync();
        using var pruned = Architectures.Create("lenet-300-100");
        pruned.load(new BinaryReader(new MemoryStream(bytes)));
        var nonzero = pruned.named_parameters().Sum(p => p.parameter.count_nonzero().item<long>());
        Assert.Equal(kept, nonzero);
        Assert.Equal(report.GetProperty("accuracy").GetProperty("top1After").GetDouble(), Accuracy(pruned), 6);
    }

    [Fact]
    public async Task CompressesAnOnnxModelAndOnnxRuntimeScoresTheDownloadsAsReported()
    {
        var client = host.Client();
        var upload = await client.PostAsync("/api/models", HttpExtensions.Form(OnnxMlp.Create(), "mlp.weights"))
            .ExpectAsync(HttpStatusCode.Created);
        Assert.Equal("onnx", upload.GetProperty("format").GetString());
        Assert.Equal([784], upload.GetProperty("inputShape").EnumerateArray().Select(d => d.GetInt64()));
        Assert.Equal(["Gemm", "Relu", "Softmax"], upload.GetProperty("operators").EnumerateArray().Select(o => o.GetString()));
        Assert.Equal(2, upload.GetProperty("layers").EnumerateArray().Count(l => l.GetProperty("prunable").GetBoolean()));
        var dataset = await client.PostAsync("/api/datasets",
            HttpExtensions.Form(TestData.MnistNpz(JobScenario.TrainSamples, JobScenario.TestSamples), "mnist-small.npz"))
            .ExpectAsync(HttpStatusCode.Created);

        var job = await JobScenario.SubmitAsync(client, JobScenario.Request(
            upload.GetProperty("id").GetGuid(), dataset.GetProperty("id").GetGuid(), iterations: 60, checkpointInterval: 30));
        var done = await JobScenario.WaitForAsync(client, job, JobScenario.IsFinished, JobTimeout, () => host.Worker!.Output);

        Assert.Equal("Succeeded", done.GetProperty("state").GetString());
        Assert.Equal(["onnx", "onnx-sparse"], done.GetProperty("resultFormats").EnumerateArray().Select(f => f.GetString()));
        await client.GetAsync($"/api/jobs/{job}/result?format=torchsharp").ExpectAsync(HttpStatusCode.UnprocessableEntity);
        var reported = done.GetProperty("test").GetProperty("top1After").GetDouble();
        var denseResponse = await client.GetAsync($"/api/jobs/{job}/result?format=onnx");
        var sparseResponse = await client.GetAsync($"/api/jobs/{job}/result?format=onnx-sparse");
        var dense = await denseResponse.Content.ReadAsByteArrayAsync();
        var sparse = await sparseResponse.Content.ReadAsByteArrayAsync();
        Assert.Equal("dense", Assert.Single(denseResponse.Headers.GetValues("X-Model-Storage")));
        Assert.Equal("sparse", Assert.Single(sparseResponse.Headers.GetValues("X-Model-Storage"))); // smaller, as asserted below
        var (denseAccuracy, denseZeros) = OnnxRuntimeAccuracy(dense);
        var (sparseAccuracy, _) = OnnxRuntimeAccuracy(sparse);

        // The engine evaluates in TorchSharp, ONNX Runtime in its own kernels: one borderline sample may flip.
        Assert.InRange(denseAccuracy, reported - 1.0 / JobScenario.TestSamples, reported + 1.0 / JobScenario.TestSamples);
        Assert.Equal(denseAccuracy, sparseAccuracy);
        Assert.True(sparse.Length < dense.Length, $"sparse {sparse.Length} bytes, dense {dense.Length}");
        var total = done.GetProperty("total").GetInt64();
        Assert.Equal(total - done.GetProperty("kept").GetInt64(), denseZeros);
    }

    private static (double Accuracy, long ZeroWeights) OnnxRuntimeAccuracy(byte[] model)
    {
        var (_, _, xTest, yTest) = TestData.MnistSubset(1, JobScenario.TestSamples);
        var correct = JobScenario.OnnxRuntimeCorrect(model, xTest, yTest, JobScenario.TestSamples);
        var proto = SurgeryService.Domain.Onnx.Proto.ModelProto.Parser.ParseFrom(model);
        var zeros = proto.Graph.Initializer.Where(t => t.Name.EndsWith("weight", StringComparison.Ordinal))
            .Sum(t => System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(t.RawData.Span).ToArray().LongCount(v => v == 0));
        return ((double)correct / JobScenario.TestSamples, zeros);
    }

    [Fact]
    public async Task TheMagnitudeBaselineRunsThroughTheSameApiAndNeverSplices()
    {
        var client = host.Client();
        var (model, dataset) = await JobScenario.UploadAsync(client);
        var job = await JobScenario.SubmitAsync(client, new
        {
            modelId = model,
            datasetId = dataset,
            method = "magnitude",
            checkpointInterval = 20,
            settings = new { iterations = 40, batchSize = 32, evalInterval = 20, magnitudeRounds = 2, cRate = 1.0 },
            preprocessing = new { trainLimit = JobScenario.TrainSamples, testLimit = JobScenario.TestSamples },
        });

        var done = await JobScenario.WaitForAsync(client, job, JobScenario.IsFinished, JobTimeout, () => host.Worker!.Output);

        Assert.Equal("Succeeded", done.GetProperty("state").GetString());
        Assert.Equal("magnitude", done.GetProperty("method").GetString());
        var report = await client.GetAsync($"/api/jobs/{job}/report").ExpectAsync(HttpStatusCode.OK);
        Assert.Equal("magnitude", report.GetProperty("method").GetString());
        Assert.All(report.GetProperty("layers").EnumerateArray(), l =>
        {
            Assert.Equal(0, l.GetProperty("splicedTotal").GetInt64());
            Assert.True(l.GetProperty("prunedTotal").GetInt64() > 0);
        });
    }

    [Fact]
    public async Task ANewJobOnAModelExpectsThePaceOfTheLastJobThatFinishedOnIt()
    {
        var client = host.Client();
        var (model, dataset) = await JobScenario.UploadAsync(client);
        var first = await JobScenario.SubmitAsync(client, JobScenario.Request(model, dataset, iterations: 40, checkpointInterval: 20));
        var done = await JobScenario.WaitForAsync(client, first, JobScenario.IsFinished, JobTimeout, () => host.Worker!.Output);
        Assert.Equal("Succeeded", done.GetProperty("state").GetString());
        Assert.Equal(JsonValueKind.Null, done.GetProperty("expectedSeconds").ValueKind);
        Assert.Contains("etaSeconds", done.GetProperty("expectedBasis").GetString());

        // Twice the iterations at twice the batch size: four times the first job's whole run.
        var accepted = await client.PostJsonAsync("/api/jobs", JobScenario.Request(model, dataset, iterations: 80, checkpointInterval: 20, batchSize: 64))
            .ExpectAsync(HttpStatusCode.Accepted);
        await client.PostAsync($"/api/jobs/{accepted.GetProperty("id").GetGuid()}/cancel", null);
        Assert.Equal(4 * done.GetProperty("durationSeconds").GetDouble(), accepted.GetProperty("expectedSeconds").GetDouble(), 0.06);
        Assert.StartsWith($"job {first} on this model and queue ran", accepted.GetProperty("expectedBasis").GetString());
    }

    [Fact]
    public async Task ALayerPatternThatMadeTheWorkerBacktrackForEverLetsTheJobFinish()
    {
        var client = host.Client();
        // A layer named by the tenant and a pattern (issue 27) whose regex tried every way of placing its twelve stars
        // in the name before failing on the '!': it held the worker for good, and with it every tenant's queue.
        var onnx = SurgeryService.Domain.Onnx.Proto.ModelProto.Parser.ParseFrom(OnnxMlp.Create(hidden: 16));
        onnx.Graph.Node[0].Name = new string('a', 250);
        var model = await client.PostAsync("/api/models", HttpExtensions.Form(onnx.ToByteArray(), "long-name.onnx"))
            .ExpectAsync(HttpStatusCode.Created);
        var dataset = await client.PostAsync("/api/datasets", HttpExtensions.Form(TestData.MnistNpz(64, 32), "small.npz"))
            .ExpectAsync(HttpStatusCode.Created);
        var job = await JobScenario.SubmitAsync(client, new
        {
            modelId = model.GetProperty("id").GetGuid(), datasetId = dataset.GetProperty("id").GetGuid(), checkpointInterval = 4,
            settings = new
            {
                iterations = 4, batchSize = 16, evalInterval = 4, cRate = 1.0,
                layers = new[] { new { pattern = string.Concat(Enumerable.Repeat("*a", 12)) + "!", cRate = 2.0 } },
            },
        });

        var finished = await JobScenario.WaitForAsync(client, job, JobScenario.IsFinished, JobTimeout, () => host.Worker!.Output);
        Assert.Equal("Succeeded", finished.GetProperty("state").GetString());
    }

    [Fact]
    public async Task RunningAFinishedJobAgainChangesNothing()
    {
        var client = host.Client();
        var (model, dataset) = await JobScenario.UploadOnnxMlpAsync(client, TestData.MnistNpz(128, 64), "small.npz");
        var job = await JobScenario.SubmitAsync(client, JobScenario.Request(
            model, dataset, iterations: 20, checkpointInterval: 10, evalInterval: 10));
        var before = await JobScenario.WaitForAsync(client, job, JobScenario.IsFinished, JobTimeout, () => host.Worker!.Output);
        Assert.Equal("Succeeded", before.GetProperty("state").GetString());

        var hangfire = host.Factory.Services.GetRequiredService<Hangfire.IBackgroundJobClient>();
        var again = hangfire.Create<SurgeryService.Infrastructure.Jobs.SurgeryJobRunner>(
            r => r.RunAsync(job, CancellationToken.None), new Hangfire.States.EnqueuedState("cpu"));
        var ran = await Eventually.TrueAsync(async () =>
            await host.Db.ScalarAsync<string>($"SELECT statename FROM hangfire.job WHERE id = {again}") == "Succeeded",
            TimeSpan.FromSeconds(30));

        Assert.True(ran, host.Worker!.Output);
        var after = await JobScenario.GetJobAsync(client, job);
        Assert.Equal(before.GetProperty("attempts").GetInt32(), after.GetProperty("attempts").GetInt32());
        Assert.Equal(before.GetProperty("finishedAt").GetString(), after.GetProperty("finishedAt").GetString());
        Assert.Equal(20L, await host.Db.ScalarAsync<long>($"SELECT count(*) FROM job_metrics WHERE \"JobId\" = '{job}'"));
    }

    [Fact]
    public async Task CancelStopsARunningJob()
    {
        var (client, model, job) = await RunningJobAsync();
        var inUse = await client.DeleteAsync($"/api/models/{model}").ExpectAsync(HttpStatusCode.Conflict);
        Assert.Contains(job.ToString(), inUse.GetProperty("detail").GetString());

        var cancel = await client.PostAsync($"/api/jobs/{job}/cancel", null).ExpectAsync(HttpStatusCode.Accepted);
        Assert.True(cancel.GetProperty("cancelRequested").GetBoolean());

        var cancelled = await JobScenario.WaitForAsync(client, job, JobScenario.IsFinished, TimeSpan.FromSeconds(30));
        Assert.Equal("Cancelled", cancelled.GetProperty("state").GetString());
        Assert.True(cancelled.GetProperty("iteration").GetInt32() < 200_000);
        await client.GetAsync($"/api/jobs/{job}/result").ExpectAsync(HttpStatusCode.Conflict);
        await client.PostAsync($"/api/jobs/{job}/cancel", null).ExpectAsync(HttpStatusCode.Conflict);
    }

    [Fact]
    public async Task DeletingARunningJobsHangfireJobCancelsIt()
    {
        var (client, _, job) = await RunningJobAsync();
        var hangfireId = await host.Db.ScalarAsync<string>($"SELECT \"HangfireJobId\" FROM jobs WHERE \"Id\" = '{job}'");

        // What the dashboard's Delete button does, in the Api's process: the job would otherwise stay Running for ever.
        Assert.True(host.Factory.Services.GetRequiredService<IBackgroundJobClient>().Delete(hangfireId));

        var cancelled = await JobScenario.WaitForAsync(client, job, JobScenario.IsFinished, TimeSpan.FromSeconds(30), () => host.Worker!.Output);
        Assert.Equal("Cancelled", cancelled.GetProperty("state").GetString());
        Assert.True(cancelled.GetProperty("iteration").GetInt32() < 200_000);
    }

    /// <summary>A job of 200,000 iterations, once the worker has trained its first.</summary>
    private async Task<(HttpClient Client, Guid Model, Guid Job)> RunningJobAsync()
    {
        var client = host.Client();
        var (model, dataset) = await JobScenario.UploadAsync(client);
        var job = await JobScenario.SubmitAsync(client, JobScenario.Request(model, dataset, iterations: 200_000, checkpointInterval: 1000));
        await JobScenario.WaitForAsync(client, job, j => j.GetProperty("iteration").GetInt32() > 0, JobTimeout, () => host.Worker!.Output);
        return (client, model, job);
    }

    [Fact]
    public async Task AJobThatCannotRunFailsWithAMessageTheUserCanActOn()
    {
        var client = host.Client();
        var (model, dataset) = await JobScenario.UploadAsync(client);
        var job = await JobScenario.SubmitAsync(client, new
        {
            modelId = model,
            datasetId = dataset,
            settings = new { iterations = 10, device = "cuda" },
        });

        var failed = await JobScenario.WaitForAsync(client, job, JobScenario.IsFinished, JobTimeout, () => host.Worker!.Output);

        Assert.Equal("Failed", failed.GetProperty("state").GetString());
        Assert.Contains("no CUDA device", failed.GetProperty("error").GetString());
        Assert.Equal(1, failed.GetProperty("attempts").GetInt32());
        var report = await client.GetAsync($"/api/jobs/{job}/report").ExpectAsync(HttpStatusCode.Conflict);
        Assert.Contains("Failed", report.GetProperty("detail").GetString());
    }

    private static double Accuracy(nn.Module<Tensor, Tensor> model)
    {
        var (_, _, xTest, yTest) = TestData.MnistSubset(1, JobScenario.TestSamples);
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        model.eval();
        var x = tensor(xTest.Select(b => (float)b).ToArray(), [JobScenario.TestSamples, 784]) * (1.0 / 255);
        var y = tensor(yTest.Select(b => (long)b).ToArray());
        var correct = model.forward(x).argmax(1).eq(y).sum().item<long>();
        return (double)correct / JobScenario.TestSamples;
    }

    private static async Task<List<(string Event, JsonElement Data)>> ReadEventsAsync(HttpClient client, Guid job, TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        using var response = await client.GetAsync($"/api/jobs/{job}/events", HttpCompletionOption.ResponseHeadersRead, cts.Token);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cts.Token), Encoding.UTF8);
        var events = new List<(string, JsonElement)>();
        string? type = null;
        while (await reader.ReadLineAsync(cts.Token) is { } line)
        {
            if (line.StartsWith("event: ", StringComparison.Ordinal)) type = line[7..];
            else if (line.StartsWith("data: ", StringComparison.Ordinal)) events.Add((type ?? "message", JsonDocument.Parse(line[6..]).RootElement.Clone()));
        }
        Assert.NotEmpty(events);
        return events;
    }
}
