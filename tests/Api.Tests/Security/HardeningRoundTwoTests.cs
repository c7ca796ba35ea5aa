using System.IO.Compression;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Google.Protobuf;
using SurgeryService.Api.Tests.Infrastructure;
using SurgeryService.Api.Tests.Jobs;
using SurgeryService.Domain.Onnx.Proto;

namespace SurgeryService.Api.Tests.Security;

public sealed class HardeningRoundTwoHost() : ServiceHost("hardening2", withWorker: false);

/// <summary>Issue 27, findings 2, 3, 4, 6, 7 and 9: each test fails on the code before its fix. No worker: jobs stay queued.</summary>
public sealed class HardeningRoundTwoTests(HardeningRoundTwoHost host) : IClassFixture<HardeningRoundTwoHost>
{
    private const string QueuedWithoutInput =
        "SELECT count(*) FROM jobs WHERE \"State\" = 'Queued' AND (\"ModelId\" IS NULL OR \"DatasetId\" IS NULL)";

    [Theory]
    [InlineData("models")]
    [InlineData("datasets")]
    public async Task ADeleteRacingSubmitsEitherWaitsForThemAndRefusesOrWinsAndTheyAre422(string what)
    {
        var client = host.Client();
        // A burst of submits, or a stream of them one every 2 ms, with the delete somewhere inside.
        foreach (var (spacing, delay) in new[] { (0, 0), (0, 3), (0, 8), (0, 15), (2, 10), (2, 40), (2, 85) })
        {
            var (model, dataset) = await JobScenario.UploadAsync(client);
            var submits = Enumerable.Range(0, 48).Select(i => Task.Run(async () =>
            {
                await Task.Delay(spacing * i);
                return await client.PostJsonAsync("/api/jobs", JobScenario.Request(model, dataset, 10, 5));
            })).ToList();
            await Task.Delay(delay);
            var delete = await client.DeleteAsync($"/api/{what}/{(what == "models" ? model : dataset)}");
            var answers = await Task.WhenAll(submits);

            var statuses = answers.Select(a => a.StatusCode).ToList();
            Assert.All(statuses, s => Assert.True(s is HttpStatusCode.Accepted or HttpStatusCode.UnprocessableEntity, $"a submit answered {(int)s}"));
            Assert.True(delete.StatusCode is HttpStatusCode.NoContent or HttpStatusCode.Conflict, $"the delete answered {(int)delete.StatusCode}");
            var accepted = statuses.Count(s => s == HttpStatusCode.Accepted);
            // Exclusive: a delete that went through saw no job (so none was accepted); one that was refused saw the accepted ones.
            if (delete.StatusCode == HttpStatusCode.NoContent) Assert.Equal(0, accepted);
            else Assert.True(accepted > 0, "the delete was refused for jobs that do not exist");
            foreach (var refused in answers.Where(a => a.StatusCode == HttpStatusCode.UnprocessableEntity))
            {
                var detail = (await refused.JsonAsync()).GetProperty("errors").GetRawText();
                Assert.Contains(what == "models" ? "model" : "dataset", detail);
            }
            Assert.Equal(0, await host.Db.ScalarAsync<long>(QueuedWithoutInput));
            foreach (var job in answers.Where(a => a.StatusCode == HttpStatusCode.Accepted))
            {
                await client.PostAsync($"/api/jobs/{(await job.JsonAsync()).GetProperty("id").GetGuid()}/cancel", null)
                    .ExpectAsync(HttpStatusCode.Accepted);
            }
        }
    }

    [Theory]
    [InlineData("models")]
    [InlineData("datasets")]
    public async Task ParallelDeletesOfOneObjectAnswerOne204AndOtherwise404(string what)
    {
        var client = host.Client();
        for (var round = 0; round < 3; round++)
        {
            var (model, dataset) = await JobScenario.UploadAsync(client);
            var path = $"/api/{what}/{(what == "models" ? model : dataset)}";
            var answers = await Task.WhenAll(Enumerable.Range(0, 12).Select(_ => Task.Run(() => client.DeleteAsync(path))));

            Assert.Equal(1, answers.Count(a => a.StatusCode == HttpStatusCode.NoContent));
            foreach (var answer in answers.Where(a => a.StatusCode != HttpStatusCode.NoContent))
            {
                Assert.Equal(HttpStatusCode.NotFound, answer.StatusCode);
                Assert.Equal("application/problem+json", answer.Content.Headers.ContentType?.MediaType);
            }
        }
    }

    public static TheoryData<string, string> BrokenGraphs => new()
    {
        { "cycle", "node 'fc1' reads 'a' before node 'relu1' writes it" },
        { "self-loop", "node 'relu1' reads its own output 'a'" },
        { "missing weight", "node 'fc2' reads 'fc2.weight', which no node, initializer or graph input provides" },
        { "two writers", "node 'relu2' writes 'a', which node 'relu1' already writes" },
    };

    [Theory]
    [MemberData(nameof(BrokenGraphs))]
    public async Task BrokenOnnxGraphsAreRefusedAtUploadNamingTheNode(string kind, string expected)
    {
        var modelsBefore = await host.Db.ScalarAsync<long>("SELECT count(*) FROM models");
        var response = await host.Client().PostAsync("/api/models", HttpExtensions.Form(BrokenGraph(kind), $"{kind}.onnx"))
            .ExpectAsync(HttpStatusCode.UnprocessableEntity);

        Assert.Contains(expected, response.GetProperty("detail").GetString());
        Assert.Equal(modelsBefore, await host.Db.ScalarAsync<long>("SELECT count(*) FROM models"));
    }

    internal static byte[] BrokenGraph(string kind) => Mlp(graph =>
    {
        switch (kind)
        {
            case "cycle": graph.Node[0].Input[0] = "a"; break; // fc1 reads relu1's output, relu1 reads fc1's
            case "self-loop": graph.Node[1].Input[0] = "a"; break;
            case "missing weight": graph.Initializer.Remove(graph.Initializer.Single(i => i.Name == "fc2.weight")); break;
            default: graph.Node.Insert(2, new NodeProto { OpType = "Relu", Name = "relu2", Input = { "h" }, Output = { "a" } }); break;
        }
    });

    [Fact]
    public async Task PerChannelPreprocessingMustMatchTheDatasetsChannels()
    {
        var client = host.Client();
        var (model, dataset) = await JobScenario.UploadAsync(client, "lenet-5"); // MNIST: 1 channel
        object Request(double[] mean, double[] std) => new
        {
            modelId = model, datasetId = dataset, settings = new { iterations = 10, cRate = 1 }, preprocessing = new { mean, std },
        };

        var problem = await client.PostJsonAsync("/api/jobs", Request([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]))
            .ExpectAsync(HttpStatusCode.UnprocessableEntity);
        var errors = problem.GetProperty("errors");
        Assert.Contains("has 3 values but the dataset's samples have 1 channel(s)", errors.GetProperty("preprocessing.mean")[0].GetString());
        Assert.Contains("has 3 values", errors.GetProperty("preprocessing.std")[0].GetString());

        var one = await client.PostJsonAsync("/api/jobs", Request([0.1307], [0.3081])).ExpectAsync(HttpStatusCode.Accepted);
        await client.PostAsync($"/api/jobs/{one.GetProperty("id").GetGuid()}/cancel", null).ExpectAsync(HttpStatusCode.Accepted);
    }

    [Fact]
    public async Task LabelsBeyondTheModelsClassesAreRefusedAtSubmit()
    {
        var client = host.Client();
        var labels = new long[] { 3, 99_999 };
        var npz = TestData.Npz(CompressionLevel.Fastest,
            ("x_train", "<f4", [2, 784], new byte[2 * 784 * 4]), ("y_train", "<i8", [2], labels.SelectMany(BitConverter.GetBytes).ToArray()),
            ("x_test", "<f4", [1, 784], new byte[784 * 4]), ("y_test", "<i8", [1], new byte[8]));
        var dataset = (await client.PostAsync("/api/datasets", HttpExtensions.Form(npz, "labels.npz")).ExpectAsync(HttpStatusCode.Created))
            .GetProperty("id").GetGuid();
        foreach (var upload in new[]
                 {
                     HttpExtensions.Form(TestData.TorchSharpWeights("lenet-300-100"), "w.bin", ("architecture", "lenet-300-100")),
                     HttpExtensions.Form(OnnxMlp.Create(hidden: 8), "mlp.onnx"),
                 })
        {
            var model = await client.PostAsync("/api/models", upload).ExpectAsync(HttpStatusCode.Created);

            var problem = await client.PostJsonAsync("/api/jobs", new
            {
                modelId = model.GetProperty("id").GetGuid(), datasetId = dataset, settings = new { iterations = 10, cRate = 1 },
            }).ExpectAsync(HttpStatusCode.UnprocessableEntity);
            Assert.Contains("labels go up to 99999 but the model scores 10 classes",
                problem.GetProperty("errors").GetProperty("datasetId")[0].GetString());
            Assert.Equal(10, model.GetProperty("classCount").GetInt32());
        }
    }

    [Fact]
    public async Task SamplesWithAZeroDimensionAreRefusedAtUpload()
    {
        var npz = TestData.Npz(CompressionLevel.Fastest,
            ("x_train", "<f4", [2, 1, 0, 28], []), ("y_train", "<i8", [2], new byte[16]),
            ("x_test", "<f4", [1, 1, 0, 28], []), ("y_test", "<i8", [1], new byte[8]));
        var problem = await host.Client().PostAsync("/api/datasets", HttpExtensions.Form(npz, "empty.npz"))
            .ExpectAsync(HttpStatusCode.UnprocessableEntity);
        Assert.Contains("samples have shape [1, 0, 28]: every dimension of a sample must be at least 1", problem.GetProperty("detail").GetString());
    }

    [Fact]
    public async Task AModelInputOfAbsurdSizeIsRefusedAtUpload()
    {
        var onnx = Mlp(graph => graph.Input[0].Type.TensorType.Shape.Dim[1].DimValue = long.MaxValue);
        var problem = await host.Client().PostAsync("/api/models", HttpExtensions.Form(onnx, "huge-input.onnx"))
            .ExpectAsync(HttpStatusCode.UnprocessableEntity);
        Assert.Contains("declares [?, 9223372036854775807]: 9223372036854775807 values per sample, more than the 16777216",
            problem.GetProperty("detail").GetString());
    }

    [Fact]
    public async Task AnUploadRetriedUnderItsKeyWithAnotherFileIs422AndWithTheSameFileGetsTheFirstModel()
    {
        var client = host.Client();
        var key = Guid.NewGuid().ToString();
        Task<HttpResponseMessage> Upload(byte[] file)
        {
            var request = new HttpRequestMessage(HttpMethod.Post, "/api/models") { Content = HttpExtensions.Form(file, "m.onnx") };
            request.Headers.Add("Idempotency-Key", key);
            return client.SendAsync(request);
        }
        var first = await Upload(OnnxMlp.Create(hidden: 4)).ExpectAsync(HttpStatusCode.Created);
        var modelsAfterFirst = await host.Db.ScalarAsync<long>("SELECT count(*) FROM models");

        var other = await Upload(OnnxMlp.Create(hidden: 6)).ExpectAsync(HttpStatusCode.UnprocessableEntity);
        Assert.Contains("with another body", other.GetProperty("detail").GetString());
        var same = await Upload(OnnxMlp.Create(hidden: 4));
        Assert.Equal(HttpStatusCode.Created, same.StatusCode);
        Assert.Equal("true", Assert.Single(same.Headers.GetValues("Idempotent-Replayed")));
        Assert.Equal(first.GetProperty("id").GetGuid(), (await same.JsonAsync()).GetProperty("id").GetGuid());
        Assert.Equal(modelsAfterFirst, await host.Db.ScalarAsync<long>("SELECT count(*) FROM models"));
    }

    [Fact]
    public async Task ARefusedRequestLeavesItsIdempotencyKeyFreeForTheCorrectedRetry()
    {
        var client = host.Client();
        var (model, dataset) = await JobScenario.UploadAsync(client);
        var key = Guid.NewGuid().ToString();
        Task<HttpResponseMessage> Submit(Guid modelId)
        {
            var request = new HttpRequestMessage(HttpMethod.Post, "/api/jobs")
            {
                Content = System.Net.Http.Json.JsonContent.Create(JobScenario.Request(modelId, dataset, 10, 5), options: ServiceHost.Json),
            };
            request.Headers.Add("Idempotency-Key", key);
            return client.SendAsync(request);
        }

        await Submit(Guid.NewGuid()).ExpectAsync(HttpStatusCode.UnprocessableEntity); // no such model
        var corrected = await Submit(model).ExpectAsync(HttpStatusCode.Accepted);
        var replayed = await Submit(model);
        Assert.Equal(HttpStatusCode.Accepted, replayed.StatusCode);
        Assert.Equal(corrected.GetProperty("id").GetGuid(), (await replayed.JsonAsync()).GetProperty("id").GetGuid());
        await client.PostAsync($"/api/jobs/{corrected.GetProperty("id").GetGuid()}/cancel", null).ExpectAsync(HttpStatusCode.Accepted);
    }

    [Fact]
    public async Task SettingsOfUnboundedSizeAreRefusedBeforeTheyAreParsed()
    {
        var client = host.Client();
        var (model, dataset) = await JobScenario.UploadAsync(client);
        var jobsBefore = await host.Db.ScalarAsync<long>("SELECT count(*) FROM jobs");
        string Body(int layers) => $$"""{"modelId": "{{model}}", "datasetId": "{{dataset}}", "settings": {"layers": [{{string.Join(",",
            Enumerable.Repeat("""{"pattern": "fc*", "cRate": 1}""", layers))}}]} }""";

        // The prober's 700,000 layer entries (25 MB), announced and not announced (chunked).
        var announced = await client.PostAsync("/api/jobs", new StringContent(Body(700_000), Encoding.UTF8, "application/json"))
            .ExpectAsync(HttpStatusCode.RequestEntityTooLarge);
        Assert.Contains("Api:MaxJsonBodyBytes", announced.GetProperty("detail").GetString());
        var chunked = await client.PostAsync("/api/jobs", new UnannouncedContent(Encoding.UTF8.GetBytes(Body(700_000))))
            .ExpectAsync(HttpStatusCode.RequestEntityTooLarge);
        Assert.Contains("Api:MaxJsonBodyBytes", chunked.GetProperty("detail").GetString());

        // Within the body limit, the layer list has its own.
        var many = await client.PostAsync("/api/jobs", new StringContent(Body(300), Encoding.UTF8, "application/json"))
            .ExpectAsync(HttpStatusCode.UnprocessableEntity);
        Assert.Contains("at most 256", many.GetProperty("errors").GetProperty("settings.layers")[0].GetString());
        Assert.Equal(jobsBefore, await host.Db.ScalarAsync<long>("SELECT count(*) FROM jobs"));
    }

    [Fact]
    public async Task JobListsLeaveSettingsOutAndTheJobItselfHasThem()
    {
        var client = host.Client(ServiceHost.GlobexKey);
        var (model, dataset) = await JobScenario.UploadAsync(client);
        var job = await JobScenario.SubmitAsync(client, JobScenario.Request(model, dataset, 10, 5));

        var page = await client.GetAsync("/api/jobs?pageSize=200").ExpectAsync(HttpStatusCode.OK);
        var item = page.GetProperty("items").EnumerateArray().Single(j => j.GetProperty("id").GetGuid() == job);
        Assert.False(item.TryGetProperty("settings", out _), item.GetRawText());
        Assert.False(item.TryGetProperty("preprocessing", out _));
        Assert.Equal("dns", item.GetProperty("method").GetString());
        var one = await JobScenario.GetJobAsync(client, job);
        Assert.Equal(10, one.GetProperty("settings").GetProperty("iterations").GetInt32());
        await client.PostAsync($"/api/jobs/{job}/cancel", null).ExpectAsync(HttpStatusCode.Accepted);
    }

    private static byte[] Mlp(Action<GraphProto> change)
    {
        var model = ModelProto.Parser.ParseFrom(OnnxMlp.Create(hidden: 8));
        change(model.Graph);
        return model.ToByteArray();
    }

    /// <summary>A body sent without Content-Length (chunked), so only counting while reading can hold it to a limit.</summary>
    private sealed class UnannouncedContent : HttpContent
    {
        private readonly byte[] _bytes;

        public UnannouncedContent(byte[] bytes)
        {
            _bytes = bytes;
            Headers.ContentType = new MediaTypeHeaderValue("application/json");
        }

        protected override Task SerializeToStreamAsync(Stream stream, TransportContext? context) => stream.WriteAsync(_bytes).AsTask();

        protected override bool TryComputeLength(out long length)
        {
            length = 0;
            return false;
        }
    }
}

public sealed class HardeningJobDeletionHost() : ServiceHost("hardening2del", withWorker: true);

/// <summary>Issue 27, finding 18: a tenant removes its own finished jobs, with what they recorded.</summary>
public sealed class HardeningJobDeletionTests(HardeningJobDeletionHost host) : IClassFixture<HardeningJobDeletionHost>
{
    [Fact]
    public async Task AFinishedJobIsDeletedWithItsRowsAndFilesAndAnUnfinishedOneIs409()
    {
        var client = host.Client();
        var (model, dataset) = await JobScenario.UploadAsync(client);
        var job = await JobScenario.SubmitAsync(client, JobScenario.Request(model, dataset, 10, 5));

        // Another tenant's delete finds nothing; the owner's is refused until the job has finished.
        await host.Client(ServiceHost.GlobexKey).DeleteAsync($"/api/jobs/{job}").ExpectAsync(HttpStatusCode.NotFound);
        var done = await JobScenario.WaitForAsync(client, job, JobScenario.IsFinished, TimeSpan.FromSeconds(120));
        Assert.Equal("Succeeded", done.GetProperty("state").GetString());

        var artifacts = (await host.Db.ScalarAsync<string>(
                "SELECT concat_ws(',', quote_literal(\"CheckpointArtifactId\"), quote_literal(\"ResultOnnxArtifactId\"), " +
                $"quote_literal(\"ResultOnnxSparseArtifactId\"), quote_literal(\"ResultTorchSharpArtifactId\")) FROM jobs WHERE \"Id\" = '{job}'"))!;
        Assert.NotEmpty(artifacts);
        Assert.True(await host.Db.ScalarAsync<long>($"SELECT count(*) FROM job_metrics WHERE \"JobId\" = '{job}'") > 0);

        await client.DeleteAsync($"/api/jobs/{job}").ExpectAsync(HttpStatusCode.NoContent);

        await client.GetAsync($"/api/jobs/{job}").ExpectAsync(HttpStatusCode.NotFound);
        await client.DeleteAsync($"/api/jobs/{job}").ExpectAsync(HttpStatusCode.NotFound);
        Assert.Equal(0, await host.Db.ScalarAsync<long>($"SELECT count(*) FROM artifacts WHERE \"Id\" IN ({artifacts})"));
        Assert.Equal(0, await host.Db.ScalarAsync<long>($"SELECT count(*) FROM artifact_chunks WHERE \"ArtifactId\" IN ({artifacts})"));
        foreach (var table in new[] { "job_metrics", "job_evaluations", "job_events", "job_layer_results" })
        {
            Assert.Equal(0, await host.Db.ScalarAsync<long>($"SELECT count(*) FROM {table} WHERE \"JobId\" = '{job}'"));
        }
        // The model and dataset it used stay.
        await client.GetAsync($"/api/models/{model}").ExpectAsync(HttpStatusCode.OK);
    }

    [Fact]
    public async Task AQueuedJobIs409UntilItIsCancelled()
    {
        var client = host.Client(ServiceHost.GlobexKey);
        var (model, dataset) = await JobScenario.UploadAsync(client);
        // Far more iterations than the test waits for: it is queued or running when the delete comes.
        var job = await JobScenario.SubmitAsync(client, JobScenario.Request(model, dataset, 1_000_000, 1000));

        var refused = await client.DeleteAsync($"/api/jobs/{job}").ExpectAsync(HttpStatusCode.Conflict);
        Assert.Contains($"cancel it (POST /api/jobs/{job}/cancel)", refused.GetProperty("detail").GetString());
        await client.PostAsync($"/api/jobs/{job}/cancel", null).ExpectAsync(HttpStatusCode.Accepted);
        await JobScenario.WaitForAsync(client, job, JobScenario.IsFinished, TimeSpan.FromSeconds(60));
        await client.DeleteAsync($"/api/jobs/{job}").ExpectAsync(HttpStatusCode.NoContent);
        Assert.Equal(0, await host.Db.ScalarAsync<long>($"SELECT count(*) FROM jobs WHERE \"Id\" = '{job}'"));
    }
}
