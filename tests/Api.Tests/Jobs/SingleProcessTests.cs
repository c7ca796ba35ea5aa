using System.Net;
using SurgeryService.Api.Tests.Infrastructure;

namespace SurgeryService.Api.Tests.Jobs;

public sealed class SingleProcessHost() : ServiceHost("single", withWorker: false,
    new Dictionary<string, string?> { ["Api:RunWorker"] = "true", ["Hangfire:QueuePollIntervalMilliseconds"] = "200" });

/// <summary>Api:RunWorker: one process serves HTTP and runs the jobs.</summary>
public sealed class SingleProcessTests(SingleProcessHost host) : IClassFixture<SingleProcessHost>
{
    [Fact]
    public async Task TheApiAloneRunsAJobWhenItHostsTheWorker()
    {
        var client = host.Client();
        var (model, dataset) = await JobScenario.UploadOnnxMlpAsync(client, TestData.MnistIdxZip(128, 64), "mnist.zip");

        var job = await JobScenario.SubmitAsync(client, JobScenario.Request(
            model, dataset, iterations: 20, checkpointInterval: 10, evalInterval: 10));
        var done = await JobScenario.WaitForAsync(client, job, JobScenario.IsFinished, TimeSpan.FromSeconds(60));

        Assert.Equal("Succeeded", done.GetProperty("state").GetString());
        Assert.Equal(20, done.GetProperty("iteration").GetInt32());
    }
}
