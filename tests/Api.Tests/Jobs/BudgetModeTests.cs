using System.Net;
using System.Text.Json;
using SurgeryService.Api.Tests.Infrastructure;
using SurgeryService.Domain.Datasets;
using SurgeryService.Domain.Onnx;
using SurgeryService.Domain.Surgery;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace SurgeryService.Api.Tests.Jobs;

public sealed class BudgetModeHost() : ServiceHost("budget", withWorker: false);

/// <summary>
/// Budget mode through HTTP with real Worker processes, PostgreSQL and ONNX Runtime: a trained ONNX MLP sent with no
/// cRate gets the most compression the search finds within its budget, and never a broken model.
/// </summary>
public sealed class BudgetModeTests(BudgetModeHost host, ITestOutputHelper output) : IClassFixture<BudgetModeHost>
{
    private const int Train = 2000;
    private const int Test = 500;
    private static readonly Lazy<byte[]> TrainedMlp = new(TrainMlp);

    /// <summary>The test suite's ONNX MLP (784-32-10), trained dense on MNIST's first images, as a user would upload it.</summary>
    private static byte[] TrainMlp()
    {
        var (trainImages, trainLabels, testImages, testLabels) = TestData.MnistSubset(Train, Test);
        using var scope = NewDisposeScope();
        using var train = new TensorDataset(tensor(trainImages).to(float32).div(255).reshape(Train, 784),
            tensor(trainLabels).to(int64), 10);
        using var test = new TensorDataset(tensor(testImages).to(float32).div(255).reshape(Test, 784), tensor(testLabels).to(int64), 10);
        var model = OnnxModel.Load(OnnxMlp.Create(hidden: 32));
        using var module = OnnxModule.Create(model, outputLogits: true);
        var settings = new SurgerySettings { Iterations = 600, LearningRate = 0.05, LrPolicy = LearningRatePolicy.Fixed, EvalInterval = 600, Seed = 1 };
        using var trainer = new SurgeryTrainer(module, [], settings);
        var outcome = trainer.Run(train, test, new NoObserver());
        return OnnxWriter.Export(module, settings, outcome).Dense;
    }

    internal static async Task<(Guid Model, Guid Dataset)> UploadAsync(HttpClient client)
    {
        var model = await client.PostAsync("/api/models", HttpExtensions.Form(TrainedMlp.Value, "mlp-trained.onnx"))
            .ExpectAsync(HttpStatusCode.Created);
        var dataset = await client.PostAsync("/api/datasets", HttpExtensions.Form(TestData.MnistNpz(Train, Test), "mnist-2000.npz"))
            .ExpectAsync(HttpStatusCode.Created);
        return (model.GetProperty("id").GetGuid(), dataset.GetProperty("id").GetGuid());
    }

    internal static object BudgetRequest(Guid model, Guid dataset, int iterations, int checkpointInterval, object? target) => new
    {
        modelId = model,
        datasetId = dataset,
        checkpointInterval,
        target,
        settings = new { iterations, batchSize = 32, evalInterval = 50, learningRate = 0.02, lrPolicy = "fixed", seed = 3 },
    };

    [Fact]
    public async Task AJobThatNamesNoCRateFindsTheMostCompressionWithinItsBudgetAndItsOnnxRunsInOnnxRuntime()
    {
        var client = host.Client();
        var (model, dataset) = await UploadAsync(client);
        const int iterations = 700;
        var job = await JobScenario.SubmitAsync(client,
            BudgetRequest(model, dataset, iterations, checkpointInterval: 100, new { maxAccuracyDrop = 1.0, validation = 0.2 }));
        var queued = await JobScenario.GetJobAsync(client, job);
        Assert.Equal("budget", queued.GetProperty("mode").GetString());
        Assert.Equal(1.0, queued.GetProperty("target").GetProperty("maxAccuracyDrop").GetDouble());

        host.Worker ??= host.StartWorker();
        var seen = await JobScenario.WatchAsync(client, job, JobScenario.IsFinished, TimeSpan.FromSeconds(240), () => host.Worker.Output);
        var done = seen[^1];
        output.WriteLine(done.ToString());
        Assert.Equal("Succeeded", done.GetProperty("state").GetString());
        Assert.True(done.GetProperty("budgetMet").GetBoolean());

        var report = await client.GetAsync($"/api/jobs/{job}/report").ExpectAsync(HttpStatusCode.OK);
        var budget = report.GetProperty("budget");
        var before = budget.GetProperty("validationTop1Before").GetDouble();
        var after = budget.GetProperty("validationTop1After").GetDouble();
        // The test MLP was trained on every training sample, so it has memorised the held-out ones (100% there against
        // about 88% on test): the search validates on half of the test split, samples it has never seen, and the job's
        // test figures cover the other half, which never steered it.
        Assert.True(budget.GetProperty("validatesOnTest").GetBoolean());
        Assert.Equal(Test / 2, budget.GetProperty("validationSamples").GetInt32());
        Assert.Equal("testHalf", done.GetProperty("validation").GetProperty("split").GetString());
        Assert.Equal(Test / 2, done.GetProperty("validation").GetProperty("samples").GetInt32());
        Assert.Equal("otherHalf", done.GetProperty("test").GetProperty("split").GetString());
        Assert.Equal(Test - Test / 2, done.GetProperty("test").GetProperty("samples").GetInt32());
        Assert.Equal("otherHalf", report.GetProperty("accuracy").GetProperty("split").GetString());
        Assert.Equal(before, done.GetProperty("validation").GetProperty("top1Before").GetDouble());
        Assert.Equal(after, done.GetProperty("validation").GetProperty("top1After").GetDouble());
        Assert.Contains(report.GetProperty("log").EnumerateArray(), e => e.GetProperty("message").GetString()!.Contains("it was trained on the held-out ones"));
        Assert.True(after >= before - 0.01, $"validation top-1 {after} outside the budget from {before}");
        var stages = budget.GetProperty("stages").EnumerateArray().ToList();
        Assert.NotEmpty(stages);
        Assert.All(stages.Where(s => s.GetProperty("accepted").GetBoolean()),
            s => Assert.True(s.GetProperty("validationTop1").GetDouble() >= before - 0.01));
        Assert.All(stages, s => Assert.All(s.GetProperty("layers").EnumerateArray(), l => Assert.True(l.TryGetProperty("cRate", out _))));
        Assert.Equal(2, budget.GetProperty("sensitivity").GetArrayLength());
        var compression = report.GetProperty("totals").GetProperty("compression").GetDouble();
        Assert.True(compression > 2, $"compression {compression}");
        Assert.Equal("budget", report.GetProperty("mode").GetString());
        var log = report.GetProperty("log").EnumerateArray().Select(e => e.GetProperty("message").GetString()!).ToList();
        Assert.Contains(log, m => m.StartsWith("stage 1: aiming at", StringComparison.Ordinal));
        Assert.Contains(log, m => m.StartsWith("delivered", StringComparison.Ordinal));

        // One continuous series over every stage and the fine-tune.
        var metrics = await client.GetAsync($"/api/jobs/{job}/metrics?limit=100000").ExpectAsync(HttpStatusCode.OK);
        Assert.Equal(Enumerable.Range(0, iterations),
            metrics.GetProperty("points").EnumerateArray().Select(p => p.GetProperty("iteration").GetInt32()));

        // The delivered ONNX model scores in ONNX Runtime, on the test samples that did not validate, what the job says.
        var onnx = await (await client.GetAsync($"/api/jobs/{job}/result?format=onnx")).Content.ReadAsByteArrayAsync();
        var (_, _, testImages, testLabels) = TestData.MnistSubset(Train, Test);
        var hits = JobScenario.OnnxRuntimeHits(onnx, testImages, testLabels, Test);
        var otherHalf = OtherHalfOfTest(Test);
        var independent = otherHalf.Count(i => hits[i]) / (double)otherHalf.Length;
        var testTop1 = done.GetProperty("test").GetProperty("top1After").GetDouble();
        output.WriteLine($"ONNX Runtime top-1 on the other half {independent:P2}, job {testTop1:P2}, {compression}x");
        Assert.Equal(testTop1, independent, 0.005);
        Assert.Equal(testTop1, done.GetProperty("test").GetProperty("top1").GetDouble());
        Assert.Equal(compression, done.GetProperty("compression").GetDouble(), 0.01);

        // One meaning per field before and after the end: the starting model's validation figure never turns into a
        // test figure, and the compression shown while running is always a deliverable (the start's 1x, the accepted
        // one-shot candidate, or a stage the search accepted), never a running stage it may still reject.
        var running = seen.Where(j => j.GetProperty("state").GetString() == "Running").ToList();
        Assert.NotEmpty(running);
        Assert.All(running.Select(j => j.GetProperty("validation").GetProperty("top1Before")).Where(v => v.ValueKind == JsonValueKind.Number),
            v => Assert.Equal(before, v.GetDouble()));
        var oneShot = budget.TryGetProperty("oneShot", out var o) && o.ValueKind == JsonValueKind.Object && o.GetProperty("accepted").GetBoolean()
            ? [o.GetProperty("compression").GetDouble()]
            : Array.Empty<double>();
        var deliverable = stages.Where(s => s.GetProperty("accepted").GetBoolean()).Select(s => s.GetProperty("compression").GetDouble())
            .Concat(oneShot).Append(1.0).ToList();
        Assert.All(running.Select(j => j.GetProperty("compression")).Where(c => c.ValueKind == JsonValueKind.Number),
            c => Assert.Contains(deliverable, d => Math.Abs(d - c.GetDouble()) < 1e-6));
        Assert.All(running.Where(j => j.GetProperty("test").ValueKind == JsonValueKind.Object),
            j => Assert.Equal("otherHalf", j.GetProperty("test").GetProperty("split").GetString()));
        Assert.Equal(JsonValueKind.Null, done.GetProperty("phase").ValueKind);
        Assert.Equal(JsonValueKind.Null, done.GetProperty("etaSeconds").ValueKind);
        var delivered = OnnxModel.Load(onnx);
        using var deliveredModule = OnnxModule.Create(delivered);
        var nonzero = delivered.Layers.Where(l => l.Prunable)
            .SelectMany(l => new[] { l.WeightInitializer, l.BiasInitializer }.OfType<string>())
            .Sum(name => deliveredModule.ParameterOf(name).count_nonzero().item<long>());
        Assert.Equal(report.GetProperty("totals").GetProperty("after").GetInt64(), nonzero);
    }

    [Fact]
    public async Task TheTargetBlocksErrorsNameEachField()
    {
        var client = host.Client();
        var (model, dataset) = await UploadAsync(client);
        var problem = await client.PostJsonAsync("/api/jobs", BudgetRequest(model, dataset, 100, 50,
            new { maxAccuracyDrop = -1, minCompression = 0.5, maxIterations = 5, validation = 0.9 })).ExpectAsync(HttpStatusCode.UnprocessableEntity);
        var errors = problem.GetProperty("errors");
        foreach (var field in new[] { "target.maxAccuracyDrop", "target.minCompression", "target.maxIterations", "target.validation" })
        {
            Assert.True(errors.TryGetProperty(field, out _), $"{field} missing from {errors}");
        }

        var conflict = await client.PostJsonAsync("/api/jobs", new
        {
            modelId = model,
            datasetId = dataset,
            target = new { maxAccuracyDrop = 1 },
            settings = new { cRate = 2 },
        }).ExpectAsync(HttpStatusCode.UnprocessableEntity);
        Assert.Contains("cRate", conflict.GetProperty("errors").GetProperty("target")[0].GetString());
    }

    [Fact]
    public async Task ATimeBudgetOutsideItsRangeIsRefusedAndAValidOneIsTheExpectedDuration()
    {
        var client = host.Client();
        var (model, dataset) = await UploadAsync(client);
        foreach (var minutes in new[] { 0.5, 10_081 })
        {
            var problem = await client.PostJsonAsync("/api/jobs", BudgetRequest(model, dataset, 100, 50, new { maxMinutes = minutes }))
                .ExpectAsync(HttpStatusCode.UnprocessableEntity);
            Assert.Contains("between 1 and 10080", problem.GetProperty("errors").GetProperty("target.maxMinutes")[0].GetString());
        }

        // A new model has no finished job to go by: the time budget is the expected duration.
        var accepted = await client.PostJsonAsync("/api/jobs", BudgetRequest(model, dataset, 100_000, 500, new { maxMinutes = 5 }))
            .ExpectAsync(HttpStatusCode.Accepted);
        var job = accepted.GetProperty("id").GetGuid();
        await client.PostAsync($"/api/jobs/{job}/cancel", null); // a worker started by another test would train it for 5 minutes
        Assert.Equal(300, accepted.GetProperty("expectedSeconds").GetDouble());
        Assert.Contains("target.maxMinutes 5", accepted.GetProperty("expectedBasis").GetString());
        var shown = await JobScenario.GetJobAsync(client, job);
        Assert.Equal(5, shown.GetProperty("target").GetProperty("maxMinutes").GetDouble());
        Assert.Equal(300, shown.GetProperty("expectedSeconds").GetDouble());
    }

    [Fact]
    public async Task ATrainingThatDivergesOnUnscaledInputsFailsWithTheCauseAndTheFix()
    {
        var client = host.Client();
        var (model, dataset) = await UploadAsync(client);
        var job = await JobScenario.SubmitAsync(client, new
        {
            modelId = model,
            datasetId = dataset,
            settings = new { iterations = 400, batchSize = 32, evalInterval = 50, learningRate = 10000.0, lrPolicy = "fixed", cRate = 1.0 },
            preprocessing = new { scale = 1.0 },
        });
        host.Worker ??= host.StartWorker();
        var done = await JobScenario.WaitForAsync(client, job, JobScenario.IsFinished, TimeSpan.FromSeconds(120), () => host.Worker.Output);

        output.WriteLine(done.GetProperty("error").GetString());
        Assert.Equal("Failed", done.GetProperty("state").GetString());
        var error = done.GetProperty("error").GetString()!;
        Assert.Contains("learningRate", error);
        Assert.Contains("preprocessing.scale", error);
        var log = await client.GetAsync($"/api/jobs/{job}/log").ExpectAsync(HttpStatusCode.OK);
        Assert.Contains(log.EnumerateArray(), e => e.GetProperty("kind").GetString() == "Rollback");
    }

    /// <summary>The indices of the test samples a search that validates on half of <paramref name="count"/> test samples tests on.</summary>
    private static long[] OtherHalfOfTest(int count)
    {
        using var scope = NewDisposeScope();
        using var indices = new TensorDataset(arange(count, float32).unsqueeze(1), zeros(count, int64), 10);
        var (rest, validation) = indices.Split(count / 2, SurgeryTarget.ValidationSplitSeed);
        using var _rest = rest;
        using var _validation = validation;
        return rest.Inputs.squeeze(1).to(int64).data<long>().ToArray();
    }

    private sealed class NoObserver : ISurgeryObserver
    {
        public void OnIteration(IterationMetrics metrics) { }
        public void OnEvaluation(EvaluationMetrics metrics) { }
        public void OnCheckpointDue(ICheckpointSource source) { }
    }
}

public sealed class BudgetWorkerLossHost() : ServiceHost("budgetloss", withWorker: false);

/// <summary>A budget-mode job whose worker process is killed in the middle of a search stage.</summary>
public sealed class BudgetWorkerLossTests(BudgetWorkerLossHost host, ITestOutputHelper output) : IClassFixture<BudgetWorkerLossHost>
{
    [Fact]
    public async Task ABudgetJobWhoseWorkerIsKilledMidStageResumesWithOneContinuousSeries()
    {
        var client = host.Client();
        var (model, dataset) = await BudgetModeTests.UploadAsync(client);
        const int iterations = 4000;
        var job = await JobScenario.SubmitAsync(client,
            BudgetModeTests.BudgetRequest(model, dataset, iterations, checkpointInterval: 150, new { maxAccuracyDrop = 1.0, validation = 0.2 }));

        // A worker of its own, killed once a checkpoint inside the search's first stages has been written.
        var first = host.StartWorker();
        await JobScenario.WaitForAsync(client, job, j => j.GetProperty("checkpointIteration").GetInt32() >= 450,
            TimeSpan.FromSeconds(150), () => first.Output);
        first.Kill();
        first.Dispose();
        var atKill = await JobScenario.GetJobAsync(client, job);
        var checkpoint = atKill.GetProperty("checkpointIteration").GetInt32();
        Assert.Equal("Running", atKill.GetProperty("state").GetString());

        host.Worker = host.StartWorker();
        var done = await JobScenario.WaitForAsync(client, job, JobScenario.IsFinished, TimeSpan.FromSeconds(300), () => host.Worker.Output);
        output.WriteLine($"killed with checkpoint {checkpoint}; {done}");
        Assert.Equal("Succeeded", done.GetProperty("state").GetString());
        Assert.Equal(checkpoint, done.GetProperty("resumedFromIteration").GetInt32());

        var metrics = await client.GetAsync($"/api/jobs/{job}/metrics?limit=100000").ExpectAsync(HttpStatusCode.OK);
        Assert.Equal(Enumerable.Range(0, iterations),
            metrics.GetProperty("points").EnumerateArray().Select(p => p.GetProperty("iteration").GetInt32()));
        var log = await client.GetAsync($"/api/jobs/{job}/log").ExpectAsync(HttpStatusCode.OK);
        var sequence = log.EnumerateArray().Select(e => e.GetProperty("sequence").GetInt32()).ToList();
        Assert.Equal(Enumerable.Range(0, sequence.Count), sequence); // replaced exactly after the checkpoint: no gap, no repeat
        var stageStarts = log.EnumerateArray().Select(e => e.GetProperty("message").GetString()!)
            .Where(m => m.Contains(": aiming at", StringComparison.Ordinal)).ToList();
        Assert.Equal(stageStarts.Distinct().Count(), stageStarts.Count);
        Assert.True(done.GetProperty("budgetMet").GetBoolean());
    }

}
