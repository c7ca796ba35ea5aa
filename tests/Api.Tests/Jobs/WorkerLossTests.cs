using System.Net;
using SurgeryService.Api.Tests.Infrastructure;

namespace SurgeryService.Api.Tests.Jobs;

public sealed class WorkerLossHost() : ServiceHost("workerloss", withWorker: false);

/// <summary>A worker process killed in the middle of a job, as a lost machine would be.</summary>
public sealed class WorkerLossTests(WorkerLossHost host, Xunit.Abstractions.ITestOutputHelper output) : IClassFixture<WorkerLossHost>
{
    [Fact]
    public async Task AJobWhoseWorkerIsKilledResumesFromItsCheckpointOnAnotherWorkerWithAContinuousMetricSeries()
    {
        var client = host.Client();
        var (model, dataset) = await JobScenario.UploadAsync(client);
        // Long enough (a few seconds) that the worker is killed mid-run, after a couple of checkpoints.
        const int iterations = 1500;
        var job = await JobScenario.SubmitAsync(client, JobScenario.Request(model, dataset, iterations, checkpointInterval: 100, evalInterval: 500));

        var clock = System.Diagnostics.Stopwatch.StartNew();
        using var first = host.StartWorker();
        await JobScenario.WaitForAsync(client, job, j => j.GetProperty("checkpointIteration").GetInt32() >= 200,
            TimeSpan.FromSeconds(90), () => first.Output);
        first.Kill();
        var atKill = await JobScenario.GetJobAsync(client, job);
        output.WriteLine($"killed after {clock.Elapsed.TotalSeconds:F1}s at iteration {atKill.GetProperty("iteration")}, checkpoint {atKill.GetProperty("checkpointIteration")}");
        var checkpoint = atKill.GetProperty("checkpointIteration").GetInt32();
        Assert.Equal("Running", atKill.GetProperty("state").GetString());
        Assert.True(checkpoint < iterations, $"the job finished before the worker was killed: {atKill}");

        var second = host.StartWorker();
        host.Worker = second; // disposed with the host
        var done = await JobScenario.WaitForAsync(client, job, JobScenario.IsFinished, TimeSpan.FromSeconds(150), () => second.Output);

        output.WriteLine($"finished after {clock.Elapsed.TotalSeconds:F1}s: {done}");
        Assert.Equal("Succeeded", done.GetProperty("state").GetString());
        Assert.Equal(2, done.GetProperty("attempts").GetInt32());
        Assert.Equal(checkpoint, done.GetProperty("resumedFromIteration").GetInt32());
        Assert.True(checkpoint >= 200);
        Assert.Contains($"starts at iteration {checkpoint}", second.Output);

        var metrics = await client.GetAsync($"/api/jobs/{job}/metrics?limit=100000").ExpectAsync(HttpStatusCode.OK);
        var series = metrics.GetProperty("points").EnumerateArray().Select(p => p.GetProperty("iteration").GetInt32()).ToList();
        Assert.Equal(Enumerable.Range(0, iterations), series);
        var evaluations = metrics.GetProperty("evaluations").EnumerateArray().Select(e => e.GetProperty("iteration").GetInt32()).ToList();
        Assert.Equal([0, 500, 1000, 1500], evaluations);
        Assert.Equal(1L, await host.Db.ScalarAsync<long>(
            $"SELECT count(*) FROM artifacts WHERE \"Kind\" = 'Checkpoint' AND \"FileName\" LIKE '%{job}%'"));
    }
}

public sealed class WorkerShutdownHost() : ServiceHost("shutdown", withWorker: false);

/// <summary>A worker stopped cleanly (deploy, scale-in) in the middle of a job.</summary>
public sealed class WorkerShutdownTests(WorkerShutdownHost host) : IClassFixture<WorkerShutdownHost>
{
    [Fact]
    public async Task AWorkerStoppedCleanlyCheckpointsWhereItStoppedAndAnotherWorkerFinishesTheJob()
    {
        var client = host.Client();
        var (model, dataset) = await JobScenario.UploadAsync(client);
        // Long enough (a few seconds) that the stop lands mid-run. No periodic checkpoint falls inside the run: any
        // checkpoint comes from the shutdown.
        const int iterations = 1500;
        var job = await JobScenario.SubmitAsync(client, JobScenario.Request(model, dataset, iterations, checkpointInterval: 100_000, evalInterval: 500));

        using var first = host.StartWorker();
        await JobScenario.WaitForAsync(client, job, j => j.GetProperty("iteration").GetInt32() >= 40, TimeSpan.FromSeconds(90), () => first.Output);
        Assert.True(first.Stop(TimeSpan.FromSeconds(30)), "the worker did not stop:\n" + first.Output);

        var handedBack = await JobScenario.GetJobAsync(client, job);
        var checkpoint = handedBack.GetProperty("checkpointIteration").GetInt32();
        Assert.True(checkpoint >= 40 && checkpoint < iterations, handedBack.ToString() + "\n" + first.Output);
        Assert.Equal(0, handedBack.GetProperty("attempts").GetInt32());
        Assert.Contains("handed back at worker shutdown", first.Output);

        var second = host.StartWorker();
        host.Worker = second;
        var done = await JobScenario.WaitForAsync(client, job, JobScenario.IsFinished, TimeSpan.FromSeconds(90), () => second.Output);

        Assert.Equal("Succeeded", done.GetProperty("state").GetString());
        Assert.Equal(checkpoint, done.GetProperty("resumedFromIteration").GetInt32());
        var metrics = await client.GetAsync($"/api/jobs/{job}/metrics").ExpectAsync(System.Net.HttpStatusCode.OK);
        Assert.Equal(Enumerable.Range(0, iterations),
            metrics.GetProperty("points").EnumerateArray().Select(p => p.GetProperty("iteration").GetInt32()));
    }
}
