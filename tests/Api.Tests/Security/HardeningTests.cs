using System.Buffers.Binary;
using System.IO.Compression;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Google.Protobuf;
using SurgeryService.Api.Tests.Infrastructure;
using SurgeryService.Api.Tests.Jobs;
using SurgeryService.Domain.Onnx.Proto;
using SurgeryService.Tests.Shared;

namespace SurgeryService.Api.Tests.Security;

public sealed class HardeningHost() : ServiceHost("hardening", withWorker: false,
    new Dictionary<string, string?>
    {
        ["Api:DashboardOperatorTenants:0"] = "acme", ["Api:DashboardTenants:0"] = "globex", ["Api:EventKeepAliveSeconds"] = "1",
        ["Tenants:initech:ApiKeys:0"] = InitechKey,
    })
{
    /// <summary>A third tenant, neither operator nor dashboard viewer.</summary>
    public const string InitechKey = "initech-key-0123456789abcdef";
}

/// <summary>
/// Runs alone (no other test class in parallel) so the bytes the process allocates while it handles a request are
/// the Api's own: the measure of "inflated a bomb" that does not depend on timing.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class AloneCollection
{
    public const string Name = "Alone: allocation measurements";
}

/// <summary>What a hostile or careless client could do before issue 16: each test fails on the code before the fix.</summary>
[Collection(AloneCollection.Name)]
public sealed class HardeningTests(HardeningHost host) : IClassFixture<HardeningHost>
{
    private const int BombBytes = 256 << 20;

    /// <summary>Far below the 256 MiB a bomb inflates to, far above what reading headers and 64 KiB pieces costs.</summary>
    private const long AllocationBound = 48 << 20;

    public static TheoryData<string> Bombs => ["zeros", "nested-gzip", "npz-zeros-after-data", "announced-too-large", "many-entries"];

    [Theory]
    [MemberData(nameof(Bombs))]
    public async Task DecompressionBombsAreRefusedFromTheirHeadersWithoutInflatingThem(string kind)
    {
        var (archive, status, reason) = kind switch
        {
            // The prober's "1 MB zip with a 1 GiB zero entry": no IDX header, so four bytes settle it.
            "zeros" => (IdxZip(Deflated(Zeros(BombBytes))), HttpStatusCode.UnprocessableEntity, "unknown IDX type code 0x00"),
            // A gzip inside the zip (as MNIST ships) whose IDX header announces 10 images and then keeps inflating.
            "nested-gzip" => (IdxZip(Stored(Gzip(Zeros(BombBytes, IdxHeader(0x08, 10, 28, 28))))),
                HttpStatusCode.UnprocessableEntity, "holds more than the 7840 data bytes its header announces"),
            // An .npy whose zip entry declares far more bytes than its header announces.
            "npz-zeros-after-data" => (NpzWithXTrain(Zeros(BombBytes, NpyHeader("|u1", "(10, 28, 28)"))),
                HttpStatusCode.UnprocessableEntity, "header announces"),
            // 200,000 empty entries (an 18 MB zip): .NET's reader built an object for every one before anything was checked.
            "many-entries" => (ManyEntries(200_000), HttpStatusCode.UnprocessableEntity, "the zip's central directory spans"),
            // A header announcing 100 GB of data: refused on the sum of the headers before any data is read.
            _ => (IdxZip(Stored(Gzip(Zeros(0, IdxHeader(0x08, 100_000, 1000, 1000))))),
                HttpStatusCode.RequestEntityTooLarge, "Datasets:MaxDataBytes"),
        };
        var client = host.Client();
        var form = HttpExtensions.Form(archive, "bomb.zip");
        await form.LoadIntoBufferAsync();

        var before = GC.GetTotalAllocatedBytes(precise: true);
        var response = await client.PostAsync("/api/datasets", form).ExpectAsync(status);
        var allocated = GC.GetTotalAllocatedBytes(precise: true) - before;

        Assert.Contains(reason, response.GetProperty("detail").GetString());
        Assert.True(allocated < AllocationBound, $"handling a {archive.Length}-byte {kind} bomb allocated {allocated} bytes");
    }

    [Fact]
    public async Task ImpossibleDatasetShapesAndLabelsAreRefused()
    {
        var client = host.Client();
        // The prober's 696-byte IDX zip: four dimensions of 65536 multiply to 2^64, which wrapped to 0 bytes expected.
        var wrapped = IdxZip(Deflated(IdxHeader(0x08, 65536, 65536, 65536, 65536)));
        var idx = await client.PostAsync("/api/datasets", HttpExtensions.Form(wrapped, "wrap.zip"))
            .ExpectAsync(HttpStatusCode.UnprocessableEntity);
        Assert.Contains("impossible shape [65536, 65536, 65536, 65536]", idx.GetProperty("detail").GetString());

        var npz = TestData.Npz(CompressionLevel.Fastest,
            ("x_train", "|u1", [1, 1 << 16, 1 << 16, 1 << 16, 1 << 16], []), ("y_train", "<i8", [1], new byte[8]),
            ("x_test", "|u1", [0, 1, 1], []), ("y_test", "<i8", [0], []));
        var npzShape = await client.PostAsync("/api/datasets", HttpExtensions.Form(npz, "wrap.npz"))
            .ExpectAsync(HttpStatusCode.UnprocessableEntity);
        Assert.Contains("impossible shape", npzShape.GetProperty("detail").GetString());

        foreach (var label in new[] { int.MaxValue, 1L << 40 })
        {
            var labels = TestData.Npz(CompressionLevel.Fastest,
                ("x_train", "<f4", [2, 3], new byte[24]), ("y_train", "<i8", [2], [.. BitConverter.GetBytes(label), .. new byte[8]]),
                ("x_test", "<f4", [1, 3], new byte[12]), ("y_test", "<i8", [1], new byte[8]));
            var refused = await client.PostAsync("/api/datasets", HttpExtensions.Form(labels, "labels.npz"))
                .ExpectAsync(HttpStatusCode.UnprocessableEntity);
            Assert.Contains($"holds the label {label}; labels must be class numbers below", refused.GetProperty("detail").GetString());
        }
    }

    [Theory]
    [InlineData(0x7FFFFFFFu)]
    [InlineData(0xFFFFFFFFu)]
    public async Task NpyHeaderLengthsBeyondTheLimitAre422(uint headerLength)
    {
        var npy = Concat([0x93, .. "NUMPY"u8, 2, 0], BitConverter.GetBytes(headerLength), new byte[64]);
        var response = await host.Client().PostAsync("/api/datasets", HttpExtensions.Form(NpzWithXTrain(npy), "h.npz"))
            .ExpectAsync(HttpStatusCode.UnprocessableEntity);
        Assert.Contains($"announces a header of {headerLength} bytes", response.GetProperty("detail").GetString());
    }

    [Fact]
    public async Task ImpossibleOnnxShapesAreRefused()
    {
        var client = host.Client();
        // [2^32, 2^32] with no data: 2^64 elements wrapped to 0 and the model was accepted with 0 parameters.
        var huge = Mlp(graph => graph.Initializer[0] = new TensorProto { Name = "fc1.weight", DataType = 1, Dims = { 1L << 32, 1L << 32 } });
        var wrapped = await client.PostAsync("/api/models", HttpExtensions.Form(huge, "huge.onnx")).ExpectAsync(HttpStatusCode.UnprocessableEntity);
        Assert.Contains("impossible shape [4294967296, 4294967296]", wrapped.GetProperty("detail").GetString());

        var negative = Mlp(graph => graph.Input[0].Type.TensorType.Shape.Dim[1].DimValue = -5);
        var input = await client.PostAsync("/api/models", HttpExtensions.Form(negative, "neg.onnx")).ExpectAsync(HttpStatusCode.UnprocessableEntity);
        Assert.Contains("dimension -5", input.GetProperty("detail").GetString());

        foreach (var dims in new[] { new[] { -1L }, new[] { 1_000_000_000L } })
        {
            var sparse = Mlp(graph =>
            {
                graph.Initializer.RemoveAt(0);
                graph.SparseInitializer.Add(new SparseTensorProto
                {
                    Values = new TensorProto { Name = "fc1.weight", DataType = 1, Dims = { 1 }, RawData = ByteString.CopyFrom(new byte[4]) },
                    Indices = new TensorProto { DataType = 7, Dims = { 1 }, RawData = ByteString.CopyFrom(new byte[8]) },
                    Dims = { dims },
                });
            });
            var response = await client.PostAsync("/api/models", HttpExtensions.Form(sparse, "sparse.onnx"))
                .ExpectAsync(HttpStatusCode.UnprocessableEntity);
            Assert.Contains("fc1.weight", response.GetProperty("detail").GetString());
        }
    }

    [Fact]
    public async Task TextPostgreSqlCannotStoreIsRefusedWithTheFieldNamed()
    {
        var client = host.Client();
        var weights = TestData.TorchSharpWeights("lenet-5");
        var modelsBefore = await host.Db.ScalarAsync<long>("SELECT count(*) FROM models");

        async Task<string> Refused(HttpContent content, string path = "/api/models")
        {
            var problem = await client.PostAsync(path, content).ExpectAsync(HttpStatusCode.BadRequest);
            return problem.GetProperty("detail").GetString()!;
        }

        Assert.Contains("'name' is longer than 256", await Refused(
            HttpExtensions.Form(weights, "m.bin", ("architecture", "lenet-5"), ("name", new string('n', 257)))));
        Assert.Contains("'name' contains the control character U+0000", await Refused(
            HttpExtensions.Form(TestData.MnistNpz(10, 5), "d.npz", ("name", "nul\0name")), "/api/datasets"));
        Assert.Contains("file name contains the control character U+0000",
            await Refused(RawForm(weights, "Content-Disposition: form-data; name=\"file\"; filename*=UTF-8''m%00.bin",
                extra: [("architecture", "lenet-5")])));
        Assert.Contains("Content-Type is longer than 128",
            await Refused(RawForm(weights, "Content-Disposition: form-data; name=\"file\"; filename=\"m.bin\"",
                "Content-Type: application/" + new string('x', 200), extra: [("architecture", "lenet-5")])));
        Assert.Equal(modelsBefore, await host.Db.ScalarAsync<long>("SELECT count(*) FROM models"));

        // A file name cut at 256 characters in the middle of a surrogate pair: cut before the pair instead.
        var longName = new string('a', 255) + "\U0001F600" + ".bin";
        var model = await client.PostAsync("/api/models", RawForm(weights,
                $"Content-Disposition: form-data; name=\"file\"; filename*=UTF-8''{Uri.EscapeDataString(longName)}",
                extra: [("architecture", "lenet-5")]))
            .ExpectAsync(HttpStatusCode.Created);
        Assert.Equal(new string('a', 255), await host.Db.ScalarAsync<string>(
            $"SELECT \"FileName\" FROM artifacts WHERE \"Id\" = (SELECT \"ArtifactId\" FROM models WHERE \"Id\" = '{model.GetProperty("id").GetGuid()}')"));

        var onnx = Mlp(graph => graph.Node[0].Name = "fc\0one");
        var node = await client.PostAsync("/api/models", HttpExtensions.Form(onnx, "nul.onnx")).ExpectAsync(HttpStatusCode.UnprocessableEntity);
        Assert.Contains("contains the control character U+0000", node.GetProperty("detail").GetString());

        var (modelId, dataset) = await JobScenario.UploadAsync(client);
        var job = await client.PostJsonAsync("/api/jobs", new
        {
            modelId, datasetId = dataset, settings = new { layers = new[] { new { pattern = "fc\0*" } } },
        }).ExpectAsync(HttpStatusCode.UnprocessableEntity);
        Assert.Contains("U+0000", job.GetProperty("errors").GetProperty("settings.layers[0].pattern")[0].GetString());
    }

    public static TheoryData<string, string> MultipartAbuse => new()
    {
        { "a 20 KB header line", "Content-Disposition: form-data; name=\"file\"; filename=\"" + new string('x', 20_000) + "\"" },
        { "30 headers", "Content-Disposition: form-data; name=\"file\"; filename=\"m.bin\"\r\n" +
            string.Join("\r\n", Enumerable.Range(0, 30).Select(i => $"X-Header-{i}: {i}")) },
        { "100 KB before the first boundary", "PREAMBLE" },
    };

    [Theory]
    [MemberData(nameof(MultipartAbuse))]
    public async Task MultipartBodiesBeyondTheReadersLimitsAre400(string _, string headers)
    {
        var content = headers == "PREAMBLE"
            ? RawForm([1, 2, 3], "Content-Disposition: form-data; name=\"file\"; filename=\"m.bin\"", preamble: new string('p', 100 * 1024))
            : RawForm([1, 2, 3], headers);
        var problem = await host.Client().PostAsync("/api/models", content).ExpectAsync(HttpStatusCode.BadRequest);
        Assert.Contains("multipart body could not be read", problem.GetProperty("detail").GetString());
    }

    [Fact]
    public async Task FormFieldsHaveATotalCap()
    {
        var fields = Enumerable.Range(0, 40).Select(i => ($"field{i}", new string('f', 4000))).ToArray();
        var problem = await host.Client().PostAsync("/api/models", HttpExtensions.Form([1, 2, 3], "m.bin", fields))
            .ExpectAsync(HttpStatusCode.BadRequest);
        Assert.Contains("fields besides the file exceed", problem.GetProperty("detail").GetString());
    }

    [Fact]
    public async Task APageBeyondWhatAnOffsetCanHoldIs400()
    {
        var problem = await host.Client().GetAsync($"/api/jobs?page={int.MaxValue}").ExpectAsync(HttpStatusCode.BadRequest);
        Assert.Contains("page", problem.GetProperty("errors").EnumerateObject().Select(e => e.Name));
    }

    [Fact]
    public async Task AMisspelledMemberIsRefusedWithItsName()
    {
        var client = host.Client();
        var (model, dataset) = await JobScenario.UploadAsync(client);
        var jobsBefore = await host.Db.ScalarAsync<long>("SELECT count(*) FROM jobs");

        var body = $$"""{"modelId": "{{model}}", "datasetId": "{{dataset}}", "settings": {"iteratons": 50} }""";
        var problem = await client.PostAsync("/api/jobs", new StringContent(body, Encoding.UTF8, "application/json"))
            .ExpectAsync(HttpStatusCode.BadRequest);

        Assert.Contains("'settings.iteratons'", problem.GetProperty("detail").GetString());
        Assert.Equal(["settings.iteratons"], problem.GetProperty("errors").EnumerateObject().Select(e => e.Name));
        Assert.DoesNotContain("SurgeryService", problem.GetRawText()); // no .NET type names
        Assert.Equal(jobsBefore, await host.Db.ScalarAsync<long>("SELECT count(*) FROM jobs"));
    }

    [Fact]
    public async Task PreprocessingNumbersThatOverflowFloat32AreRefused()
    {
        var client = host.Client();
        var (model, dataset) = await JobScenario.UploadAsync(client);
        var problem = await client.PostJsonAsync("/api/jobs", new
        {
            modelId = model, datasetId = dataset,
            preprocessing = new { scale = 1e300, offset = -1e300, mean = new[] { 1e300 }, std = new[] { 1e-300 } },
        }).ExpectAsync(HttpStatusCode.UnprocessableEntity);
        Assert.Equal(["preprocessing.mean", "preprocessing.offset", "preprocessing.scale", "preprocessing.std"],
            problem.GetProperty("errors").EnumerateObject().Select(e => e.Name).Order());
    }

    [Fact]
    public async Task AJobForAQueueNoLiveWorkerServesIsAcceptedWithAWarning()
    {
        var client = host.Client();
        var (model, dataset) = await JobScenario.UploadAsync(client);
        object Request(string queue) => new
        {
            modelId = model, datasetId = dataset, queue, checkpointInterval = 5,
            settings = new { iterations = 10, batchSize = 32 }, preprocessing = new { trainLimit = 64, testLimit = 32 },
        };

        var lonely = await client.PostJsonAsync("/api/jobs", Request("cpu")).ExpectAsync(HttpStatusCode.Accepted);
        Assert.Contains("no live worker serves the 'cpu' queue", lonely.GetProperty("warnings")[0].GetString());
        await client.PostAsync($"/api/jobs/{lonely.GetProperty("id").GetGuid()}/cancel", null).ExpectAsync(HttpStatusCode.Accepted);

        // A real Worker (queues cpu and default): cpu jobs are served, gpu jobs still are not.
        using var worker = host.StartWorker();
        Assert.True(await Eventually.TrueAsync(async () => await host.Db.ScalarAsync<long>("SELECT count(*) FROM hangfire.server") > 0,
            TimeSpan.FromSeconds(60)), "the worker registered no Hangfire server");
        var gpu = await client.PostJsonAsync("/api/jobs", Request("gpu")).ExpectAsync(HttpStatusCode.Accepted);
        Assert.Contains("no live worker serves the 'gpu' queue", gpu.GetProperty("warnings")[0].GetString());
        await client.PostAsync($"/api/jobs/{gpu.GetProperty("id").GetGuid()}/cancel", null).ExpectAsync(HttpStatusCode.Accepted);
        var served = await client.PostJsonAsync("/api/jobs", Request("cpu")).ExpectAsync(HttpStatusCode.Accepted);
        Assert.False(served.TryGetProperty("warnings", out _));
        await JobScenario.WaitForAsync(client, served.GetProperty("id").GetGuid(), JobScenario.IsFinished, TimeSpan.FromSeconds(120));
    }

    [Fact]
    public async Task TheDashboardIsReadOnlyForTenantsItsActionsNeedAnAntiforgeryTokenAndItsDeleteCancelsTheJob()
    {
        var globex = host.Client(ServiceHost.GlobexKey);
        var (model, dataset) = await JobScenario.UploadAsync(host.Client(ServiceHost.AcmeKey));
        var job = await JobScenario.SubmitAsync(host.Client(ServiceHost.AcmeKey), JobScenario.Request(model, dataset, 10, 5));
        var hangfireId = await host.Db.ScalarAsync<string>($"SELECT \"HangfireJobId\" FROM jobs WHERE \"Id\" = '{job}'");
        Task<string?> HangfireState() => host.Db.ScalarAsync<string>($"SELECT statename FROM hangfire.job WHERE id = {hangfireId}");
        FormUrlEncodedContent Delete() => new([new("jobs[]", hangfireId!)]);

        async Task<HttpStatusCode> DeleteAsync(HttpClient client, bool withToken)
        {
            var request = new HttpRequestMessage(HttpMethod.Post, "/hangfire/jobs/enqueued/delete") { Content = Delete() };
            if (withToken)
            {
                // The token the dashboard page hands out (with its cookie), as the dashboard's own script sends it.
                var page = await client.GetStringAsync("/hangfire");
                var header = System.Text.RegularExpressions.Regex.Match(page, "<meta name=\"csrf-header\" content=\"([^\"]+)\"").Groups[1].Value;
                var token = System.Text.RegularExpressions.Regex.Match(page, "<meta name=\"csrf-token\" content=\"([^\"]+)\"").Groups[1].Value;
                Assert.NotEmpty(token);
                request.Headers.Add(header, WebUtility.HtmlDecode(token));
            }
            return (await client.SendAsync(request)).StatusCode;
        }

        // Another tenant sees the dashboard but cannot delete acme's job, even with a valid token.
        Assert.Equal(HttpStatusCode.OK, (await globex.GetAsync("/hangfire")).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, await DeleteAsync(globex, withToken: true));
        Assert.Equal("Enqueued", await HangfireState());

        // An operator's POST without the token (what a cross-site form sends) is refused; with it, the action works.
        var operatorClient = host.Client(ServiceHost.AcmeKey);
        Assert.Equal(HttpStatusCode.Forbidden, await DeleteAsync(operatorClient, withToken: false));
        Assert.Equal("Enqueued", await HangfireState());
        Assert.Equal(HttpStatusCode.NoContent, await DeleteAsync(operatorClient, withToken: true));
        Assert.Equal("Deleted", await HangfireState());

        // The surgery job does not stay Queued for ever with nothing left to run it: the delete cancelled it.
        var deleted = await JobScenario.GetJobAsync(operatorClient, job);
        Assert.Equal("Cancelled", deleted.GetProperty("state").GetString());
    }

    [Fact]
    public async Task EveryResponseCarriesSecurityHeadersThatSwaggerUiAndTheDashboardCanLiveWith()
    {
        var (model, dataset) = await JobScenario.UploadAsync(host.Client());
        var job = await JobScenario.SubmitAsync(host.Client(), JobScenario.Request(model, dataset, 10, 5));
        foreach (var (path, key) in new[]
                 {
                     ("/api/models", ServiceHost.AcmeKey), ($"/api/jobs/{job}/report.svg", ServiceHost.AcmeKey),
                     ($"/api/jobs/{Guid.NewGuid()}", ServiceHost.AcmeKey), ("/api/models", null),
                     ("/swagger/index.html", null), ("/swagger/v1/swagger.json", null), ("/hangfire", ServiceHost.AcmeKey),
                 })
        {
            var response = await host.Client(key).GetAsync(path);
            Assert.True(response.Headers.TryGetValues("X-Content-Type-Options", out var nosniff), path);
            Assert.Equal("nosniff", Assert.Single(nosniff));
            Assert.Equal("DENY", Assert.Single(response.Headers.GetValues("X-Frame-Options")));
            var csp = Assert.Single(response.Headers.GetValues("Content-Security-Policy"));
            Assert.Contains("script-src 'self'", csp);
            Assert.Contains("frame-ancestors 'none'", csp);
        }
        // script-src 'self' allows no inline script: the two HTML UIs must have none.
        foreach (var (path, key) in new[] { ("/swagger/index.html", (string?)null), ("/hangfire", ServiceHost.AcmeKey) })
        {
            var html = await host.Client(key).GetStringAsync(path);
            var scripts = System.Text.RegularExpressions.Regex.Matches(html, "<script[^>]*>").Select(m => m.Value).ToList();
            Assert.NotEmpty(scripts);
            Assert.All(scripts, tag => Assert.Contains("src=", tag));
        }
        await host.Client().PostAsync($"/api/jobs/{job}/cancel", null).ExpectAsync(HttpStatusCode.Accepted);
    }

    [Fact]
    public async Task TheEventsStreamOfAQueuedJobSendsKeepAliveComments()
    {
        var client = host.Client();
        var (model, dataset) = await JobScenario.UploadAsync(client);
        var job = await JobScenario.SubmitAsync(client, JobScenario.Request(model, dataset, 10, 5)); // no worker: stays queued

        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        using var response = await client.GetAsync($"/api/jobs/{job}/events", HttpCompletionOption.ResponseHeadersRead, cts.Token);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cts.Token));
        var lines = new List<string>();
        while (await reader.ReadLineAsync(cts.Token) is { } line && !line.StartsWith(':'))
        {
            lines.Add(line);
        }
        Assert.Contains("event: progress", lines); // the first event, then silence filled by the comment
        Assert.Contains(lines, l => l.StartsWith("data: ", StringComparison.Ordinal) && l.Contains("\"Queued\""));
        cts.Cancel();
        await host.Client().PostAsync($"/api/jobs/{job}/cancel", null).ExpectAsync(HttpStatusCode.Accepted);
    }

    [Fact]
    public async Task ModelsDatasetsAndJobsAnswerTheSamePageShapeWithTheSameDefaultSize()
    {
        var client = host.Client(ServiceHost.GlobexKey);
        foreach (var path in new[] { "/api/models", "/api/datasets", "/api/jobs" })
        {
            var response = await client.GetAsync(path);
            var page = await Task.FromResult(response).ExpectAsync(HttpStatusCode.OK);
            Assert.Equal(["items", "page", "pageSize", "totalCount"], page.EnumerateObject().Select(p => p.Name).Order());
            Assert.Equal(1, page.GetProperty("page").GetInt32());
            Assert.Equal(20, page.GetProperty("pageSize").GetInt32());
            Assert.True(page.GetProperty("items").GetArrayLength() <= 20);
            Assert.True(page.GetProperty("totalCount").GetInt32() >= page.GetProperty("items").GetArrayLength());
            Assert.False(response.Headers.Contains("X-Total-Count"));
        }
    }

    [Fact]
    public async Task ModelAndDatasetListsArePaged()
    {
        var client = host.Client(ServiceHost.GlobexKey);
        var ids = new List<Guid>();
        for (var i = 0; i < 3; i++)
        {
            var model = await client.PostAsync("/api/models",
                HttpExtensions.Form(OnnxMlp.Create(hidden: 4, seed: i), $"m{i}.onnx")).ExpectAsync(HttpStatusCode.Created);
            ids.Add(model.GetProperty("id").GetGuid());
        }
        var pages = new List<Guid>();
        for (var page = 1; page <= 3; page++)
        {
            var response = await client.GetAsync($"/api/models?page={page}&pageSize=2").ExpectAsync(HttpStatusCode.OK);
            var items = response.GetProperty("items").EnumerateArray().Select(m => m.GetProperty("id").GetGuid()).ToList();
            Assert.True(items.Count <= 2);
            Assert.Equal(page, response.GetProperty("page").GetInt32());
            Assert.Equal(2, response.GetProperty("pageSize").GetInt32());
            Assert.True(response.GetProperty("totalCount").GetInt32() >= 3);
            pages.AddRange(items);
        }
        Assert.Equal(pages.Distinct().Count(), pages.Count);
        Assert.All(ids, id => Assert.Contains(id, pages));

        var datasets = await client.GetAsync("/api/datasets?pageSize=1").ExpectAsync(HttpStatusCode.OK);
        Assert.True(datasets.GetProperty("items").GetArrayLength() <= 1);
        Assert.True(datasets.GetProperty("totalCount").GetInt32() >= datasets.GetProperty("items").GetArrayLength());
        var bad = await client.GetAsync("/api/datasets?pageSize=1000").ExpectAsync(HttpStatusCode.BadRequest);
        Assert.Contains("pageSize", bad.GetProperty("errors").EnumerateObject().Select(e => e.Name));
    }

    [Fact]
    public async Task ARetriedPostWithTheSameIdempotencyKeyGetsTheSameAnswerAndCreatesNothingNew()
    {
        var client = host.Client();
        var (model, dataset) = await JobScenario.UploadAsync(client);
        var jobsBefore = await host.Db.ScalarAsync<long>("SELECT count(*) FROM jobs");
        async Task<HttpResponseMessage> Post(string key, object body)
        {
            var request = new HttpRequestMessage(HttpMethod.Post, "/api/jobs")
            {
                Content = System.Net.Http.Json.JsonContent.Create(body, options: ServiceHost.Json),
            };
            request.Headers.Add("Idempotency-Key", key);
            return await client.SendAsync(request);
        }

        var key = Guid.NewGuid().ToString();
        var body = JobScenario.Request(model, dataset, 10, 5);
        var first = await Post(key, body);
        var retry = await Post(key, body);
        Assert.Equal(HttpStatusCode.Accepted, first.StatusCode);
        Assert.Equal(HttpStatusCode.Accepted, retry.StatusCode);
        Assert.Equal((await first.JsonAsync()).GetProperty("id").GetGuid(), (await retry.JsonAsync()).GetProperty("id").GetGuid());
        Assert.Equal(first.Headers.Location, retry.Headers.Location);
        Assert.Equal("true", Assert.Single(retry.Headers.GetValues("Idempotent-Replayed")));
        Assert.Equal(jobsBefore + 1, await host.Db.ScalarAsync<long>("SELECT count(*) FROM jobs"));

        var reused = await Post(key, JobScenario.Request(model, dataset, 20, 5));
        Assert.Equal(HttpStatusCode.UnprocessableEntity, reused.StatusCode);
        Assert.Contains("another body", (await reused.JsonAsync()).GetProperty("detail").GetString());

        // Uploads too: the retried model upload answers with the first model.
        var modelsBefore = await host.Db.ScalarAsync<long>("SELECT count(*) FROM models");
        var uploadKey = Guid.NewGuid().ToString();
        var ids = new List<Guid>();
        for (var i = 0; i < 2; i++)
        {
            var request = new HttpRequestMessage(HttpMethod.Post, "/api/models")
            {
                Content = HttpExtensions.Form(OnnxMlp.Create(hidden: 4), "m.onnx"),
            };
            request.Headers.Add("Idempotency-Key", uploadKey);
            ids.Add((await client.SendAsync(request).ExpectAsync(HttpStatusCode.Created)).GetProperty("id").GetGuid());
        }
        Assert.Equal(ids[0], ids[1]);
        Assert.Equal(modelsBefore + 1, await host.Db.ScalarAsync<long>("SELECT count(*) FROM models"));
        await client.PostAsync($"/api/jobs/{(await first.JsonAsync()).GetProperty("id").GetGuid()}/cancel", null)
            .ExpectAsync(HttpStatusCode.Accepted);
    }

    // Issue 27 (second hardening round): each test below fails on the code before its fix.

    [Fact]
    public async Task AbsurdNumbersAreRefusedWithTheirDocumentedRange()
    {
        var client = host.Client();
        var (model, dataset) = await JobScenario.UploadAsync(client);
        var jobsBefore = await host.Db.ScalarAsync<long>("SELECT count(*) FROM jobs");
        var body = $$"""
            {"modelId": "{{model}}", "datasetId": "{{dataset}}", "settings": {
              "cRate": 1e300, "gamma": 1.797e308, "power": 1e300, "learningRate": 18446744073709551616, "lrGamma": 1e300,
              "lrPower": -1, "weightDecay": 1e300,
              "layers": [{"pattern": "fc*", "cRate": -1e300, "gamma": 1e300, "power": 18446744073709551616}]} }
            """;

        var problem = await client.PostAsync("/api/jobs", new StringContent(body, Encoding.UTF8, "application/json"))
            .ExpectAsync(HttpStatusCode.UnprocessableEntity);

        var errors = problem.GetProperty("errors");
        string[] names =
        [
            "settings.cRate", "settings.gamma", "settings.power", "settings.learningRate", "settings.lrGamma", "settings.lrPower",
            "settings.weightDecay", "settings.layers[0].cRate", "settings.layers[0].gamma", "settings.layers[0].power",
        ];
        Assert.Equal(names.Order(), errors.EnumerateObject().Select(e => e.Name).Order());
        Assert.Equal("must be between -10 and 100", errors.GetProperty("settings.cRate")[0].GetString());
        Assert.Equal("must be greater than 0 and at most 10000", errors.GetProperty("settings.learningRate")[0].GetString());
        Assert.Equal("must be between 0 and 1", errors.GetProperty("settings.weightDecay")[0].GetString());
        Assert.Equal(jobsBefore, await host.Db.ScalarAsync<long>("SELECT count(*) FROM jobs"));
    }

    [Fact]
    public async Task NamesWithDirectionOverridesOrZeroWidthCharactersAreRefusedNamingTheCodePoint()
    {
        var client = host.Client();
        var modelsBefore = await host.Db.ScalarAsync<long>("SELECT count(*) FROM models");

        var name = await client.PostAsync("/api/models", HttpExtensions.Form(OnnxMlp.Create(hidden: 4), "m.onnx", ("name", "mlp\u202Excod.onnx")))
            .ExpectAsync(HttpStatusCode.BadRequest);
        Assert.Contains("'name' contains the invisible formatting character U+202E", name.GetProperty("detail").GetString());
        var dataset = await client.PostAsync("/api/datasets", HttpExtensions.Form(TestData.MnistNpz(10, 5), "d.npz", ("name", "mni\u200Bst")))
            .ExpectAsync(HttpStatusCode.BadRequest);
        Assert.Contains("U+200B", dataset.GetProperty("detail").GetString());
        var fileName = await client.PostAsync("/api/models", RawForm(OnnxMlp.Create(hidden: 4),
            "Content-Disposition: form-data; name=\"file\"; filename*=UTF-8''m%E2%80%AEx.onnx")).ExpectAsync(HttpStatusCode.BadRequest);
        Assert.Contains("file name contains the invisible formatting character U+202E", fileName.GetProperty("detail").GetString());
        Assert.Equal(modelsBefore, await host.Db.ScalarAsync<long>("SELECT count(*) FROM models"));

        var (model, data) = await JobScenario.UploadAsync(client);
        var job = await client.PostJsonAsync("/api/jobs", new
        {
            modelId = model, datasetId = data, settings = new { layers = new[] { new { pattern = "\u2066fc*", cRate = 1.0 } } },
        }).ExpectAsync(HttpStatusCode.UnprocessableEntity);
        Assert.Contains("U+2066", job.GetProperty("errors").GetProperty("settings.layers[0].pattern")[0].GetString());
    }

    [Fact]
    public async Task BasicCredentialsOpenTheDashboardButNoApiRoute()
    {
        var (model, dataset) = await JobScenario.UploadAsync(host.Client());
        var job = await JobScenario.SubmitAsync(host.Client(), JobScenario.Request(model, dataset, 10, 5));
        var modelsBefore = await host.Db.ScalarAsync<long>("SELECT count(*) FROM models");
        // What a browser holding the dashboard's credentials sends with a cross-site form post.
        var browser = host.Client(null);
        browser.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic",
            Convert.ToBase64String(Encoding.UTF8.GetBytes("anyone:" + ServiceHost.AcmeKey)));

        Assert.Equal(HttpStatusCode.OK, (await browser.GetAsync("/hangfire")).StatusCode);
        var cancel = await browser.PostAsync($"/api/jobs/{job}/cancel", null);
        Assert.Equal(HttpStatusCode.Unauthorized, cancel.StatusCode);
        Assert.Equal("ApiKey", Assert.Single(cancel.Headers.WwwAuthenticate).Scheme);
        var planted = await browser.PostAsync("/api/models", HttpExtensions.Form(OnnxMlp.Create(hidden: 4), "planted.onnx"));
        Assert.Equal(HttpStatusCode.Unauthorized, planted.StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await browser.GetAsync("/api/jobs")).StatusCode);

        Assert.Equal("Queued", (await JobScenario.GetJobAsync(host.Client(), job)).GetProperty("state").GetString());
        Assert.Equal(modelsBefore, await host.Db.ScalarAsync<long>("SELECT count(*) FROM models"));
        await host.Client().PostAsync($"/api/jobs/{job}/cancel", null).ExpectAsync(HttpStatusCode.Accepted);
    }

    [Fact]
    public async Task TheDashboardOpensOnlyForTheTenantsListedAsViewersOrOperators()
    {
        Assert.Equal(HttpStatusCode.OK, (await host.Client(ServiceHost.AcmeKey).GetAsync("/hangfire")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await host.Client(ServiceHost.GlobexKey).GetAsync("/hangfire")).StatusCode);
        foreach (var page in new[] { "/hangfire", "/hangfire/jobs/enqueued", "/hangfire/jobs/details/1" })
        {
            Assert.Equal(HttpStatusCode.Forbidden, (await host.Client(HardeningHost.InitechKey).GetAsync(page)).StatusCode);
        }
    }

    [Theory]
    [InlineData("{\"modelId\": 123}", "modelId", "'modelId' must be a GUID")]
    [InlineData("{\"modelId\": \"not-a-guid\"}", "modelId", "'modelId' must be a GUID")]
    [InlineData("{\"preprocessing\": {\"layout\": true}}", "preprocessing.layout", "'preprocessing.layout' must be one of 'nchw', 'nhwc'")]
    [InlineData("{\"settings\": {\"iterations\": \"many\"}}", "settings.iterations", "'settings.iterations' must be a whole number")]
    [InlineData("[]", null, "must be an object")]
    public async Task MalformedBodiesAreDescribedInTheRequestsOwnTerms(string body, string? member, string expected)
    {
        var problem = await host.Client().PostAsync("/api/jobs", new StringContent(body, Encoding.UTF8, "application/json"))
            .ExpectAsync(HttpStatusCode.BadRequest);

        Assert.Contains(expected, problem.GetProperty("detail").GetString());
        if (member is not null) Assert.True(problem.GetProperty("errors").TryGetProperty(member, out _), problem.GetRawText());
        foreach (var leak in new[] { "System.", "SurgeryService.", "`1", "Nullable", "InputLayout", "Int32", "SubmitJobRequest" })
        {
            Assert.DoesNotContain(leak, problem.GetRawText());
        }
    }

    [Fact]
    public async Task AQueryValueOfTheWrongKindIsDescribedWithoutDotNetTypes()
    {
        var problem = await host.Client().GetAsync("/api/jobs?page=abc").ExpectAsync(HttpStatusCode.BadRequest);
        Assert.Equal("'page' must be a whole number between -2147483648 and 2147483647, not 'abc'", problem.GetProperty("detail").GetString());
        Assert.DoesNotContain("int page", problem.GetRawText());
    }

    [Fact]
    public async Task EnumSettingsAndStatesAreTakenByNameOnly()
    {
        var client = host.Client();
        var (model, dataset) = await JobScenario.UploadAsync(client);
        async Task<JsonElement> Refused(string settings) => await client.PostAsync("/api/jobs", new StringContent(
                $$"""{"modelId": "{{model}}", "datasetId": "{{dataset}}", "settings": {{settings}} }""", Encoding.UTF8, "application/json"))
            .ExpectAsync(HttpStatusCode.BadRequest);

        var method = await Refused("""{"method": "1"}""");
        Assert.Equal("must be one of 'dns', 'magnitude'", method.GetProperty("errors").GetProperty("settings.method")[0].GetString());
        var policy = await Refused("""{"lrPolicy": 2}""");
        Assert.Equal("must be one of 'fixed', 'step', 'inv'", policy.GetProperty("errors").GetProperty("settings.lrPolicy")[0].GetString());

        var state = await client.GetAsync("/api/jobs?state=1").ExpectAsync(HttpStatusCode.BadRequest);
        Assert.Contains("Queued", state.GetProperty("errors").GetProperty("state")[0].GetString());
        await client.GetAsync("/api/jobs?state=queued").ExpectAsync(HttpStatusCode.OK);
    }

    [Fact]
    public async Task ADuplicateMemberIsRefusedWithItsName()
    {
        var client = host.Client();
        var (model, dataset) = await JobScenario.UploadAsync(client);
        var jobsBefore = await host.Db.ScalarAsync<long>("SELECT count(*) FROM jobs");
        async Task<JsonElement> Refused(string body) =>
            await client.PostAsync("/api/jobs", new StringContent(body, Encoding.UTF8, "application/json")).ExpectAsync(HttpStatusCode.BadRequest);

        var nested = await Refused($$"""{"modelId": "{{model}}", "datasetId": "{{dataset}}", "settings": {"iterations": 50, "iterations": 100000} }""");
        Assert.Equal(["settings.iterations"], nested.GetProperty("errors").EnumerateObject().Select(e => e.Name));
        Assert.Contains("more than once", nested.GetProperty("detail").GetString());
        var top = await Refused($$"""{"modelId": "{{model}}", "datasetId": "{{dataset}}", "modelId": "{{Guid.NewGuid()}}"}""");
        Assert.Equal(["modelId"], top.GetProperty("errors").EnumerateObject().Select(e => e.Name));
        Assert.DoesNotContain("SurgeryService", top.GetRawText());
        Assert.Equal(jobsBefore, await host.Db.ScalarAsync<long>("SELECT count(*) FROM jobs"));
    }

    [Fact]
    public async Task MetricsHonourAZeroQualityForCsvAndTheCursorNeverOverflows()
    {
        var client = host.Client();
        var (model, dataset) = await JobScenario.UploadAsync(client);
        var job = await JobScenario.SubmitAsync(client, JobScenario.Request(model, dataset, 10, 5)); // no worker: stays queued
        foreach (var iteration in new[] { 0, 1 })
        {
            await host.Db.ScalarAsync<int>("INSERT INTO job_metrics (\"JobId\", \"Iteration\", \"Loss\", \"LearningRate\", \"Kept\", " +
                $"\"Total\", \"LayerKept\", \"LayerPruned\", \"LayerSpliced\") VALUES ('{job}', {iteration}, 1, 0.01, 5, 10, '{{}}', '{{}}', '{{}}')");
        }
        async Task<HttpResponseMessage> Metrics(string query, string accept)
        {
            var request = new HttpRequestMessage(HttpMethod.Get, $"/api/jobs/{job}/metrics{query}");
            request.Headers.TryAddWithoutValidation("Accept", accept);
            return await client.SendAsync(request);
        }

        var refused = await Metrics("", "text/csv;q=0, application/json");
        Assert.Equal("application/json", refused.Content.Headers.ContentType?.MediaType);
        Assert.Equal(2, (await refused.JsonAsync()).GetProperty("points").GetArrayLength());
        Assert.Equal("text/csv", (await Metrics("", "text/csv")).Content.Headers.ContentType?.MediaType);
        Assert.Equal("text/csv", (await Metrics("", "application/json;q=0.5, text/csv")).Content.Headers.ContentType?.MediaType);

        var last = await (await Metrics($"?from=1&stride={int.MaxValue}&limit=1", "application/json")).JsonAsync();
        Assert.Equal(1, last.GetProperty("points")[0].GetProperty("iteration").GetInt32());
        Assert.Equal(JsonValueKind.Null, last.GetProperty("nextFrom").ValueKind);
        var first = await (await Metrics("?limit=1", "application/json")).JsonAsync();
        Assert.Equal(1, first.GetProperty("nextFrom").GetInt32());
        await client.PostAsync($"/api/jobs/{job}/cancel", null).ExpectAsync(HttpStatusCode.Accepted);
    }

    [Fact]
    public async Task ErrorAnswersThatEndpointsReturnAreProblemJson()
    {
        var client = host.Client();
        var (model, dataset) = await JobScenario.UploadAsync(client);
        var job = await JobScenario.SubmitAsync(client, JobScenario.Request(model, dataset, 10, 5));
        var answers = new[]
        {
            (await client.GetAsync($"/api/jobs/{Guid.NewGuid()}"), HttpStatusCode.NotFound),
            (await client.GetAsync($"/api/jobs/{job}/result"), HttpStatusCode.Conflict),
            (await client.PostJsonAsync("/api/jobs", new { modelId = Guid.NewGuid(), datasetId = dataset }), HttpStatusCode.UnprocessableEntity),
            (await client.GetAsync("/api/jobs?page=0"), HttpStatusCode.BadRequest),
        };
        foreach (var (response, status) in answers)
        {
            Assert.Equal(status, response.StatusCode);
            Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
            Assert.Equal((int)status, (await response.JsonAsync()).GetProperty("status").GetInt32());
        }
        await client.PostAsync($"/api/jobs/{job}/cancel", null).ExpectAsync(HttpStatusCode.Accepted);
    }

    [Fact]
    public async Task TheOpenApiDocumentStatesEachSettingsRange()
    {
        var document = await host.Client(null).GetAsync("/swagger/v1/swagger.json").ExpectAsync(HttpStatusCode.OK);
        var schemas = document.GetProperty("components").GetProperty("schemas");
        string Description(string schema, string property) =>
            schemas.GetProperty(schema).GetProperty("properties").GetProperty(property).GetProperty("description").GetString()!;

        Assert.Contains("0 to 100", Description("SurgerySettings", "cRate"));
        Assert.Contains("at most 10000", Description("SurgerySettings", "learningRate"));
        Assert.Contains("0 to 1;", Description("SurgerySettings", "weightDecay"));
        Assert.Contains("0 to 10", Description("LayerSettings", "power"));
        Assert.Contains("1 to 10080", Description("SurgeryTarget", "maxMinutes"));
        Assert.Contains("Seconds the job is expected to run", Description("JobResponse", "expectedSeconds"));
    }

    private static byte[] Mlp(Action<GraphProto> change)
    {
        var model = ModelProto.Parser.ParseFrom(OnnxMlp.Create(hidden: 8));
        change(model.Graph);
        return model.ToByteArray();
    }

    /// <summary>A multipart body written by hand: headers of the file part exactly as given, then the other fields.</summary>
    private static ByteArrayContent RawForm(
        byte[] file, string fileHeaders, string? extraHeader = null, string preamble = "", (string Name, string Value)[]? extra = null)
    {
        using var body = new MemoryStream();
        void Write(string text) => body.Write(Encoding.UTF8.GetBytes(text));
        Write(preamble + "--b\r\n" + fileHeaders + "\r\n" + (extraHeader is null ? "" : extraHeader + "\r\n") + "\r\n");
        body.Write(file);
        foreach (var (name, value) in extra ?? [])
        {
            Write($"\r\n--b\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}");
        }
        Write("\r\n--b--\r\n");
        var content = new ByteArrayContent(body.ToArray());
        content.Headers.ContentType = MediaTypeHeaderValue.Parse("multipart/form-data; boundary=b");
        return content;
    }

    private static Stream Zeros(long count, byte[]? head = null) => new ZeroStream(head ?? [], count);

    private static byte[] Concat(params byte[][] parts) => parts.SelectMany(p => p).ToArray();

    private static byte[] IdxHeader(byte type, params int[] shape)
    {
        var header = new byte[4 + 4 * shape.Length];
        header[2] = type;
        header[3] = (byte)shape.Length;
        for (var i = 0; i < shape.Length; i++) BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(4 + 4 * i), shape[i]);
        return header;
    }

    private static byte[] NpyHeader(string dtype, string shape)
    {
        var header = $"{{'descr': '{dtype}', 'fortran_order': False, 'shape': {shape}, }}".PadRight(117) + "\n";
        return Concat([0x93, .. "NUMPY"u8, 1, 0], BitConverter.GetBytes((ushort)header.Length), Encoding.ASCII.GetBytes(header));
    }

    private record Entry(byte[]? Bytes, Stream? Content, CompressionLevel Level, string? Suffix = null);

    private static Entry Deflated(Stream content) => new(null, content, CompressionLevel.Fastest);

    private static Entry Deflated(byte[] content) => new(content, null, CompressionLevel.Fastest);

    private static Entry Stored(byte[] gzip) => new(gzip, null, CompressionLevel.NoCompression, ".gz");

    private static byte[] Gzip(Stream content)
    {
        using var memory = new MemoryStream();
        using (var gzip = new GZipStream(memory, CompressionLevel.Fastest, leaveOpen: true)) content.CopyTo(gzip);
        return memory.ToArray();
    }

    /// <summary>An IDX zip whose train-images entry is <paramref name="trainImages"/>; the other three are small and valid.</summary>
    private static byte[] IdxZip(Entry trainImages)
    {
        using var memory = new MemoryStream();
        using (var zip = new ZipArchive(memory, ZipArchiveMode.Create, leaveOpen: true))
        {
            void Add(string name, Entry entry)
            {
                using var stream = zip.CreateEntry(name + entry.Suffix, entry.Level).Open();
                if (entry.Bytes is not null) stream.Write(entry.Bytes);
                else entry.Content!.CopyTo(stream);
            }
            Add("train-images-idx3-ubyte", trainImages);
            Add("train-labels-idx1-ubyte", Deflated(Concat(IdxHeader(0x08, 10), new byte[10])));
            Add("t10k-images-idx3-ubyte", Deflated(Concat(IdxHeader(0x08, 2, 28, 28), new byte[2 * 784])));
            Add("t10k-labels-idx1-ubyte", Deflated(Concat(IdxHeader(0x08, 2), new byte[2])));
        }
        return memory.ToArray();
    }

    /// <summary>A zip of <paramref name="count"/> empty stored entries.</summary>
    private static byte[] ManyEntries(int count)
    {
        using var memory = new MemoryStream();
        using (var zip = new ZipArchive(memory, ZipArchiveMode.Create, leaveOpen: true))
        {
            for (var i = 0; i < count; i++) zip.CreateEntry(i.ToString(System.Globalization.CultureInfo.InvariantCulture), CompressionLevel.NoCompression);
        }
        return memory.ToArray();
    }

    /// <summary>An .npz whose x_train.npy entry is <paramref name="xTrain"/> (deflated), with small valid other arrays.</summary>
    private static byte[] NpzWithXTrain(object xTrain)
    {
        var rest = TestData.Npz(CompressionLevel.Fastest,
            ("y_train", "<i8", [10], new byte[80]), ("x_test", "|u1", [2, 28, 28], new byte[2 * 784]), ("y_test", "<i8", [2], new byte[16]));
        using var memory = new MemoryStream();
        memory.Write(rest);
        using (var zip = new ZipArchive(memory, ZipArchiveMode.Update, leaveOpen: true))
        {
            using var stream = zip.CreateEntry("x_train.npy", CompressionLevel.Fastest).Open();
            if (xTrain is byte[] bytes) stream.Write(bytes);
            else ((Stream)xTrain).CopyTo(stream);
        }
        return memory.ToArray();
    }
}
