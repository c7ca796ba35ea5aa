using System.Net;
using System.Text.Json;
using SurgeryService.Api.Tests.Infrastructure;
using SurgeryService.Api.Tests.Jobs;

namespace SurgeryService.Api.Tests.Faults;

public sealed class FaultHost() : ServiceHost("faults", withWorker: true);

/// <summary>
/// Faults an operator meets, against the real processes: PostgreSQL restarted under a running job, the Api killed in
/// the middle of an upload, a job whose inputs fail late in the worker, an upload far over the limit.
/// </summary>
public sealed class FaultTests(FaultHost host, Xunit.Abstractions.ITestOutputHelper output) : IClassFixture<FaultHost>
{
    private const long MB = 1_000_000;

    [Fact]
    public async Task AJobOutlivesAPostgresRestartWithEveryMetricIterationOnceAndNo500sAfterReconnecting()
    {
        await using var postgres = await PrivatePostgres.StartAsync("restart");
        using var api = await ApiProcess.StartAsync(postgres.ConnectionString);
        using var worker = WorkerProcess.Start(postgres.ConnectionString, ServiceHost.WorkerSettings);
        using var client = api.Client();
        var (model, dataset) = await JobScenario.UploadAsync(client);
        const int iterations = 1500;
        var job = await JobScenario.SubmitAsync(client, JobScenario.Request(model, dataset, iterations, checkpointInterval: 100, evalInterval: 500));
        await JobScenario.WaitForAsync(client, job, j => j.GetProperty("iteration").GetInt32() >= 200, TimeSpan.FromSeconds(120), () => worker.Output);

        await postgres.RestartAsync();

        // Every answer after the Api's first good one must be good too: status, metrics and the job list alike.
        var reconnected = false;
        var badAfterReconnect = new List<string>();
        JsonElement last = default;
        var finished = await Eventually.TrueAsync(async () =>
        {
            foreach (var path in new[] { $"/api/jobs/{job}/metrics?from=0&limit=10", "/api/jobs?page=1&pageSize=5", $"/api/jobs/{job}" })
            {
                try
                {
                    using var response = await client.GetAsync(path);
                    var body = await response.Content.ReadAsStringAsync();
                    if (response.IsSuccessStatusCode) reconnected = true;
                    else if (reconnected) badAfterReconnect.Add($"{(int)response.StatusCode} {path}: {body}");
                    if (response.IsSuccessStatusCode && path == $"/api/jobs/{job}") last = JsonDocument.Parse(body).RootElement.Clone();
                }
                catch (HttpRequestException e) when (!reconnected)
                {
                    output.WriteLine($"before reconnecting: {e.Message}");
                }
            }
            return last.ValueKind == JsonValueKind.Object && JobScenario.IsFinished(last);
        }, TimeSpan.FromMinutes(4), TimeSpan.FromMilliseconds(200));

        Assert.True(finished, $"the job did not finish after the restart; last: {last}\nworker:\n{worker.Output}");
        Assert.Empty(badAfterReconnect);
        Assert.Equal("Succeeded", last.GetProperty("state").GetString());
        output.WriteLine($"attempts {last.GetProperty("attempts")}, resumed from {last.GetProperty("resumedFromIteration")}");
        var metrics = await client.GetAsync($"/api/jobs/{job}/metrics?limit=100000").ExpectAsync(HttpStatusCode.OK);
        var seen = metrics.GetProperty("points").EnumerateArray().Select(p => p.GetProperty("iteration").GetInt32()).ToList();
        Assert.Equal(Enumerable.Range(0, iterations), seen);
    }

    [Fact]
    public async Task WhileTheDatabaseIsDownTheApiAnswers503WithRetryAfterNot500AndServesAgainOnceItIsBack()
    {
        await using var postgres = await PrivatePostgres.StartAsync("outage");
        using var api = await ApiProcess.StartAsync(postgres.ConnectionString);
        using var client = api.Client();
        var (model, _) = await JobScenario.UploadAsync(client); // the connection pool is warm: its connections are cut below

        await postgres.StopAsync();
        foreach (var path in new[] { "/api/jobs", $"/api/models/{model}", "/api/datasets", "/api/jobs" })
        {
            using var response = await client.GetAsync(path);
            var body = await response.Content.ReadAsStringAsync();
            Assert.True(response.StatusCode == HttpStatusCode.ServiceUnavailable, $"{(int)response.StatusCode} {path}: {body}");
            Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
            Assert.Contains("Database unavailable", body);
            Assert.DoesNotContain("   at ", body);
            Assert.Equal(TimeSpan.FromSeconds(5), response.Headers.RetryAfter?.Delta);
        }

        await postgres.StartAgainAsync();
        Assert.True(await Eventually.TrueAsync(async () => (await client.GetAsync($"/api/models/{model}")).IsSuccessStatusCode,
            TimeSpan.FromSeconds(30), TimeSpan.FromMilliseconds(200)));
        var swagger = await client.GetAsync("/swagger/v1/swagger.json").ExpectAsync(HttpStatusCode.OK);
        Assert.Contains("Retry-After", swagger.GetProperty("paths").GetProperty("/api/jobs").GetProperty("get")
            .GetProperty("responses").GetProperty("503").GetProperty("description").GetString());
    }

    [Fact]
    public async Task AnApiKilledInTheMiddleOfALargeUploadLeavesNoArtifactOrModelBehind()
    {
        await using var db = await TestDatabase.CreateAsync("killupload");
        using var api = await ApiProcess.StartAsync(db.ConnectionString);
        using var client = api.Client();
        // 300 MB announced, of which 40 MB arrive; then the stream waits, so the Api is certainly mid-upload when it dies.
        using var body = new GeneratedStream(300 * MB, seekable: true, pauseAt: 40 * MB);
        var upload = client.PostAsync("/api/models", Form(body, "big.onnx"));
        var writing = await Eventually.TrueAsync(async () =>
            body.Position >= 40 * MB && await db.ScalarAsync<long>(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND backend_xid IS NOT NULL") > 0,
            TimeSpan.FromSeconds(90));
        Assert.True(writing, $"the upload never reached the database (sent {body.Position} bytes); Api output:\n{api.Output}");

        api.Kill();
        body.Resume();
        await Assert.ThrowsAnyAsync<Exception>(() => upload);

        using var restarted = await ApiProcess.StartAsync(db.ConnectionString);
        using var after = restarted.Client();
        var models = await after.GetAsync("/api/models").ExpectAsync(HttpStatusCode.OK);
        Assert.Empty(Items(models));
        Assert.Equal(0, await db.ScalarAsync<long>("SELECT count(*) FROM models"));
        Assert.Equal(0, await db.ScalarAsync<long>("SELECT count(*) FROM artifacts"));
        Assert.Equal(0, await db.ScalarAsync<long>("SELECT count(*) FROM artifact_chunks"));
    }

    [Theory]
    [InlineData(true)] // Content-Length announces 500 MB
    [InlineData(false)] // chunked: the Api learns the size only by reading
    public async Task AnUploadFarOverTheLimitIs413WithoutTheApiReadingOrHoldingTheBody(bool announced)
    {
        await using var db = await TestDatabase.CreateAsync("limit");
        using var api = await ApiProcess.StartAsync(db.ConnectionString, new Dictionary<string, string> { ["Api__MaxUploadBytes"] = (20 * MB).ToString() });
        using (var client = api.Client())
        {
            await client.PostAsync("/api/models", Form(new GeneratedStream(MB, seekable: true), "warm-up.onnx")); // JIT, pools
        }
        var baseline = api.Figures().RssBytes;
        var peak = baseline;
        using var sampling = new CancellationTokenSource();
        var sampler = Task.Run(async () =>
        {
            while (!sampling.IsCancellationRequested)
            {
                peak = Math.Max(peak, api.Figures().RssBytes);
                await Task.Delay(20);
            }
        });

        // A plain socket: HttpClient stops at the broken pipe when the server answers before the body is sent, as it should.
        var (status, problem, sent) = await RawUpload.PostAsync(api.Address, "/api/models", ServiceHost.AcmeKey, 500 * MB, announced);
        await sampling.CancelAsync();
        await sampler;

        output.WriteLine($"sent {sent / MB} MB; Api RSS {baseline / MB} MB before, {peak / MB} MB at most; {status}: {problem}");
        Assert.Equal(413, status);
        Assert.Contains("20000000", problem);
        Assert.DoesNotContain("   at ", problem);
        Assert.True(sent < 250 * MB, $"the client sent {sent} bytes before the answer");
        Assert.True(peak - baseline < 100 * MB, $"the Api grew from {baseline} to {peak} bytes while refusing the body");
        Assert.Equal(0, await db.ScalarAsync<long>("SELECT count(*) FROM artifact_chunks"));
        using var after = api.Client();
        Assert.Equal(HttpStatusCode.OK, (await after.GetAsync("/health/ready")).StatusCode);
    }

    [Fact]
    public async Task AJobWhoseDatasetFailsLateInTheWorkerEndsFailedWithTheCauseAndHangfireDoesNotRetryIt()
    {
        var client = host.Client();
        // An ONNX model whose output does not declare its size (10): the Api cannot know how many classes it scores.
        var onnx = SurgeryService.Domain.Onnx.Proto.ModelProto.Parser.ParseFrom(OnnxMlp.Create(hidden: 16));
        onnx.Graph.Output[0].Type.TensorType.Shape = null;
        var model = await client.PostAsync("/api/models", HttpExtensions.Form(Google.Protobuf.MessageExtensions.ToByteArray(onnx), "mlp.onnx"))
            .ExpectAsync(HttpStatusCode.Created);
        Assert.Equal(JsonValueKind.Null, model.GetProperty("classCount").ValueKind);
        // Labels up to 12 for a model with 10 outputs: the shapes fit, so the job is accepted; the loss fails in the worker.
        var (x, y, xTest, yTest) = TestData.MnistSubset(64, 16);
        var shifted = y.Select(l => (byte)(l + 3)).ToArray();
        var npz = TestData.Npz(System.IO.Compression.CompressionLevel.Fastest,
            ("x_train", "|u1", [64, 28, 28], x), ("y_train", "<i8", [64], TestData.Int64(shifted)),
            ("x_test", "|u1", [16, 28, 28], xTest), ("y_test", "<i8", [16], TestData.Int64(yTest)));
        var dataset = await client.PostAsync("/api/datasets", HttpExtensions.Form(npz, "thirteen-classes.npz")).ExpectAsync(HttpStatusCode.Created);
        var job = await JobScenario.SubmitAsync(client, new
        {
            modelId = model.GetProperty("id").GetGuid(),
            datasetId = dataset.GetProperty("id").GetGuid(),
            settings = new { iterations = 50, batchSize = 16, evalInterval = 25 },
        });

        var failed = await JobScenario.WaitForAsync(client, job, JobScenario.IsFinished, TimeSpan.FromMinutes(3), () => host.Worker!.Output);
        // Past Hangfire's first retry delay (10 s): a retried job would have left a Failed or Scheduled state by now.
        await Task.Delay(TimeSpan.FromSeconds(12));

        Assert.Equal("Failed", failed.GetProperty("state").GetString());
        output.WriteLine(failed.GetProperty("error").GetString());
        Assert.Contains("out of bounds", failed.GetProperty("error").GetString());
        Assert.Equal(1, (await JobScenario.GetJobAsync(client, job)).GetProperty("attempts").GetInt32());
        var hangfireId = await host.Db.ScalarAsync<string>($"SELECT \"HangfireJobId\" FROM jobs WHERE \"Id\" = '{job}'");
        var states = await host.Db.ScalarAsync<string>(
            $"SELECT string_agg(name, ',' ORDER BY id) FROM hangfire.state WHERE jobid = {long.Parse(hangfireId!)}");
        Assert.Equal("Enqueued,Processing,Succeeded", states);
    }

    private static MultipartFormDataContent Form(Stream body, string fileName)
    {
        var content = new StreamContent(body, 1 << 20);
        content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/octet-stream");
        return new MultipartFormDataContent { { content, "file", fileName } };
    }

    private static IEnumerable<JsonElement> Items(JsonElement list) =>
        list.ValueKind == JsonValueKind.Array ? list.EnumerateArray() : list.GetProperty("items").EnumerateArray();

    /// <summary>
    /// Bytes made as they are read (never held): a body of any size at no memory cost. Seekable (so it has a length and
    /// the request a Content-Length) or not (chunked); optionally pausing at a byte until <see cref="Resume"/>.
    /// </summary>
    private sealed class GeneratedStream(long length, bool seekable, long pauseAt = long.MaxValue) : Stream
    {
        private readonly TaskCompletionSource _resume = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private long _position;

        public override bool CanRead => true;
        public override bool CanSeek => seekable;
        public override bool CanWrite => false;
        public override long Length => seekable ? length : throw new NotSupportedException();

        public override long Position
        {
            get => Interlocked.Read(ref _position);
            set => throw new NotSupportedException();
        }

        public void Resume() => _resume.TrySetResult();

        public override int Read(byte[] buffer, int offset, int count) => ReadAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            if (Position >= pauseAt) await _resume.Task.WaitAsync(cancellationToken);
            var limit = Position < pauseAt ? pauseAt : length;
            var count = (int)Math.Min(buffer.Length, Math.Min(limit, length) - Position);
            if (count <= 0) return 0;
            buffer.Span[..count].Fill(0x5A);
            Interlocked.Add(ref _position, count);
            return count;
        }

        public override long Seek(long offset, SeekOrigin origin) =>
            offset == 0 && origin == SeekOrigin.Begin && Position == 0 ? 0 : throw new NotSupportedException();

        public override void Flush() { }
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
