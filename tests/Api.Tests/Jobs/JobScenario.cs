using System.Net;
using System.Text.Json;
using SurgeryService.Api.Tests.Infrastructure;

namespace SurgeryService.Api.Tests.Jobs;

/// <summary>The steps a pipeline takes: upload a model and a dataset, submit, poll.</summary>
public static class JobScenario
{
    public const int TrainSamples = 512;
    public const int TestSamples = 200;

    public static async Task<(Guid Model, Guid Dataset)> UploadAsync(HttpClient client, string architecture = "lenet-300-100")
    {
        var model = await client.PostAsync("/api/models",
            HttpExtensions.Form(TestData.TorchSharpWeights(architecture), "dense.bin", ("architecture", architecture)))
            .ExpectAsync(HttpStatusCode.Created);
        var dataset = await client.PostAsync("/api/datasets",
            HttpExtensions.Form(TestData.MnistNpz(TrainSamples, TestSamples), "mnist-small.npz"))
            .ExpectAsync(HttpStatusCode.Created);
        return (model.GetProperty("id").GetGuid(), dataset.GetProperty("id").GetGuid());
    }

    /// <summary>A small ONNX MLP (16 hidden units) and a dataset upload in whatever format the caller tests.</summary>
    public static async Task<(Guid Model, Guid Dataset)> UploadOnnxMlpAsync(HttpClient client, byte[] dataset, string datasetFileName)
    {
        var model = await client.PostAsync("/api/models", HttpExtensions.Form(OnnxMlp.Create(hidden: 16), "mlp.onnx"))
            .ExpectAsync(HttpStatusCode.Created);
        var stored = await client.PostAsync("/api/datasets", HttpExtensions.Form(dataset, datasetFileName))
            .ExpectAsync(HttpStatusCode.Created);
        return (model.GetProperty("id").GetGuid(), stored.GetProperty("id").GetGuid());
    }

    public static object Request(Guid model, Guid dataset, int iterations, int checkpointInterval, int evalInterval = 50,
        int batchSize = 32) => new
    {
        modelId = model,
        datasetId = dataset,
        method = "dns",
        checkpointInterval,
        settings = new { iterations, batchSize, evalInterval, learningRate = 0.01, cRate = 1.0, gamma = 0.01, seed = 7 },
        preprocessing = new { trainLimit = TrainSamples, testLimit = TestSamples },
    };

    public static async Task<Guid> SubmitAsync(HttpClient client, object request)
    {
        var response = await client.PostJsonAsync("/api/jobs", request);
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.Accepted, body);
        Assert.NotNull(response.Headers.Location);
        var job = JsonDocument.Parse(body).RootElement;
        Assert.Equal($"/api/jobs/{job.GetProperty("id").GetGuid()}", response.Headers.Location!.OriginalString);
        return job.GetProperty("id").GetGuid();
    }

    public static async Task<JsonElement> GetJobAsync(HttpClient client, Guid job) =>
        await client.GetAsync($"/api/jobs/{job}").ExpectAsync(HttpStatusCode.OK);

    public static async Task<JsonElement> WaitForAsync(HttpClient client, Guid job, Func<JsonElement, bool> condition,
        TimeSpan timeout, Func<string>? diagnostics = null)
    {
        JsonElement last = default;
        var reached = await Eventually.TrueAsync(async () =>
        {
            last = await GetJobAsync(client, job);
            return condition(last);
        }, timeout, TimeSpan.FromMilliseconds(200));
        Assert.True(reached, $"job did not reach the expected state; last: {last}\n{diagnostics?.Invoke()}");
        return last;
    }

    /// <summary>Every answer of <c>GET /api/jobs/{id}</c>, polled until <paramref name="stop"/> holds for one (that one is last).</summary>
    public static async Task<List<JsonElement>> WatchAsync(HttpClient client, Guid job, Func<JsonElement, bool> stop, TimeSpan timeout,
        Func<string>? diagnostics = null)
    {
        var seen = new List<JsonElement>();
        var reached = await Eventually.TrueAsync(async () =>
        {
            seen.Add(await GetJobAsync(client, job));
            return stop(seen[^1]);
        }, timeout, TimeSpan.FromMilliseconds(100));
        Assert.True(reached, $"job did not reach the expected state; last: {seen.LastOrDefault()}\n{diagnostics?.Invoke()}");
        return seen;
    }

    public static bool IsFinished(JsonElement job) => job.GetProperty("state").GetString() is "Succeeded" or "Failed" or "Cancelled";

    /// <summary>
    /// How many of the first <paramref name="count"/> MNIST test images a delivered ONNX model classifies right in ONNX
    /// Runtime (pixels scaled to [0, 1], the class of the highest of ten scores).
    /// </summary>
    public static int OnnxRuntimeCorrect(byte[] model, byte[] testImages, byte[] testLabels, int count) =>
        OnnxRuntimeHits(model, testImages, testLabels, count).Count(hit => hit);

    /// <summary>For each of the first <paramref name="count"/> images, whether ONNX Runtime classifies it right.</summary>
    public static bool[] OnnxRuntimeHits(byte[] model, byte[] testImages, byte[] testLabels, int count)
    {
        using var session = new Microsoft.ML.OnnxRuntime.InferenceSession(model);
        var input = testImages.Take(count * 784).Select(b => b / 255f).ToArray();
        using var value = Microsoft.ML.OnnxRuntime.OrtValue.CreateTensorValueFromMemory(input, [count, 784]);
        using var runOptions = new Microsoft.ML.OnnxRuntime.RunOptions();
        using var outputs = session.Run(runOptions, [session.InputMetadata.Keys.First()], [value], [session.OutputMetadata.Keys.First()]);
        var scores = outputs[0].GetTensorDataAsSpan<float>().ToArray();
        return Enumerable.Range(0, count).Select(i =>
        {
            var row = scores.AsSpan(i * 10, 10);
            var max = float.MinValue;
            foreach (var v in row) max = Math.Max(max, v);
            return row.IndexOf(max) == testLabels[i];
        }).ToArray();
    }
}
