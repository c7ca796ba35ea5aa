using System.Net;
using System.Text.Json;
using SurgeryService.Api.Tests.Infrastructure;
using SurgeryService.Domain.Onnx.Proto;

namespace SurgeryService.Api.Tests.Jobs;

public sealed class Int8Host() : ServiceHost("int8", withWorker: false, new Dictionary<string, string?>
{
    ["Api:RunWorker"] = "true",
    ["Hangfire:QueuePollIntervalMilliseconds"] = "200",
    ["Jobs:Int8CalibrationSamples"] = "200",
    ["Jobs:DeploymentRuns"] = "5",
    ["Jobs:DeploymentWarmupRuns"] = "1",
});

/// <summary><c>output.quantize: int8</c> through the service: the job, its downloads, headers and report.</summary>
public sealed class Int8JobTests(Int8Host host) : IClassFixture<Int8Host>
{
    private static readonly TimeSpan JobTimeout = TimeSpan.FromSeconds(120);

    [Fact]
    public async Task AnInt8JobDeliversAQdqModelWhoseOnnxRuntimeTop1IsTheReportedOneAndEveryDownloadStatesItsStorage()
    {
        var client = host.Client();
        var (model, dataset) = await JobScenario.UploadOnnxMlpAsync(client,
            TestData.MnistNpz(JobScenario.TrainSamples, JobScenario.TestSamples), "mnist-small.npz");
        var request = (JsonElement)JsonSerializer.SerializeToElement(JobScenario.Request(model, dataset, iterations: 60, checkpointInterval: 30));
        var job = await JobScenario.SubmitAsync(client, With(request, "output", new { quantize = "int8" }));
        var done = await JobScenario.WaitForAsync(client, job, JobScenario.IsFinished, JobTimeout);

        Assert.Equal("Succeeded", done.GetProperty("state").GetString());
        Assert.Equal(["onnx", "onnx-sparse", "onnx-int8"], done.GetProperty("resultFormats").EnumerateArray().Select(f => f.GetString()));
        var report = await client.GetAsync($"/api/jobs/{job}/report").ExpectAsync(HttpStatusCode.OK);
        Assert.Equal("int8", report.GetProperty("output").GetProperty("quantize").GetString());

        // Every download states its storage in a header, and the report lists each format with that storage and its size.
        var files = report.GetProperty("files").EnumerateArray().ToDictionary(f => f.GetProperty("role").GetString()!);
        Assert.Equal(["original", "onnx", "onnx-sparse", "onnx-int8"], files.Keys);
        var downloads = new Dictionary<string, byte[]>();
        foreach (var format in new[] { "onnx", "onnx-sparse", "onnx-int8" })
        {
            var response = await client.GetAsync($"/api/jobs/{job}/result?format={format}");
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            downloads[format] = await response.Content.ReadAsByteArrayAsync();
            var storage = Assert.Single(response.Headers.GetValues("X-Model-Storage"));
            Assert.Equal(files[format].GetProperty("storage").GetString(), storage);
            Assert.Equal(files[format].GetProperty("size").GetInt64(), downloads[format].LongLength);
        }
        Assert.Equal("dense", files["onnx"].GetProperty("storage").GetString());
        Assert.Equal(downloads["onnx-sparse"].AsSpan().SequenceEqual(downloads["onnx"]) ? "dense" : "sparse",
            files["onnx-sparse"].GetProperty("storage").GetString());
        Assert.Equal("int8", files["onnx-int8"].GetProperty("storage").GetString());

        // The QDQ model loads in ONNX Runtime and scores exactly what the deployment report states.
        var int8 = ModelProto.Parser.ParseFrom(downloads["onnx-int8"]);
        Assert.Contains(int8.Graph.Node, n => n.OpType == "QuantizeLinear");
        Assert.Equal(2, int8.Graph.Initializer.Count(i => i.Name.EndsWith(".weight_quantized", StringComparison.Ordinal) && i.DataType == 3));
        var (_, _, xTest, yTest) = TestData.MnistSubset(1, JobScenario.TestSamples);
        var top1 = (double)JobScenario.OnnxRuntimeCorrect(downloads["onnx-int8"], xTest, yTest, JobScenario.TestSamples) / JobScenario.TestSamples;
        var deployment = report.GetProperty("deployment");
        var quantization = deployment.GetProperty("quantization");
        Assert.Equal("int8", quantization.GetProperty("delivered").GetString());
        Assert.Equal("minmax", quantization.GetProperty("calibrationMethod").GetString());
        Assert.Equal(200, quantization.GetProperty("calibrationSamples").GetInt32());
        Assert.Equal("test", quantization.GetProperty("budgetSplit").GetString()); // fixed mode holds no validation split out
        Assert.Equal(top1, quantization.GetProperty("int8Top1").GetDouble(), 12);
        var models = deployment.GetProperty("report").GetProperty("models").EnumerateArray().ToDictionary(m => m.GetProperty("name").GetString()!);
        Assert.Equal(["original", "pruned-fp32", "pruned-int8"], models.Keys);
        Assert.Equal(top1, models["pruned-int8"].GetProperty("top1").GetDouble(), 12);
        Assert.Equal(downloads["onnx-int8"].LongLength, models["pruned-int8"].GetProperty("denseBytes").GetInt64());
        Assert.Equal(downloads["onnx"].LongLength, models["pruned-fp32"].GetProperty("denseBytes").GetInt64());
        Assert.Equal(downloads["onnx-sparse"].LongLength, models["pruned-fp32"].GetProperty("sparseBytes").GetInt64());
        Assert.Equal(files["original"].GetProperty("size").GetInt64(), models["original"].GetProperty("denseBytes").GetInt64());
        Assert.Equal(1, deployment.GetProperty("report").GetProperty("intraOpThreads").GetInt32());
        foreach (var m in models.Values)
        {
            Assert.Equal([1, 64], m.GetProperty("latency").EnumerateArray().Select(l => l.GetProperty("batch").GetInt32()));
            Assert.All(m.GetProperty("latency").EnumerateArray(), l =>
                Assert.True(l.GetProperty("p50Ms").GetDouble() > 0 && l.GetProperty("p90Ms").GetDouble() >= l.GetProperty("p50Ms").GetDouble()));
        }
        var log = report.GetProperty("log").EnumerateArray().Where(e => e.GetProperty("kind").GetString() == "Deployment")
            .Select(e => e.GetProperty("message").GetString()!).ToList();
        Assert.StartsWith("int8 delivered: test top-1 ", log[0]);
        Assert.Contains(log, l => l.StartsWith("deployment pruned-int8 (int8): top-1 ", StringComparison.Ordinal) && l.Contains("batch 64 p50 "));

        // The SVG shows the same deployment figures: the decision, then one row per model with its ORT top-1.
        var svgResponse = await client.GetAsync($"/api/jobs/{job}/report.svg");
        Assert.Equal(HttpStatusCode.OK, svgResponse.StatusCode);
        var svg = System.Xml.Linq.XDocument.Parse(await svgResponse.Content.ReadAsStringAsync());
        var lines = svg.Descendants().Where(e => e.Name.LocalName == "text").Select(e => e.Value).ToList();
        Assert.Contains("Deployment, measured in ONNX Runtime", lines);
        Assert.Contains(lines, l => l.StartsWith("delivered int8", StringComparison.Ordinal));
        foreach (var (name, figures) in models)
        {
            var shown = (100 * figures.GetProperty("top1").GetDouble()).ToString("0.00", System.Globalization.CultureInfo.InvariantCulture);
            Assert.Contains(lines, l => l.StartsWith($"{name} (", StringComparison.Ordinal) && l.Contains($"top-1 {shown}%") && l.Contains("batch 64 "));
        }
    }

    [Fact]
    public async Task ABudgetJobChecksInt8OnTheSplitTheSearchValidatedOnAgainstTheStartingModel()
    {
        var client = host.Client();
        var (model, dataset) = await BudgetModeTests.UploadAsync(client);
        var request = JsonSerializer.SerializeToElement(BudgetModeTests.BudgetRequest(model, dataset, iterations: 300, checkpointInterval: 100,
            new { maxAccuracyDrop = 1.0, validation = 0.2 }));
        var job = await JobScenario.SubmitAsync(client, With(request, "output", new { quantize = "int8" }));
        var done = await JobScenario.WaitForAsync(client, job, JobScenario.IsFinished, TimeSpan.FromSeconds(240));

        Assert.Equal("Succeeded", done.GetProperty("state").GetString());
        var validation = done.GetProperty("validation");
        var report = await client.GetAsync($"/api/jobs/{job}/report").ExpectAsync(HttpStatusCode.OK);
        var quantization = report.GetProperty("deployment").GetProperty("quantization");
        // The floor is the budget's: the starting model's top-1 on the search's validation split, less maxAccuracyDrop.
        Assert.StartsWith("validation", quantization.GetProperty("budgetSplit").GetString());
        Assert.Equal(validation.GetProperty("samples").GetInt32(), quantization.GetProperty("budgetSamples").GetInt32());
        Assert.Equal(validation.GetProperty("top1Before").GetDouble() - 0.01, quantization.GetProperty("floor").GetDouble(), 9);
        var delivered = quantization.GetProperty("delivered").GetString();
        var int8Top1 = quantization.GetProperty("int8Top1").GetDouble();
        Assert.Equal(int8Top1 >= quantization.GetProperty("floor").GetDouble() - 1e-9 ? "int8" : "fp32", delivered);
    }

    [Fact]
    public async Task AModelInt8CannotBeMadeOfIsDeliveredInFloat32AndTheInt8DownloadSaysWhy()
    {
        var client = host.Client();
        var proto = ModelProto.Parser.ParseFrom(OnnxMlp.Create(hidden: 16));
        proto.OpsetImport[0].Version = 11;
        var model = await client.PostAsync("/api/models", HttpExtensions.Form(Google.Protobuf.MessageExtensions.ToByteArray(proto), "mlp11.onnx"))
            .ExpectAsync(HttpStatusCode.Created);
        var dataset = await client.PostAsync("/api/datasets", HttpExtensions.Form(TestData.MnistNpz(256, 100), "mnist.npz"))
            .ExpectAsync(HttpStatusCode.Created);
        var request = JsonSerializer.SerializeToElement(JobScenario.Request(model.GetProperty("id").GetGuid(),
            dataset.GetProperty("id").GetGuid(), iterations: 20, checkpointInterval: 20));
        var job = await JobScenario.SubmitAsync(client, With(request, "output", new { quantize = "int8" }));
        var done = await JobScenario.WaitForAsync(client, job, JobScenario.IsFinished, JobTimeout);

        Assert.Equal("Succeeded", done.GetProperty("state").GetString());
        Assert.Equal(["onnx", "onnx-sparse"], done.GetProperty("resultFormats").EnumerateArray().Select(f => f.GetString()));
        var report = await client.GetAsync($"/api/jobs/{job}/report").ExpectAsync(HttpStatusCode.OK);
        var quantization = report.GetProperty("deployment").GetProperty("quantization");
        Assert.Equal("fp32", quantization.GetProperty("delivered").GetString());
        var reason = quantization.GetProperty("fallbackReason").GetString()!;
        Assert.Contains("opset 13", reason);
        var refused = await client.GetAsync($"/api/jobs/{job}/result?format=onnx-int8").ExpectAsync(HttpStatusCode.UnprocessableEntity);
        Assert.Contains(reason, refused.GetProperty("detail").GetString());
    }

    [Fact]
    public async Task Int8OutputForTorchSharpWeightsIsRefusedAtSubmission()
    {
        var client = host.Client();
        var (model, dataset) = await JobScenario.UploadAsync(client);
        var request = JsonSerializer.SerializeToElement(JobScenario.Request(model, dataset, iterations: 10, checkpointInterval: 10));

        var response = await client.PostJsonAsync("/api/jobs", With(request, "output", new { quantize = "int8" }));

        Assert.Equal(HttpStatusCode.UnprocessableEntity, response.StatusCode);
        var problem = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        Assert.Contains("ONNX upload", problem.GetProperty("errors").GetProperty("output.quantize")[0].GetString());
        var unknown = await client.PostJsonAsync("/api/jobs", With(request, "output", new { quantize = "int4" }));
        Assert.Equal(HttpStatusCode.BadRequest, unknown.StatusCode);
    }

    private static Dictionary<string, object?> With(JsonElement request, string name, object value)
    {
        var body = request.EnumerateObject().ToDictionary(p => p.Name, p => (object?)p.Value);
        body[name] = value;
        return body;
    }
}
