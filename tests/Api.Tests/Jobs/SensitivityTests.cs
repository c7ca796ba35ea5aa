using System.Net;
using System.Text.Json;
using System.Xml.Linq;
using SurgeryService.Api.Tests.Infrastructure;
using SurgeryService.Domain.Surgery;
using Xunit.Abstractions;

namespace SurgeryService.Api.Tests.Jobs;

public sealed class SensitivityHost() : ServiceHost("sensitivity", withWorker: false);

/// <summary>
/// Sensitivity analysis on its own, through HTTP with a real Worker process and PostgreSQL: a trained ONNX MLP and a
/// dataset are answered with per-layer curves (JSON and SVG) and no model; budget-mode jobs answer the same way.
/// </summary>
public sealed class SensitivityTests(SensitivityHost host, ITestOutputHelper output) : IClassFixture<SensitivityHost>
{
    /// <summary>Every curve's kept shares: the dense model, then the ladder.</summary>
    private static readonly double[] Shares = [1, .. Sensitivity.Ladder];

    private static async Task<Guid> SubmitAsync(HttpClient client, object request)
    {
        var response = await client.PostJsonAsync("/api/jobs/sensitivity", request);
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.Accepted, body);
        var job = JsonDocument.Parse(body).RootElement;
        Assert.Equal($"/api/jobs/{job.GetProperty("id").GetGuid()}", response.Headers.Location!.OriginalString);
        return job.GetProperty("id").GetGuid();
    }

    [Fact]
    public async Task ASensitivityJobMeasuresEveryPrunableLayerAtEveryLadderShareAndDeliversNoModel()
    {
        var client = host.Client();
        var (model, dataset) = await BudgetModeTests.UploadAsync(client);
        var job = await SubmitAsync(client, new { modelId = model, datasetId = dataset, validation = 0.2 });
        var queued = await JobScenario.GetJobAsync(client, job);
        Assert.Equal("sensitivity", queued.GetProperty("mode").GetString());
        Assert.Equal(2, queued.GetProperty("totalIterations").GetInt32()); // progress counts the MLP's two layers

        host.Worker ??= host.StartWorker();
        var done = await JobScenario.WaitForAsync(client, job, JobScenario.IsFinished, TimeSpan.FromSeconds(180), () => host.Worker.Output);
        output.WriteLine(done.ToString());
        Assert.Equal("Succeeded", done.GetProperty("state").GetString());
        Assert.Equal(2, done.GetProperty("iteration").GetInt32());
        Assert.Equal(1.0, done.GetProperty("progress").GetDouble());
        Assert.Empty(done.GetProperty("resultFormats").EnumerateArray());

        var curves = await client.GetAsync($"/api/jobs/{job}/sensitivity").ExpectAsync(HttpStatusCode.OK);
        output.WriteLine(curves.ToString());
        Assert.Equal("sensitivity", curves.GetProperty("mode").GetString());
        Assert.Equal(400, curves.GetProperty("validationSamples").GetInt32()); // 20% of 2,000 training samples
        var before = curves.GetProperty("validationTop1Before").GetDouble();
        Assert.True(before > 0.8, $"the trained MLP starts at validation top-1 {before}");
        var layers = curves.GetProperty("curves").EnumerateArray().ToList();
        Assert.Equal(2, layers.Count);
        Assert.Equal(new long[] { 784 * 32 + 32, 32 * 10 + 10 }, layers.Select(l => l.GetProperty("total").GetInt64()));
        Assert.All(layers, l => Assert.Equal("fullyConnected", l.GetProperty("kind").GetString()));
        foreach (var layer in layers)
        {
            var points = layer.GetProperty("points").EnumerateArray().ToList();
            Assert.Equal(Shares, points.Select(p => p.GetProperty("keptFraction").GetDouble()));
            Assert.Equal(before, points[0].GetProperty("top1").GetDouble());
            Assert.All(points, p => Assert.InRange(p.GetProperty("top1").GetDouble(), 0, 1));
        }
        // Keeping 0.2% of the first layer (50 of 25,120 weights) must cost accuracy: the layer really was pruned.
        var firstAtSmallest = layers[0].GetProperty("points").EnumerateArray().Last().GetProperty("top1").GetDouble();
        Assert.True(firstAtSmallest < before - 0.2, $"first layer at 0.2% kept: {firstAtSmallest} against {before}");

        var log = await client.GetAsync($"/api/jobs/{job}/log").ExpectAsync(HttpStatusCode.OK);
        var messages = log.EnumerateArray().Where(e => e.GetProperty("kind").GetString() == "Sensitivity")
            .Select(e => e.GetProperty("message").GetString()!).ToList();
        Assert.Equal(3, messages.Count); // the starting model, then one line per layer
        Assert.StartsWith("starting model", messages[0]);

        // No model output: the download and the model report say so and point at the curves.
        var result = await client.GetAsync($"/api/jobs/{job}/result").ExpectAsync(HttpStatusCode.Conflict);
        Assert.Contains("no model output", result.GetProperty("detail").GetString());
        Assert.Contains($"/api/jobs/{job}/sensitivity", result.GetProperty("detail").GetString());
        await client.GetAsync($"/api/jobs/{job}/report").ExpectAsync(HttpStatusCode.Conflict);
        await client.GetAsync($"/api/jobs/{job}/report.svg").ExpectAsync(HttpStatusCode.Conflict);

        await AssertSvgHasOneLinePerLayerAsync(client, job, 2);
    }

    private async Task AssertSvgHasOneLinePerLayerAsync(HttpClient client, Guid job, int layers)
    {
        var response = await client.GetAsync($"/api/jobs/{job}/sensitivity.svg");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("image/svg+xml", response.Content.Headers.ContentType?.MediaType);
        var svg = XDocument.Parse(await response.Content.ReadAsStringAsync());
        XNamespace ns = "http://www.w3.org/2000/svg";
        Assert.Equal(ns + "svg", svg.Root!.Name);
        var lines = svg.Descendants(ns + "polyline").ToList();
        Assert.Equal(layers, lines.Count);
        // Each line has a vertex per kept share, left to right as the share falls on the log axis.
        Assert.All(lines, l =>
        {
            var xs = l.Attribute("points")!.Value.Split(' ').Select(p => double.Parse(p.Split(',')[0], System.Globalization.CultureInfo.InvariantCulture)).ToList();
            Assert.Equal(Shares.Length, xs.Count);
            Assert.Equal(xs.Order(), xs);
        });
        output.WriteLine($"SVG: {lines.Count} lines, {svg.Descendants(ns + "circle").Count()} points");
    }

    [Fact]
    public async Task ABudgetJobsCurvesAreReadThroughTheSameEndpoints()
    {
        var client = host.Client();
        var (model, dataset) = await BudgetModeTests.UploadAsync(client);
        var job = await JobScenario.SubmitAsync(client,
            BudgetModeTests.BudgetRequest(model, dataset, iterations: 100, checkpointInterval: 50, new { maxAccuracyDrop = 1.0, validation = 0.2 }));
        host.Worker ??= host.StartWorker();
        var done = await JobScenario.WaitForAsync(client, job, JobScenario.IsFinished, TimeSpan.FromSeconds(180), () => host.Worker.Output);
        Assert.Equal("Succeeded", done.GetProperty("state").GetString());

        var curves = await client.GetAsync($"/api/jobs/{job}/sensitivity").ExpectAsync(HttpStatusCode.OK);
        Assert.Equal("budget", curves.GetProperty("mode").GetString());
        var report = await client.GetAsync($"/api/jobs/{job}/report").ExpectAsync(HttpStatusCode.OK);
        var budget = report.GetProperty("budget");
        Assert.Equal(budget.GetProperty("validationSamples").GetInt32(), curves.GetProperty("validationSamples").GetInt32());
        Assert.Equal(budget.GetProperty("validationTop1Before").GetDouble(), curves.GetProperty("validationTop1Before").GetDouble());
        Assert.Equal(
            budget.GetProperty("sensitivity").EnumerateArray().Select(c => c.GetProperty("layer").GetString()),
            curves.GetProperty("curves").EnumerateArray().Select(c => c.GetProperty("layer").GetString()));
        Assert.All(curves.GetProperty("curves").EnumerateArray(),
            c => Assert.Equal(Shares, c.GetProperty("points").EnumerateArray().Select(p => p.GetProperty("keptFraction").GetDouble())));
        await AssertSvgHasOneLinePerLayerAsync(client, job, 2);
    }

    [Fact]
    public async Task AJobWithoutCurvesOrAnUnknownJobIsAProblem()
    {
        var client = host.Client();
        var missing = Guid.NewGuid();
        var notFound = await client.GetAsync($"/api/jobs/{missing}/sensitivity").ExpectAsync(HttpStatusCode.NotFound);
        Assert.Contains(missing.ToString(), notFound.GetProperty("detail").GetString());
        await client.GetAsync($"/api/jobs/{missing}/sensitivity.svg").ExpectAsync(HttpStatusCode.NotFound);

        // A fixed-threshold job never measures sensitivity, whatever its state.
        var (model, dataset) = await BudgetModeTests.UploadAsync(client);
        var fixedJob = await JobScenario.SubmitAsync(client, new
        {
            modelId = model,
            datasetId = dataset,
            settings = new { iterations = 1_000_000, cRate = 1.0 },
        });
        var conflict = await client.GetAsync($"/api/jobs/{fixedJob}/sensitivity").ExpectAsync(HttpStatusCode.Conflict);
        Assert.Contains("POST /api/jobs/sensitivity", conflict.GetProperty("detail").GetString());
        await client.GetAsync($"/api/jobs/{fixedJob}/sensitivity.svg").ExpectAsync(HttpStatusCode.Conflict);
        await client.PostAsync($"/api/jobs/{fixedJob}/cancel", null).ExpectAsync(HttpStatusCode.Accepted);
    }

    [Fact]
    public async Task TheSensitivityRequestsErrorsNameEachField()
    {
        var client = host.Client();
        var (model, dataset) = await BudgetModeTests.UploadAsync(client);

        var incomplete = await client.PostJsonAsync("/api/jobs/sensitivity", new { modelId = model })
            .ExpectAsync(HttpStatusCode.BadRequest);
        Assert.True(incomplete.GetProperty("errors").TryGetProperty("datasetId", out _), incomplete.ToString());

        var unknown = await client.PostJsonAsync("/api/jobs/sensitivity", new { modelId = Guid.NewGuid(), datasetId = dataset })
            .ExpectAsync(HttpStatusCode.UnprocessableEntity);
        Assert.Contains("there is no model", unknown.GetProperty("errors").GetProperty("modelId")[0].GetString());

        foreach (var share in new[] { 0.0, 0.9, -0.1 })
        {
            var outOfRange = await client.PostJsonAsync("/api/jobs/sensitivity", new { modelId = model, datasetId = dataset, validation = share })
                .ExpectAsync(HttpStatusCode.UnprocessableEntity);
            Assert.Contains("(0, 0.5]", outOfRange.GetProperty("errors").GetProperty("validation")[0].GetString());
        }

        var badScale = await client.PostJsonAsync("/api/jobs/sensitivity",
            new { modelId = model, datasetId = dataset, preprocessing = new { scale = 0 } }).ExpectAsync(HttpStatusCode.UnprocessableEntity);
        Assert.True(badScale.GetProperty("errors").TryGetProperty("preprocessing.scale", out _), badScale.ToString());

        // The surgery endpoint does not take the analysis in its settings: one way to ask for it.
        var viaSettings = await client.PostJsonAsync("/api/jobs", new
        {
            modelId = model,
            datasetId = dataset,
            settings = new { sensitivity = new { validation = 0.1 } },
        }).ExpectAsync(HttpStatusCode.BadRequest);
        Assert.Contains("POST /api/jobs/sensitivity", viaSettings.GetProperty("errors").GetProperty("settings.sensitivity")[0].GetString());
    }

    [Fact]
    public async Task SwaggerDocumentsTheSensitivityEndpointsWithTheirStatusesAndAnExample()
    {
        var document = await host.Client(null).GetAsync("/swagger/v1/swagger.json").ExpectAsync(HttpStatusCode.OK);
        var paths = document.GetProperty("paths");
        var submit = paths.GetProperty("/api/jobs/sensitivity").GetProperty("post");
        Assert.Contains("sensitivity", submit.GetProperty("summary").GetString(), StringComparison.OrdinalIgnoreCase);
        Assert.Equal(0.1, submit.GetProperty("requestBody").GetProperty("content").GetProperty("application/json")
            .GetProperty("example").GetProperty("validation").GetDouble());
        string[] Statuses(string path, string method) => paths.GetProperty(path).GetProperty(method)
            .GetProperty("responses").EnumerateObject().Select(r => r.Name).Order().ToArray();
        Assert.Equal(["202", "400", "422", "503"], Statuses("/api/jobs/sensitivity", "post"));
        Assert.Equal(["200", "404", "409", "503"], Statuses("/api/jobs/{id}/sensitivity", "get"));
        Assert.Equal(["200", "404", "409", "503"], Statuses("/api/jobs/{id}/sensitivity.svg", "get"));
    }
}
