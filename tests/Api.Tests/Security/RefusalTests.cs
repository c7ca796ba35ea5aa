using System.Net;
using System.Net.Http.Headers;
using System.Text;
using SurgeryService.Api.Tests.Infrastructure;
using SurgeryService.Api.Tests.Jobs;

namespace SurgeryService.Api.Tests.Security;

public sealed class RefusalHost() : ServiceHost("refusals", withWorker: false,
    new Dictionary<string, string?> { ["Api:MaxUploadBytes"] = "2000000", ["Api:DashboardTenants:0"] = "acme" });

/// <summary>Every refusal is a 4xx ProblemDetails that names the problem; nothing reaches a worker.</summary>
public sealed class RefusalTests(RefusalHost host) : IClassFixture<RefusalHost>
{
    [Theory]
    [InlineData("GET", "/api/models")]
    [InlineData("GET", "/api/datasets")]
    [InlineData("GET", "/api/jobs")]
    [InlineData("POST", "/api/jobs")]
    [InlineData("GET", "/hangfire")]
    public async Task RequestsWithoutAValidKeyAre401(string method, string path)
    {
        foreach (var key in new[] { null, "not-a-configured-key-at-all" })
        {
            var response = await host.Client(key).SendAsync(new HttpRequestMessage(new HttpMethod(method), path));
            Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
            Assert.NotEmpty(response.Headers.WwwAuthenticate);
        }
    }

    [Fact]
    public async Task AnApiKeyThatIsTooShortOrSharedStopsTheApiAtStart()
    {
        await using var factory = new SurgeryApiFactory(host.Db.ConnectionString, new Dictionary<string, string?>
        {
            ["Tenants:acme:ApiKeys:0"] = "short",
            ["Tenants:globex:ApiKeys:0"] = ServiceHost.AcmeKey,
            ["Tenants:initech:ApiKeys:0"] = ServiceHost.AcmeKey,
        });

        var failure = Assert.ThrowsAny<Exception>(() => factory.CreateClient());

        var message = failure.ToString();
        Assert.Contains("shorter than 16 characters", message);
        Assert.Contains("also configured for another tenant", message);
    }

    [Theory]
    [InlineData("Hangfire:InvisibilityTimeoutSeconds", "0")]
    [InlineData("Hangfire:QueuePollIntervalMilliseconds", "-5")]
    [InlineData("Jobs:OrphanSweepSeconds", "0")]
    public async Task ABadHangfireOrJobSettingStopsTheApiAtStartNamingIt(string setting, string value)
    {
        await using var factory = new SurgeryApiFactory(host.Db.ConnectionString, new Dictionary<string, string?>
        {
            ["Tenants:acme:ApiKeys:0"] = ServiceHost.AcmeKey,
            [setting] = value,
        });

        var failure = Assert.ThrowsAny<Exception>(() => factory.CreateClient());

        var message = failure.ToString();
        Assert.True(message.Contains($"members: '{setting.Split(':')[1]}'", StringComparison.Ordinal), message);
    }

    [Fact]
    public async Task TheHangfireDashboardOpensForOperatorTenantsWithTheKeyInTheHeaderOrAsBasicPassword()
    {
        Assert.Equal(HttpStatusCode.OK, (await host.Client(ServiceHost.AcmeKey).GetAsync("/hangfire")).StatusCode);
        var browser = host.Client(null);
        browser.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic",
            Convert.ToBase64String(Encoding.UTF8.GetBytes("anyone:" + ServiceHost.AcmeKey)));
        Assert.Equal(HttpStatusCode.OK, (await browser.GetAsync("/hangfire")).StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await host.Client(ServiceHost.GlobexKey).GetAsync("/hangfire")).StatusCode);
    }

    [Fact]
    public async Task SwaggerDocumentsTheApiKeyAndAnExampleForEachRequestBody()
    {
        var document = await host.Client(null).GetAsync("/swagger/v1/swagger.json").ExpectAsync(HttpStatusCode.OK);
        var scheme = document.GetProperty("components").GetProperty("securitySchemes").GetProperty("ApiKey");
        Assert.Equal("X-Api-Key", scheme.GetProperty("name").GetString());
        var submit = document.GetProperty("paths").GetProperty("/api/jobs").GetProperty("post");
        Assert.Equal("dns", submit.GetProperty("requestBody").GetProperty("content").GetProperty("application/json")
            .GetProperty("example").GetProperty("method").GetString());
        var upload = document.GetProperty("paths").GetProperty("/api/models").GetProperty("post");
        Assert.Equal("lenet-300-100", upload.GetProperty("requestBody").GetProperty("content").GetProperty("multipart/form-data")
            .GetProperty("example").GetProperty("architecture").GetString());

        // Every status an endpoint returns is in its Results<...> union, so the document lists it; 503 (the database is
        // down) stands on every operation.
        string[] Statuses(string path, string method) => document.GetProperty("paths").GetProperty(path).GetProperty(method)
            .GetProperty("responses").EnumerateObject().Select(r => r.Name).Order().ToArray();
        Assert.Equal(["202", "400", "422", "503"], Statuses("/api/jobs", "post"));
        Assert.Equal(["202", "404", "409", "503"], Statuses("/api/jobs/{id}/cancel", "post"));
        Assert.Equal(["200", "400", "404", "409", "422", "503"], Statuses("/api/jobs/{id}/result", "get"));
        Assert.Equal(["200", "404", "409", "503"], Statuses("/api/jobs/{id}/report", "get"));
        Assert.Equal(["204", "404", "409", "503"], Statuses("/api/models/{id}", "delete"));
        Assert.Equal(["204", "404", "409", "503"], Statuses("/api/datasets/{id}", "delete"));
        Assert.Equal(["201", "400", "413", "415", "422", "503"], Statuses("/api/models", "post"));
        Assert.Equal(["201", "400", "413", "415", "422", "503"], Statuses("/api/datasets", "post"));

        // The one list contract: every field of the page and the paging parameters are described, defaults included.
        var schemas = document.GetProperty("components").GetProperty("schemas");
        foreach (var (path, item) in new[] { ("/api/models", "ModelResponse"), ("/api/datasets", "DatasetResponse"), ("/api/jobs", "JobResponse") })
        {
            Assert.Equal(["200", "400", "503"], Statuses(path, "get"));
            var list = document.GetProperty("paths").GetProperty(path).GetProperty("get");
            var page = schemas.GetProperty(item + "ListPage").GetProperty("properties");
            Assert.Equal(["items", "page", "pageSize", "totalCount"], page.EnumerateObject().Select(p => p.Name).Order());
            Assert.All(page.EnumerateObject(), p => Assert.False(string.IsNullOrWhiteSpace(p.Value.GetProperty("description").GetString())));
            var pageSize = list.GetProperty("parameters").EnumerateArray().Single(p => p.GetProperty("name").GetString() == "pageSize");
            Assert.Contains("default 20", pageSize.GetProperty("description").GetString());
            Assert.Equal(20, pageSize.GetProperty("schema").GetProperty("default").GetInt32());
        }
    }

    [Fact]
    public async Task AnUploadOverTheLimitIs413AndLeavesNothingBehind()
    {
        const string storedBytes = "SELECT count(*) FROM artifact_chunks";
        var before = await host.Db.ScalarAsync<long>(storedBytes);
        var response = await host.Client().PostAsync("/api/datasets",
            HttpExtensions.Form(new byte[3_000_000], "big.npz")).ExpectAsync(HttpStatusCode.RequestEntityTooLarge);
        Assert.Contains("2000000", response.GetProperty("detail").GetString());
        Assert.Equal(before, await host.Db.ScalarAsync<long>(storedBytes));
    }

    [Fact]
    public async Task AChunkedUploadOverTheLimitIs413()
    {
        var form = new MultipartFormDataContent();
        form.Add(new StreamContent(new MemoryStream(new byte[2_500_000])), "file", "big.bin");
        var request = new HttpRequestMessage(HttpMethod.Post, "/api/models") { Content = form };
        request.Headers.TransferEncodingChunked = true;
        await host.Client().SendAsync(request).ExpectAsync(HttpStatusCode.RequestEntityTooLarge);
    }

    [Fact]
    public async Task ModelUploadsAreCheckedByContentNotByName()
    {
        var client = host.Client();
        var modelsBefore = await host.Db.ScalarAsync<long>("SELECT count(*) FROM artifacts WHERE \"Kind\" = 'ModelUpload'");
        var notWeights = await client.PostAsync("/api/models",
            HttpExtensions.Form(Encoding.UTF8.GetBytes("definitely not a model"), "model.bin", ("architecture", "lenet-300-100")))
            .ExpectAsync(HttpStatusCode.UnprocessableEntity);
        Assert.Contains("lenet-300-100", notWeights.GetProperty("detail").GetString());

        // LeNet-5 weights claimed to be LeNet-300-100: shapes do not match.
        await client.PostAsync("/api/models",
            HttpExtensions.Form(TestData.TorchSharpWeights("lenet-5"), "lenet300.bin", ("architecture", "lenet-300-100")))
            .ExpectAsync(HttpStatusCode.UnprocessableEntity);

        var unknown = await client.PostAsync("/api/models",
            HttpExtensions.Form(TestData.TorchSharpWeights("lenet-5"), "m.bin", ("architecture", "resnet-50")))
            .ExpectAsync(HttpStatusCode.UnprocessableEntity);
        Assert.Contains("lenet-5", unknown.GetProperty("detail").GetString());

        var weightsWithoutArchitecture = await client.PostAsync("/api/models",
            HttpExtensions.Form(TestData.TorchSharpWeights("lenet-5"), "model.onnx"))
            .ExpectAsync(HttpStatusCode.UnprocessableEntity);
        Assert.Contains("architecture", weightsWithoutArchitecture.GetProperty("detail").GetString());

        await client.PostAsync("/api/models", new StringContent("{}", Encoding.UTF8, "application/json"))
            .ExpectAsync(HttpStatusCode.UnsupportedMediaType);
        await client.PostAsync("/api/models", new MultipartFormDataContent { { new StringContent("x"), "name" } })
            .ExpectAsync(HttpStatusCode.BadRequest);
        Assert.Equal(modelsBefore, await host.Db.ScalarAsync<long>("SELECT count(*) FROM artifacts WHERE \"Kind\" = 'ModelUpload'"));
    }

    [Fact]
    public async Task AModelUploadReportsItsLayersSizeAndHash()
    {
        var weights = TestData.TorchSharpWeights("lenet-5");
        var model = await host.Client().PostAsync("/api/models",
            HttpExtensions.Form(weights, "lenet5.bin", ("architecture", "lenet-5"), ("name", "my lenet")))
            .ExpectAsync(HttpStatusCode.Created);

        Assert.Equal("my lenet", model.GetProperty("name").GetString());
        Assert.Equal("torchsharp", model.GetProperty("format").GetString());
        Assert.Equal(weights.Length, model.GetProperty("size").GetInt64());
        Assert.Equal(Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(weights)), model.GetProperty("sha256").GetString());
        Assert.Equal([1, 28, 28], model.GetProperty("inputShape").EnumerateArray().Select(d => d.GetInt64()));
        Assert.Equal(431_080, model.GetProperty("parameterCount").GetInt64());
        var layers = model.GetProperty("layers").EnumerateArray().ToList();
        Assert.Equal(["conv1", "conv2", "fc1", "fc2"], layers.Select(l => l.GetProperty("name").GetString()));
        Assert.All(layers, l => Assert.True(l.GetProperty("prunable").GetBoolean()));
        Assert.Contains("Conv2d", model.GetProperty("operators").EnumerateArray().Select(o => o.GetString()));
    }

    [Fact]
    public async Task DatasetUploadsAcceptNpzWithDeflatedOrStoredEntriesAndIdxZips()
    {
        var client = host.Client();
        var npz = await client.PostAsync("/api/datasets", HttpExtensions.Form(TestData.MnistNpz(100, 40), "data.bin"))
            .ExpectAsync(HttpStatusCode.Created);
        Assert.Equal("npz", npz.GetProperty("format").GetString());
        Assert.Equal(100, npz.GetProperty("trainCount").GetInt64());
        Assert.Equal(40, npz.GetProperty("testCount").GetInt64());
        Assert.Equal([1, 28, 28], npz.GetProperty("sampleShape").EnumerateArray().Select(d => d.GetInt64()));
        Assert.Equal("uint8", npz.GetProperty("inputType").GetString());
        Assert.Equal(10, npz.GetProperty("classCount").GetInt32());

        var (xTrain, yTrain, xTest, yTest) = TestData.MnistSubset(30, 20);
        var floats = TestData.Npz(System.IO.Compression.CompressionLevel.NoCompression,
            ("x_train", "<f4", [30, 784], TestData.Float32(xTrain, 1 / 255f)),
            ("y_train", "<i8", [30], TestData.Int64(yTrain)),
            ("x_test", "<f4", [20, 784], TestData.Float32(xTest, 1 / 255f)),
            ("y_test", "<i8", [20], TestData.Int64(yTest)));
        var flat = await client.PostAsync("/api/datasets", HttpExtensions.Form(floats, "flat.npz")).ExpectAsync(HttpStatusCode.Created);
        Assert.Equal([784], flat.GetProperty("sampleShape").EnumerateArray().Select(d => d.GetInt64()));
        Assert.Equal("float32", flat.GetProperty("inputType").GetString());

        var idx = await client.PostAsync("/api/datasets", HttpExtensions.Form(TestData.MnistIdxZip(50, 10), "mnist.zip"))
            .ExpectAsync(HttpStatusCode.Created);
        Assert.Equal("idx", idx.GetProperty("format").GetString());
        Assert.Equal(50, idx.GetProperty("trainCount").GetInt64());
    }

    [Fact]
    public async Task AnIdxZipIsInspectedFromItsHeadersGzippedOrNotAndAShortFileIsRefusedTheSameWay()
    {
        var client = host.Client();
        var (xTrain, yTrain, xTest, yTest) = TestData.MnistSubset(40, 10);
        static byte[] Gzip(byte[] data)
        {
            using var memory = new MemoryStream();
            using (var gzip = new System.IO.Compression.GZipStream(memory, System.IO.Compression.CompressionLevel.Fastest, leaveOpen: true))
            {
                gzip.Write(data);
            }
            return memory.ToArray();
        }
        byte[] Zip(byte[] trainImages, Func<byte[], byte[]> encode)
        {
            using var memory = new MemoryStream();
            using (var zip = new System.IO.Compression.ZipArchive(memory, System.IO.Compression.ZipArchiveMode.Create, leaveOpen: true))
            {
                foreach (var (name, data) in new[]
                         {
                             ("train-images-idx3-ubyte", trainImages), ("train-labels-idx1-ubyte", TestData.Idx(0x08, [40], yTrain)),
                             ("t10k-images-idx3-ubyte", TestData.Idx(0x08, [10, 28, 28], xTest)), ("t10k-labels-idx1-ubyte", TestData.Idx(0x08, [10], yTest)),
                         })
                {
                    using var entry = zip.CreateEntry(name).Open();
                    entry.Write(encode(data));
                }
            }
            return memory.ToArray();
        }
        var images = TestData.Idx(0x08, [40, 28, 28], xTrain);
        var shortImages = TestData.Idx(0x08, [40, 28, 28], xTrain[..(39 * 784)]);

        var gzipped = await client.PostAsync("/api/datasets", HttpExtensions.Form(Zip(images, Gzip), "gz.zip"))
            .ExpectAsync(HttpStatusCode.Created);
        Assert.Equal([1L, 28, 28], gzipped.GetProperty("sampleShape").EnumerateArray().Select(d => d.GetInt64()));
        Assert.Equal(40, gzipped.GetProperty("trainCount").GetInt64());
        Assert.Equal(10, gzipped.GetProperty("testCount").GetInt64());
        Assert.Equal("uint8", gzipped.GetProperty("inputType").GetString());

        foreach (var encode in new Func<byte[], byte[]>[] { d => d, Gzip })
        {
            var refused = await client.PostAsync("/api/datasets", HttpExtensions.Form(Zip(shortImages, encode), "short.zip"))
                .ExpectAsync(HttpStatusCode.UnprocessableEntity);
            Assert.Equal("train-images-idx3-ubyte holds 30576 data bytes but its header announces 31360",
                refused.GetProperty("detail").GetString());
        }
    }

    [Fact]
    public async Task BadDatasetsAre422WithTheReason()
    {
        var client = host.Client();
        var notZip = await client.PostAsync("/api/datasets", HttpExtensions.Form(new byte[100], "data.npz"))
            .ExpectAsync(HttpStatusCode.UnprocessableEntity);
        Assert.Contains("zip", notZip.GetProperty("detail").GetString());

        var corrupt = TestData.MnistNpz(20, 10);
        corrupt.AsSpan(200, 400).Fill(0x5A); // inside the first deflated entry
        var damaged = await client.PostAsync("/api/datasets", HttpExtensions.Form(corrupt, "damaged.npz"))
            .ExpectAsync(HttpStatusCode.UnprocessableEntity);
        Assert.Contains("corrupt", damaged.GetProperty("detail").GetString());

        var (xTrain, yTrain, _, _) = TestData.MnistSubset(10, 10);
        var partial = TestData.Npz(System.IO.Compression.CompressionLevel.Fastest,
            ("x_train", "|u1", [10, 28, 28], xTrain), ("y_train", "<i8", [10], TestData.Int64(yTrain)));
        var missing = await client.PostAsync("/api/datasets", HttpExtensions.Form(partial, "d.npz"))
            .ExpectAsync(HttpStatusCode.UnprocessableEntity);
        Assert.Contains("x_test", missing.GetProperty("detail").GetString());

        var mismatched = TestData.Npz(System.IO.Compression.CompressionLevel.Fastest,
            ("x_train", "|u1", [10, 28, 28], xTrain), ("y_train", "<i8", [9], TestData.Int64(yTrain[..9])),
            ("x_test", "|u1", [10, 28, 28], xTrain), ("y_test", "<i8", [10], TestData.Int64(yTrain)));
        var counts = await client.PostAsync("/api/datasets", HttpExtensions.Form(mismatched, "d.npz"))
            .ExpectAsync(HttpStatusCode.UnprocessableEntity);
        Assert.Contains("10 training inputs but 9 training labels", counts.GetProperty("detail").GetString());

        var complex = TestData.Npz(System.IO.Compression.CompressionLevel.Fastest,
            ("x_train", "<c8", [1, 1], new byte[8]), ("y_train", "<i8", [1], new byte[8]),
            ("x_test", "<c8", [1, 1], new byte[8]), ("y_test", "<i8", [1], new byte[8]));
        var dtype = await client.PostAsync("/api/datasets", HttpExtensions.Form(complex, "d.npz"))
            .ExpectAsync(HttpStatusCode.UnprocessableEntity);
        Assert.Contains("<c8", dtype.GetProperty("detail").GetString());
    }

    [Fact]
    public async Task InvalidJobRequestsNameEveryBadField()
    {
        var client = host.Client();
        var (model, dataset) = await JobScenario.UploadAsync(client);
        var jobsBefore = await host.Db.ScalarAsync<long>("SELECT count(*) FROM jobs");

        var malformed = await client.PostAsync("/api/jobs", new StringContent("{\"modelId\": 42}", Encoding.UTF8, "application/json"))
            .ExpectAsync(HttpStatusCode.BadRequest);
        Assert.Contains("modelId", malformed.GetProperty("errors").EnumerateObject().Select(e => e.Name));

        var incomplete = await client.PostJsonAsync("/api/jobs", new { method = "prune-everything", queue = "tpu" })
            .ExpectAsync(HttpStatusCode.BadRequest);
        Assert.Equal(["datasetId", "method", "modelId", "queue"],
            incomplete.GetProperty("errors").EnumerateObject().Select(e => e.Name).Order());

        var invalid = await client.PostJsonAsync("/api/jobs", new
        {
            modelId = Guid.NewGuid(),
            datasetId = dataset,
            checkpointInterval = 0,
            settings = new { iterations = 0, momentum = 1.5 },
            preprocessing = new { std = new[] { 0.0 } },
        }).ExpectAsync(HttpStatusCode.UnprocessableEntity);
        Assert.Equal(["checkpointInterval", "modelId", "preprocessing.std", "settings.iterations", "settings.momentum"],
            invalid.GetProperty("errors").EnumerateObject().Select(e => e.Name).Order());

        // LeNet-5 weights with a dataset of flat 10-value samples: refused before queueing.
        var tiny = TestData.Npz(System.IO.Compression.CompressionLevel.Fastest,
            ("x_train", "<f4", [2, 10], new byte[80]), ("y_train", "<i8", [2], new byte[16]),
            ("x_test", "<f4", [2, 10], new byte[80]), ("y_test", "<i8", [2], new byte[16]));
        var tinyId = (await client.PostAsync("/api/datasets", HttpExtensions.Form(tiny, "tiny.npz"))
            .ExpectAsync(HttpStatusCode.Created)).GetProperty("id").GetGuid();
        var shape = await client.PostJsonAsync("/api/jobs", new { modelId = model, datasetId = tinyId })
            .ExpectAsync(HttpStatusCode.UnprocessableEntity);
        Assert.Contains("784", shape.GetProperty("errors").GetProperty("datasetId")[0].GetString());
        Assert.Equal(jobsBefore, await host.Db.ScalarAsync<long>("SELECT count(*) FROM jobs"));
    }

    [Fact]
    public async Task QueriesWithBadParametersAre400()
    {
        var client = host.Client();
        var list = await client.GetAsync("/api/jobs?state=Sleeping&pageSize=1000").ExpectAsync(HttpStatusCode.BadRequest);
        Assert.Equal(["pageSize", "state"], list.GetProperty("errors").EnumerateObject().Select(e => e.Name).Order());
        await client.GetAsync($"/api/jobs/{Guid.NewGuid()}/metrics?stride=0").ExpectAsync(HttpStatusCode.BadRequest);
        await client.GetAsync($"/api/jobs/{Guid.NewGuid()}/result?format=pickle").ExpectAsync(HttpStatusCode.BadRequest);
        await client.GetAsync($"/api/jobs/{Guid.NewGuid()}").ExpectAsync(HttpStatusCode.NotFound);
        await client.GetAsync("/api/jobs/not-a-guid").ExpectAsync(HttpStatusCode.NotFound);
        await client.GetAsync("/api/jobs?page=first").ExpectAsync(HttpStatusCode.BadRequest);
        await client.PostAsync("/api/jobs", new StringContent("modelId=1", Encoding.UTF8, "text/plain"))
            .ExpectAsync(HttpStatusCode.UnsupportedMediaType);
        var truncated = new StringContent("--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"m.bin\"\r\n\r\nabc");
        truncated.Headers.ContentType = MediaTypeHeaderValue.Parse("multipart/form-data; boundary=b");
        await client.PostAsync("/api/models", truncated).ExpectAsync(HttpStatusCode.BadRequest);
    }

    [Fact]
    public async Task AQueuedJobAnswers409ForItsResultAndCanBeCancelled()
    {
        var client = host.Client();
        var (model, dataset) = await JobScenario.UploadAsync(client);
        var job = await JobScenario.SubmitAsync(client, JobScenario.Request(model, dataset, 10, 5));

        var result = await client.GetAsync($"/api/jobs/{job}/result").ExpectAsync(HttpStatusCode.Conflict);
        Assert.Contains("Queued", result.GetProperty("detail").GetString());
        await client.GetAsync($"/api/jobs/{job}/report").ExpectAsync(HttpStatusCode.Conflict);

        var cancelled = await client.PostAsync($"/api/jobs/{job}/cancel", null).ExpectAsync(HttpStatusCode.Accepted);
        Assert.Equal("Cancelled", cancelled.GetProperty("state").GetString());
        var page = await client.GetAsync("/api/jobs?state=cancelled").ExpectAsync(HttpStatusCode.OK);
        Assert.Contains(page.GetProperty("items").EnumerateArray(), j => j.GetProperty("id").GetGuid() == job);
        Assert.Equal("Deleted", await host.Db.ScalarAsync<string>(
            $"SELECT statename FROM hangfire.job WHERE id = (SELECT \"HangfireJobId\"::bigint FROM jobs WHERE \"Id\" = '{job}')"));
    }

    [Fact]
    public async Task AJobGoesToTheHangfireQueueItAskedForAndJobsArePaged()
    {
        var client = host.Client();
        var (model, dataset) = await JobScenario.UploadAsync(client);
        var gpu = await client.PostJsonAsync("/api/jobs", new { modelId = model, datasetId = dataset, queue = "gpu" })
            .ExpectAsync(HttpStatusCode.Accepted);
        var cpu = await client.PostJsonAsync("/api/jobs", new { modelId = model, datasetId = dataset })
            .ExpectAsync(HttpStatusCode.Accepted);

        Assert.Equal("gpu", gpu.GetProperty("queue").GetString());
        Assert.Equal("cpu", cpu.GetProperty("queue").GetString());
        Assert.Equal(20_000, cpu.GetProperty("totalIterations").GetInt32()); // the paper's defaults
        Assert.Equal("gpu", await host.Db.ScalarAsync<string>(
            $"SELECT queue FROM hangfire.jobqueue WHERE jobid = (SELECT \"HangfireJobId\"::bigint FROM jobs WHERE \"Id\" = '{gpu.GetProperty("id").GetGuid()}')"));

        var first = await client.GetAsync("/api/jobs?pageSize=1&page=1").ExpectAsync(HttpStatusCode.OK);
        var second = await client.GetAsync("/api/jobs?pageSize=1&page=2").ExpectAsync(HttpStatusCode.OK);
        Assert.True(first.GetProperty("totalCount").GetInt32() >= 2);
        Assert.Equal(cpu.GetProperty("id").GetGuid(), first.GetProperty("items")[0].GetProperty("id").GetGuid()); // newest first
        Assert.Equal(gpu.GetProperty("id").GetGuid(), second.GetProperty("items")[0].GetProperty("id").GetGuid());
        foreach (var job in new[] { gpu, cpu })
        {
            await client.PostAsync($"/api/jobs/{job.GetProperty("id").GetGuid()}/cancel", null).ExpectAsync(HttpStatusCode.Accepted);
        }
    }

    [Fact]
    public async Task TenantsSeeOnlyTheirOwnModelsDatasetsAndJobs()
    {
        var acme = host.Client(ServiceHost.AcmeKey);
        var globex = host.Client(ServiceHost.GlobexKey);
        var (model, dataset) = await JobScenario.UploadAsync(acme);
        var job = await JobScenario.SubmitAsync(acme, JobScenario.Request(model, dataset, 10, 5));

        foreach (var path in new[]
                 {
                     $"/api/models/{model}", $"/api/datasets/{dataset}", $"/api/jobs/{job}", $"/api/jobs/{job}/metrics",
                     $"/api/jobs/{job}/events", $"/api/jobs/{job}/result", $"/api/jobs/{job}/report", $"/api/jobs/{job}/report.svg",
                 })
        {
            await globex.GetAsync(path).ExpectAsync(HttpStatusCode.NotFound);
        }
        await globex.PostAsync($"/api/jobs/{job}/cancel", null).ExpectAsync(HttpStatusCode.NotFound);
        await globex.DeleteAsync($"/api/models/{model}").ExpectAsync(HttpStatusCode.NotFound);
        await globex.DeleteAsync($"/api/datasets/{dataset}").ExpectAsync(HttpStatusCode.NotFound);
        var refused = await globex.PostJsonAsync("/api/jobs", new { modelId = model, datasetId = dataset })
            .ExpectAsync(HttpStatusCode.UnprocessableEntity);
        Assert.Equal(["datasetId", "modelId"], refused.GetProperty("errors").EnumerateObject().Select(e => e.Name).Order());

        Assert.DoesNotContain((await globex.GetAsync("/api/models").ExpectAsync(HttpStatusCode.OK)).GetProperty("items").EnumerateArray(),
            m => m.GetProperty("id").GetGuid() == model);
        Assert.DoesNotContain((await globex.GetAsync("/api/datasets").ExpectAsync(HttpStatusCode.OK)).GetProperty("items").EnumerateArray(),
            d => d.GetProperty("id").GetGuid() == dataset);
        Assert.Equal(0, (await globex.GetAsync("/api/jobs").ExpectAsync(HttpStatusCode.OK)).GetProperty("totalCount").GetInt32());
        Assert.Contains((await acme.GetAsync("/api/models").ExpectAsync(HttpStatusCode.OK)).GetProperty("items").EnumerateArray(),
            m => m.GetProperty("id").GetGuid() == model);
        Assert.Contains((await acme.GetAsync("/api/datasets").ExpectAsync(HttpStatusCode.OK)).GetProperty("items").EnumerateArray(),
            d => d.GetProperty("id").GetGuid() == dataset);
    }
}
