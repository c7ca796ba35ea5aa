using System.Buffers.Binary;
using System.IO.Compression;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using SurgeryService.Api.Tests.Infrastructure;
using SurgeryService.Api.Tests.Jobs;

namespace SurgeryService.Api.Tests.Security;

/// <summary>
/// The ids a corpus case may aim at: acme's own model, dataset and queued job, and globex's (another tenant's). No
/// worker runs, so the jobs stay queued.
/// </summary>
public sealed class BadInputHost() : ServiceHost("badinput", withWorker: false,
    new Dictionary<string, string?> { ["Api:MaxUploadBytes"] = "2000000" }), IAsyncLifetime
{
    public Guid Model { get; private set; }
    public Guid Dataset { get; private set; }
    public Guid Job { get; private set; }
    public Guid OtherModel { get; private set; }
    public Guid OtherDataset { get; private set; }
    public Guid OtherJob { get; private set; }

    Task IAsyncLifetime.DisposeAsync() => DisposeAsync();

    async Task IAsyncLifetime.InitializeAsync()
    {
        await InitializeAsync();
        (Model, Dataset) = await JobScenario.UploadAsync(Client());
        Job = await JobScenario.SubmitAsync(Client(), JobScenario.Request(Model, Dataset, 10, 5));
        var globex = Client(GlobexKey);
        (OtherModel, OtherDataset) = await JobScenario.UploadAsync(globex);
        OtherJob = await JobScenario.SubmitAsync(globex, JobScenario.Request(OtherModel, OtherDataset, 10, 5));
    }
}

/// <summary>
/// A corpus of malformed requests at every endpoint: each must get a 4xx ProblemDetails that shows no stack trace and
/// no SQL, and the Api must stay healthy after it.
/// </summary>
public sealed class BadInputCorpusTests(BadInputHost host) : IClassFixture<BadInputHost>
{
    private static readonly string[] Leaks =
    [
        "   at ", "Exception", "Npgsql", "SELECT ", "INSERT ", "UPDATE ", "DELETE FROM", "syntax error", "/work/", ".cs:line",
        // .NET type names (issue 27): a client is told what its request should hold, in the request's terms.
        "System.", "SurgeryService.", "`1", "Nullable",
    ];

    public static TheoryData<string> Cases() => new(Corpus.Keys);

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task IsRefusedWithA4xxProblemThatLeaksNothing(string name)
    {
        var (tenantKey, request) = Corpus[name](host);
        using var client = host.Client(tenantKey);

        using var response = await client.SendAsync(request);
        var body = await response.Content.ReadAsStringAsync();

        var status = (int)response.StatusCode;
        Assert.True(status is >= 400 and < 500, $"{name}: {status} {body}");
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        var problem = JsonDocument.Parse(body).RootElement;
        Assert.Equal(status, problem.GetProperty("status").GetInt32());
        Assert.False(string.IsNullOrWhiteSpace(problem.GetProperty("title").GetString()), body);
        foreach (var leak in Leaks) Assert.DoesNotContain(leak, body);
        using var health = await host.Client(null).GetAsync("/health/ready");
        Assert.Equal(HttpStatusCode.OK, health.StatusCode);
    }

    [Fact]
    public void TheCorpusCoversEveryEndpoint()
    {
        var routes = Corpus.Values.Select(c => c(host).Request).Select(r => $"{r.Method} {Route(r.RequestUri!)}").ToHashSet();
        string[] endpoints =
        [
            "POST /api/models", "GET /api/models/{id}", "DELETE /api/models/{id}",
            "POST /api/datasets", "GET /api/datasets/{id}", "DELETE /api/datasets/{id}",
            "POST /api/jobs", "GET /api/jobs", "GET /api/jobs/{id}", "GET /api/jobs/{id}/metrics", "GET /api/jobs/{id}/events",
            "GET /api/jobs/{id}/result", "GET /api/jobs/{id}/report", "GET /api/jobs/{id}/report.svg", "GET /api/jobs/{id}/log",
            "POST /api/jobs/{id}/cancel", "DELETE /api/jobs/{id}", "GET /api/models", "GET /api/datasets",
            "POST /api/jobs/sensitivity", "GET /api/jobs/{id}/sensitivity", "GET /api/jobs/{id}/sensitivity.svg",
        ];
        Assert.Empty(endpoints.Except(routes));
    }

    private static string Route(Uri uri)
    {
        var path = uri.OriginalString.Split('?')[0].Split('/');
        return string.Join('/', path.Select((part, i) => i == 3 && Guid.TryParse(part, out _) ? "{id}" : part));
    }

    private delegate (string? Key, HttpRequestMessage Request) Case(BadInputHost host);

    private static readonly Dictionary<string, Case> Corpus = BuildCorpus();

    private static Dictionary<string, Case> BuildCorpus()
    {
        var cases = new Dictionary<string, Case>();
        void Add(string name, Func<BadInputHost, HttpRequestMessage> request, string? key = ServiceHost.AcmeKey) =>
            cases.Add(name, host => (key, request(host)));
        HttpRequestMessage WithBasic(HttpRequestMessage request)
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Basic",
                Convert.ToBase64String(Encoding.UTF8.GetBytes("browser:" + ServiceHost.AcmeKey)));
            return request;
        }
        HttpRequestMessage Get(string path) => new(HttpMethod.Get, path);
        HttpRequestMessage Upload(string path, byte[] file, string fileName, params (string, string)[] fields) =>
            new(HttpMethod.Post, path) { Content = HttpExtensions.Form(file, fileName, fields) };
        HttpRequestMessage Json(string path, string json) =>
            new(HttpMethod.Post, path) { Content = new StringContent(json, Encoding.UTF8, "application/json") };
        HttpRequestMessage JobJson(BadInputHost h, string fields) =>
            Json("/api/jobs", $"{{\"modelId\":\"{h.Model}\",\"datasetId\":\"{h.Dataset}\",{fields}}}");

        // Models: broken ONNX, lying weight files, malformed forms.
        var onnx = OnnxMlp.Create(hidden: 8);
        Add("model: truncated ONNX", _ => Upload("/api/models", onnx[..(onnx.Length / 2)], "half.onnx"));
        Add("model: ONNX cut after its first bytes", _ => Upload("/api/models", onnx[..7], "stub.onnx"));
        Add("model: random bytes as ONNX", _ => Upload("/api/models", Random(4096, 1), "random.onnx"));
        Add("model: random bytes as TorchSharp weights", _ => Upload("/api/models", Random(4096, 2), "random.bin", ("architecture", "lenet-300-100")));
        Add("model: LeNet-5 weights claimed as LeNet-300-100", _ =>
            Upload("/api/models", TestData.TorchSharpWeights("lenet-5"), "lenet5.bin", ("architecture", "lenet-300-100")));
        Add("model: unknown architecture", _ =>
            Upload("/api/models", TestData.TorchSharpWeights("lenet-300-100"), "w.bin", ("architecture", "resnet-9000")));
        Add("model: empty file", _ => Upload("/api/models", [], "empty.onnx"));
        Add("model: a zip named .onnx", _ => Upload("/api/models", TestData.MnistNpz(4, 4), "zip.onnx"));
        Add("model: form without a file part", _ => new HttpRequestMessage(HttpMethod.Post, "/api/models")
        {
            Content = new MultipartFormDataContent { { new StringContent("lenet-300-100"), "architecture" } },
        });
        Add("model: JSON instead of a form", _ => Json("/api/models", "{\"file\":\"AAAA\"}"));
        Add("model: name longer than a form field may be", _ =>
            Upload("/api/models", onnx, "m.onnx", ("name", new string('n', 5000))));
        Add("model: over the upload limit", _ => Upload("/api/models", new byte[2_500_000], "big.onnx"));
        // Issue 16's findings that answered 500 or were accepted.
        Add("model: name longer than its column", _ => Upload("/api/models", onnx, "m.onnx", ("name", new string('n', 300))));
        Add("model: NUL in the name", _ => Upload("/api/models", onnx, "m.onnx", ("name", "mlp\0v2")));
        Add("models: page 0", _ => Get("/api/models?page=0"));
        Add("datasets: page size 100000", _ => Get("/api/datasets?pageSize=100000"));

        // Datasets: zips that lie, IDX with impossible dimensions, NPZ that numpy would refuse too.
        var npz = TestData.MnistNpz(8, 4);
        Add("dataset: zip entry whose sizes claim one byte", _ => Upload("/api/datasets", LieAboutSizes(npz, 1), "lie-small.npz"));
        Add("dataset: zip entry whose sizes claim 2 GB", _ => Upload("/api/datasets", LieAboutSizes(npz, int.MaxValue), "lie-big.npz"));
        Add("dataset: truncated zip", _ => Upload("/api/datasets", npz[..(npz.Length / 2)], "half.npz"));
        Add("dataset: random bytes as npz", _ => Upload("/api/datasets", Random(8192, 3), "random.npz"));
        Add("dataset: unsupported file type", _ => Upload("/api/datasets", Random(100, 4), "data.tar"));
        Add("dataset: IDX images with 2^31-1 samples", _ => Upload("/api/datasets", IdxZip([int.MaxValue, 28, 28]), "huge-count.zip"));
        Add("dataset: IDX images whose dimensions overflow", _ => Upload("/api/datasets", IdxZip([65536, 65536, 65536]), "overflow.zip"));
        Add("dataset: IDX images with a negative dimension", _ => Upload("/api/datasets", IdxZip([-8, 28, 28]), "negative.zip"));
        Add("dataset: IDX with an unknown type code", _ => Upload("/api/datasets", IdxZip([8, 28, 28], type: 0x0F), "type.zip"));
        Add("dataset: NPZ object array", _ => Upload("/api/datasets", NpzWith("|O", [8, 28, 28], new byte[64]), "object.npz"));
        Add("dataset: NPZ shape larger than its data", _ => Upload("/api/datasets", NpzWith("|u1", [100000, 28, 28], new byte[8 * 784]), "short.npz"));
        Add("dataset: NPZ header that is not a dict", _ => Upload("/api/datasets", NpzRawHeader("not a python dict at all"), "header.npz"));
        Add("dataset: NPZ in Fortran order", _ => Upload("/api/datasets",
            NpzRawHeader("{'descr': '|u1', 'fortran_order': True, 'shape': (8, 28, 28), }", new byte[8 * 784]), "fortran.npz"));
        Add("dataset: NPZ without labels", _ => Upload("/api/datasets", TestData.Npz(CompressionLevel.Fastest,
            ("x_train", "|u1", [8, 28, 28], new byte[8 * 784]), ("x_test", "|u1", [4, 28, 28], new byte[4 * 784])), "nolabels.npz"));

        // Jobs: JSON of the wrong shape, types and magnitudes; ids that are not ours.
        Add("job: body that is not JSON", _ => Json("/api/jobs", "{"));
        Add("job: empty body", _ => Json("/api/jobs", ""));
        Add("job: JSON array", _ => Json("/api/jobs", "[]"));
        Add("job: JSON null", _ => Json("/api/jobs", "null"));
        Add("job: modelId a number", h => Json("/api/jobs", $"{{\"modelId\":123,\"datasetId\":\"{h.Dataset}\"}}"));
        Add("job: modelId not a GUID", h => Json("/api/jobs", $"{{\"modelId\":\"not-a-guid\",\"datasetId\":\"{h.Dataset}\"}}"));
        Add("job: iterations a string", h => JobJson(h, "\"settings\":{\"iterations\":\"many\"}"));
        Add("job: iterations 1e308", h => JobJson(h, "\"settings\":{\"iterations\":1e308}"));
        Add("job: iterations past int", h => JobJson(h, "\"settings\":{\"iterations\":99999999999}"));
        Add("job: learning rate NaN token", h => JobJson(h, "\"settings\":{\"learningRate\":NaN}"));
        Add("job: learning rate \"NaN\" string", h => JobJson(h, "\"settings\":{\"learningRate\":\"NaN\"}"));
        Add("job: negative batch size", h => JobJson(h, "\"settings\":{\"batchSize\":-1}"));
        Add("job: c_rate negative with empty pattern", h => JobJson(h, "\"settings\":{\"layers\":[{\"pattern\":\"\",\"cRate\":-5}]}"));
        Add("job: checkpoint interval 0", h => JobJson(h, "\"checkpointInterval\":0"));
        Add("job: unknown method and queue", h => JobJson(h, "\"method\":\"DNS2\",\"queue\":\"tpu\""));
        Add("job: settings a string", h => JobJson(h, "\"settings\":\"fast please\""));
        Add("job: JSON nested 5000 deep", h => JobJson(h, "\"settings\":" + new string('[', 5000) + new string(']', 5000)));
        Add("job: unknown fields next to a missing model", _ =>
            Json("/api/jobs", $"{{\"modelId\":\"{Guid.NewGuid()}\",\"datasetId\":\"{Guid.NewGuid()}\",\"bogus\":1,\"settings\":{{\"alsoBogus\":true}}}}"));
        Add("job: misspelled setting", h => JobJson(h, "\"settings\":{\"iteratons\":50}"));
        Add("job: preprocessing scale 1e300", h => JobJson(h, "\"preprocessing\":{\"scale\":1e300}"));
        Add("job: NUL in a layer pattern", h => JobJson(h, "\"settings\":{\"layers\":[{\"pattern\":\"fc\\u0000\",\"cRate\":1}]}"));
        // Budget mode (issue 13): a target and a cRate together, and each target field out of range.
        Add("job: target with a cRate", h => JobJson(h, "\"settings\":{\"cRate\":2},\"target\":{\"maxAccuracyDrop\":1}"));
        Add("job: target maxAccuracyDrop negative", h => JobJson(h, "\"target\":{\"maxAccuracyDrop\":-1}"));
        Add("job: target validation share 0.9", h => JobJson(h, "\"target\":{\"validation\":0.9}"));
        Add("job: target maxIterations 5", h => JobJson(h, "\"target\":{\"maxIterations\":5}"));
        Add("job: target minCompression 0.5", h => JobJson(h, "\"target\":{\"minCompression\":0.5}"));
        Add("job: target maxMinutes 1e300", h => JobJson(h, "\"target\":{\"maxMinutes\":1e300}"));
        // Issue 27: numbers out of every documented range, enums by number, duplicate members, invisible characters.
        Add("job: cRate 1e300", h => JobJson(h, "\"settings\":{\"cRate\":1e300}"));
        Add("job: cRate below -10", h => JobJson(h, "\"settings\":{\"cRate\":-11}"));
        Add("job: gamma 1.797e308", h => JobJson(h, "\"settings\":{\"cRate\":1,\"gamma\":1.797e308}"));
        Add("job: power 2^64", h => JobJson(h, "\"settings\":{\"cRate\":1,\"power\":18446744073709551616}"));
        Add("job: learning rate 1e300", h => JobJson(h, "\"settings\":{\"cRate\":1,\"learningRate\":1e300}"));
        Add("job: lrGamma -1e300", h => JobJson(h, "\"settings\":{\"cRate\":1,\"lrGamma\":-1e300}"));
        Add("job: lrPower 1e300", h => JobJson(h, "\"settings\":{\"cRate\":1,\"lrPower\":1e300}"));
        Add("job: weight decay 2^64", h => JobJson(h, "\"settings\":{\"cRate\":1,\"weightDecay\":18446744073709551616}"));
        Add("job: layer cRate, gamma and power 1e300", h =>
            JobJson(h, "\"settings\":{\"layers\":[{\"pattern\":\"fc*\",\"cRate\":1e300,\"gamma\":1e300,\"power\":1e300}]}"));
        Add("job: layer pattern with a right-to-left override", h =>
            JobJson(h, "\"settings\":{\"layers\":[{\"pattern\":\"fc\\u202E*\",\"cRate\":1}]}"));
        Add("model: name with a right-to-left override", _ => Upload("/api/models", onnx, "m.onnx", ("name", "mlp\u202Excod.onnx")));
        Add("model: name with a zero-width space", _ => Upload("/api/models", onnx, "m.onnx", ("name", "ml\u200Bp")));
        Add("dataset: name with a byte order mark", _ => Upload("/api/datasets", TestData.MnistNpz(8, 4), "d.npz", ("name", "mni\uFEFFst")));
        Add("cancel: Basic credentials instead of X-Api-Key", h =>
            WithBasic(new HttpRequestMessage(HttpMethod.Post, $"/api/jobs/{h.Job}/cancel")), key: null);
        Add("model: Basic credentials instead of X-Api-Key", _ =>
            WithBasic(Upload("/api/models", onnx, "planted.onnx")), key: null);
        Add("dashboard: a tenant's key when no tenant is listed for it", _ => Get("/hangfire"));
        Add("dashboard: a job's page when no tenant is listed for it", _ => Get("/hangfire/jobs/enqueued"));
        Add("job: settings method a number in a string", h => JobJson(h, "\"settings\":{\"method\":\"1\"}"));
        Add("job: lrPolicy a number", h => JobJson(h, "\"settings\":{\"lrPolicy\":2}"));
        Add("job: preprocessing layout a number", h => JobJson(h, "\"preprocessing\":{\"layout\":1}"));
        Add("jobs: state a number", _ => Get("/api/jobs?state=1"));
        Add("job: a setting given twice", h => JobJson(h, "\"settings\":{\"iterations\":50,\"iterations\":100000}"));
        Add("job: modelId given twice", h => JobJson(h, $"\"modelId\":\"{h.OtherModel}\""));
        // Issue 27, second part: impossible jobs, broken graphs, unbounded settings, deletes of jobs still running.
        Add("job: 3 preprocessing means for a 1-channel dataset", h => JobJson(h, "\"preprocessing\":{\"mean\":[0.4,0.5,0.6]}"));
        Add("job: 257 layer entries", h => JobJson(h, "\"settings\":{\"layers\":[" +
            string.Join(",", Enumerable.Repeat("{\"pattern\":\"fc*\",\"cRate\":1}", 257)) + "]}"));
        Add("job: a settings body over the JSON limit", h => JobJson(h, "\"settings\":{\"layers\":[" +
            string.Join(",", Enumerable.Repeat("{\"pattern\":\"fc*\",\"cRate\":1}", 5000)) + "]}"));
        foreach (var kind in new[] { "cycle", "self-loop", "missing weight", "two writers" })
        {
            Add($"model: ONNX graph with a {kind}", _ => Upload("/api/models", HardeningRoundTwoTests.BrokenGraph(kind), "broken.onnx"));
        }
        Add("model: ONNX input of 2^63-1 values per sample", _ => Upload("/api/models", OnnxWith(graph =>
            graph.Input[0].Type.TensorType.Shape.Dim[1].DimValue = long.MaxValue), "huge-input.onnx"));
        Add("dataset: samples with a zero dimension", _ => Upload("/api/datasets", TestData.Npz(CompressionLevel.Fastest,
            ("x_train", "<f4", [2, 1, 0, 28], []), ("y_train", "<i8", [2], new byte[16]),
            ("x_test", "<f4", [1, 1, 0, 28], []), ("y_test", "<i8", [1], new byte[8])), "empty.npz"));
        Add("job: delete one still queued", h => new HttpRequestMessage(HttpMethod.Delete, $"/api/jobs/{h.Job}"));
        Add("job: delete another tenant's job", h => new HttpRequestMessage(HttpMethod.Delete, $"/api/jobs/{h.OtherJob}"));
        Add("job: delete an unknown id", _ => new HttpRequestMessage(HttpMethod.Delete, $"/api/jobs/{Guid.NewGuid()}"));
        Add("job: another tenant's model", h => Json("/api/jobs", $"{{\"modelId\":\"{h.OtherModel}\",\"datasetId\":\"{h.Dataset}\"}}"));
        Add("job: another tenant's dataset", h => Json("/api/jobs", $"{{\"modelId\":\"{h.Model}\",\"datasetId\":\"{h.OtherDataset}\"}}"));

        // Sensitivity analyses: the same body checks as a job, and reads of jobs that have no curves.
        Add("sensitivity job: body that is not JSON", _ => Json("/api/jobs/sensitivity", "{"));
        Add("sensitivity job: JSON null", _ => Json("/api/jobs/sensitivity", "null"));
        Add("sensitivity job: validation NaN token", h =>
            Json("/api/jobs/sensitivity", $"{{\"modelId\":\"{h.Model}\",\"datasetId\":\"{h.Dataset}\",\"validation\":NaN}}"));
        Add("sensitivity job: validation a string", h =>
            Json("/api/jobs/sensitivity", $"{{\"modelId\":\"{h.Model}\",\"datasetId\":\"{h.Dataset}\",\"validation\":\"half\"}}"));
        Add("sensitivity job: validation 1e308", h =>
            Json("/api/jobs/sensitivity", $"{{\"modelId\":\"{h.Model}\",\"datasetId\":\"{h.Dataset}\",\"validation\":1e308}}"));
        Add("sensitivity job: another tenant's model", h =>
            Json("/api/jobs/sensitivity", $"{{\"modelId\":\"{h.OtherModel}\",\"datasetId\":\"{h.Dataset}\"}}"));
        Add("sensitivity: a fixed-threshold job has none", h => Get($"/api/jobs/{h.Job}/sensitivity"));
        Add("sensitivity: another tenant's job", h => Get($"/api/jobs/{h.OtherJob}/sensitivity"));
        Add("sensitivity.svg: unknown id", _ => Get($"/api/jobs/{Guid.NewGuid()}/sensitivity.svg"));

        // Reads and actions: bad GUIDs, bad paging and query values, other tenants' ids, wrong states.
        Add("jobs: page 0", _ => Get("/api/jobs?page=0"));
        Add("jobs: page -1", _ => Get("/api/jobs?page=-1"));
        Add("jobs: page not a number", _ => Get("/api/jobs?page=abc"));
        Add("jobs: page past int", _ => Get("/api/jobs?page=99999999999"));
        Add("jobs: page size 100000", _ => Get("/api/jobs?pageSize=100000"));
        Add("jobs: page 2147483647 (offset overflow)", _ => Get("/api/jobs?page=2147483647"));
        Add("jobs: unknown state", _ => Get("/api/jobs?state=Exploded"));
        Add("jobs: state 10 KB long", _ => Get("/api/jobs?state=" + new string('x', 10_000)));
        Add("job: id not a GUID", _ => Get("/api/jobs/not-a-guid"));
        Add("job: unknown id", _ => Get($"/api/jobs/{Guid.NewGuid()}"));
        Add("job: another tenant's job", h => Get($"/api/jobs/{h.OtherJob}"));
        Add("metrics: stride 0", h => Get($"/api/jobs/{h.Job}/metrics?stride=0"));
        Add("metrics: limit 0", h => Get($"/api/jobs/{h.Job}/metrics?limit=0"));
        Add("metrics: from -5", h => Get($"/api/jobs/{h.Job}/metrics?from=-5"));
        Add("metrics: to before from", h => Get($"/api/jobs/{h.Job}/metrics?from=10&to=5"));
        Add("metrics: format xml", h => Get($"/api/jobs/{h.Job}/metrics?format=xml"));
        Add("metrics: from not a number", h => Get($"/api/jobs/{h.Job}/metrics?from=abc"));
        Add("metrics: another tenant's job", h => Get($"/api/jobs/{h.OtherJob}/metrics"));
        Add("events: another tenant's job", h => Get($"/api/jobs/{h.OtherJob}/events"));
        Add("events: unknown id", _ => Get($"/api/jobs/{Guid.NewGuid()}/events"));
        Add("result: unknown format", h => Get($"/api/jobs/{h.Job}/result?format=exe"));
        Add("result: job not finished", h => Get($"/api/jobs/{h.Job}/result"));
        Add("result: another tenant's job", h => Get($"/api/jobs/{h.OtherJob}/result"));
        Add("report: job not finished", h => Get($"/api/jobs/{h.Job}/report"));
        Add("log: another tenant's job", h => Get($"/api/jobs/{h.OtherJob}/log"));
        Add("log: unknown id", _ => Get($"/api/jobs/{Guid.NewGuid()}/log"));
        Add("report.svg: another tenant's job", h => Get($"/api/jobs/{h.OtherJob}/report.svg"));
        Add("cancel: another tenant's job", h => new HttpRequestMessage(HttpMethod.Post, $"/api/jobs/{h.OtherJob}/cancel"));
        Add("cancel: unknown id", _ => new HttpRequestMessage(HttpMethod.Post, $"/api/jobs/{Guid.NewGuid()}/cancel"));
        Add("model: another tenant's model", h => Get($"/api/models/{h.OtherModel}"));
        Add("model: delete another tenant's model", h => new HttpRequestMessage(HttpMethod.Delete, $"/api/models/{h.OtherModel}"));
        Add("model: delete one a queued job uses", h => new HttpRequestMessage(HttpMethod.Delete, $"/api/models/{h.Model}"));
        Add("dataset: id not a GUID", _ => Get("/api/datasets/0x1234"));
        Add("dataset: another tenant's dataset", h => Get($"/api/datasets/{h.OtherDataset}"));
        Add("dataset: delete another tenant's dataset", h => new HttpRequestMessage(HttpMethod.Delete, $"/api/datasets/{h.OtherDataset}"));
        return cases;
    }

    private static byte[] OnnxWith(Action<SurgeryService.Domain.Onnx.Proto.GraphProto> change)
    {
        var model = SurgeryService.Domain.Onnx.Proto.ModelProto.Parser.ParseFrom(OnnxMlp.Create(hidden: 8));
        change(model.Graph);
        return Google.Protobuf.MessageExtensions.ToByteArray(model);
    }

    private static byte[] Random(int length, int seed)
    {
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    /// <summary>The zip with every entry's compressed and uncompressed sizes replaced, in its local and central headers.</summary>
    private static byte[] LieAboutSizes(byte[] zip, int size)
    {
        var bytes = (byte[])zip.Clone();
        for (var at = 0; at + 4 <= bytes.Length; at++)
        {
            var signature = BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(at));
            if (signature == 0x04034b50 && at + 26 <= bytes.Length) // local file header: sizes at 18 and 22
            {
                BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(at + 18), size);
                BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(at + 22), size);
            }
            else if (signature == 0x02014b50 && at + 28 <= bytes.Length) // central directory header: sizes at 20 and 24
            {
                BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(at + 20), size);
                BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(at + 24), size);
            }
        }
        return bytes;
    }

    /// <summary>A zip of MNIST's four IDX names whose training images claim <paramref name="dims"/> over a few real bytes.</summary>
    private static byte[] IdxZip(int[] dims, byte type = 0x08)
    {
        using var memory = new MemoryStream();
        using (var zip = new ZipArchive(memory, ZipArchiveMode.Create, leaveOpen: true))
        {
            void Entry(string name, byte code, int[] shape, int dataBytes)
            {
                using var stream = zip.CreateEntry(name).Open();
                stream.Write([0, 0, code, (byte)shape.Length]);
                foreach (var d in shape)
                {
                    var be = new byte[4];
                    BinaryPrimitives.WriteInt32BigEndian(be, d);
                    stream.Write(be);
                }
                stream.Write(new byte[dataBytes]);
            }
            Entry("train-images-idx3-ubyte", type, dims, 8 * 784);
            Entry("train-labels-idx1-ubyte", 0x08, [8], 8);
            Entry("t10k-images-idx3-ubyte", 0x08, [4, 28, 28], 4 * 784);
            Entry("t10k-labels-idx1-ubyte", 0x08, [4], 4);
        }
        return memory.ToArray();
    }

    private static byte[] NpzWith(string dtype, int[] shape, byte[] data) => TestData.Npz(CompressionLevel.Fastest,
        ("x_train", dtype, shape, data), ("y_train", "<i8", [8], new byte[64]),
        ("x_test", "|u1", [4, 28, 28], new byte[4 * 784]), ("y_test", "<i8", [4], new byte[32]));

    /// <summary>An NPZ whose x_train carries <paramref name="header"/> verbatim; the other arrays are well formed.</summary>
    private static byte[] NpzRawHeader(string header, byte[]? data = null)
    {
        using var memory = new MemoryStream();
        using (var zip = new ZipArchive(memory, ZipArchiveMode.Create, leaveOpen: true))
        {
            var padded = header.PadRight(header.Length + (64 - (10 + header.Length + 1) % 64) % 64) + "\n";
            using (var stream = zip.CreateEntry("x_train.npy").Open())
            {
                stream.Write([0x93, .. "NUMPY"u8, 1, 0]);
                stream.Write(BitConverter.GetBytes((ushort)padded.Length));
                stream.Write(Encoding.ASCII.GetBytes(padded));
                stream.Write(data ?? new byte[8 * 784]);
            }
        }
        var rest = TestData.Npz(CompressionLevel.Fastest, ("y_train", "<i8", [8], new byte[64]),
            ("x_test", "|u1", [4, 28, 28], new byte[4 * 784]), ("y_test", "<i8", [4], new byte[32]));
        using var merged = new MemoryStream();
        using (var zip = new ZipArchive(merged, ZipArchiveMode.Create, leaveOpen: true))
        {
            foreach (var source in new[] { memory.ToArray(), rest })
            {
                using var read = new ZipArchive(new MemoryStream(source), ZipArchiveMode.Read);
                foreach (var entry in read.Entries)
                {
                    using var from = entry.Open();
                    using var to = zip.CreateEntry(entry.FullName).Open();
                    from.CopyTo(to);
                }
            }
        }
        return merged.ToArray();
    }
}
