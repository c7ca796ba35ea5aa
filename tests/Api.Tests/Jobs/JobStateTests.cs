using System.Net;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using SurgeryService.Api.Tests.Infrastructure;
using SurgeryService.Infrastructure.Jobs;
using SurgeryService.Infrastructure.Persistence;

namespace SurgeryService.Api.Tests.Jobs;

public sealed class JobStateHost() : ServiceHost("jobstate", withWorker: false);

/// <summary>
/// The job row's concurrency token and the sweep that enqueues job rows left without a Hangfire job, against the real
/// PostgreSQL and Hangfire storage (no worker: jobs stay queued).
/// </summary>
public sealed class JobStateTests(JobStateHost host) : IClassFixture<JobStateHost>
{
    [Fact]
    public async Task AJobSavedWithoutItsHangfireJobIsEnqueuedByTheSweepOnceItIsOldEnough()
    {
        var client = host.Client();
        var (model, dataset) = await JobScenario.UploadAsync(client);
        var orphan = await JobScenario.SubmitAsync(client, JobScenario.Request(model, dataset, 10, 5));
        var fresh = await JobScenario.SubmitAsync(client, JobScenario.Request(model, dataset, 10, 5));
        // What a process that stopped between saving the row and creating the Hangfire job leaves behind.
        await host.Db.ScalarAsync<int>(
            $"""
            DELETE FROM hangfire.job WHERE id IN (SELECT "HangfireJobId"::bigint FROM jobs WHERE "Id" IN ('{orphan}', '{fresh}'));
            UPDATE jobs SET "HangfireJobId" = NULL WHERE "Id" IN ('{orphan}', '{fresh}');
            UPDATE jobs SET "CreatedAt" = now() - interval '2 minutes' WHERE "Id" = '{orphan}';
            """);

        await using (var scope = host.Factory.Services.CreateAsyncScope())
        {
            Assert.Equal(1, await scope.ServiceProvider.GetRequiredService<JobQueuing>().RequeueOrphansAsync(CancellationToken.None));
        }
        await using (var scope = host.Factory.Services.CreateAsyncScope())
        {
            Assert.Equal(0, await scope.ServiceProvider.GetRequiredService<JobQueuing>().RequeueOrphansAsync(CancellationToken.None));
        }

        Assert.Equal("Enqueued", await host.Db.ScalarAsync<string>(
            $"SELECT statename FROM hangfire.job WHERE id = (SELECT \"HangfireJobId\"::bigint FROM jobs WHERE \"Id\" = '{orphan}')"));
        Assert.Equal("cpu", await host.Db.ScalarAsync<string>(
            $"SELECT queue FROM hangfire.jobqueue WHERE jobid = (SELECT \"HangfireJobId\"::bigint FROM jobs WHERE \"Id\" = '{orphan}')"));
        Assert.Contains(orphan.ToString(), await host.Db.ScalarAsync<string>(
            $"SELECT arguments FROM hangfire.job WHERE id = (SELECT \"HangfireJobId\"::bigint FROM jobs WHERE \"Id\" = '{orphan}')"));
        Assert.Null(await host.Db.ScalarAsync<string>($"SELECT \"HangfireJobId\" FROM jobs WHERE \"Id\" = '{fresh}'"));
        var job = await JobScenario.GetJobAsync(client, orphan);
        Assert.Equal("Queued", job.GetProperty("state").GetString());
    }

    [Fact]
    public async Task ATransitionSavedOverAnOlderCopyOfTheJobFailsInsteadOfOverwriting()
    {
        var client = host.Client();
        var (model, dataset) = await JobScenario.UploadAsync(client);
        var id = await JobScenario.SubmitAsync(client, JobScenario.Request(model, dataset, 10, 5));

        await using var runnerScope = host.Factory.Services.CreateAsyncScope();
        var runnerDb = runnerScope.ServiceProvider.GetRequiredService<SurgeryDbContext>();
        var runnerCopy = await runnerDb.Jobs.SingleAsync(j => j.Id == id);

        // The Api cancels the queued job in the meantime.
        await client.PostAsync($"/api/jobs/{id}/cancel", null).ExpectAsync(HttpStatusCode.Accepted);

        runnerCopy.StartAttempt(DateTimeOffset.UtcNow);
        await Assert.ThrowsAsync<DbUpdateConcurrencyException>(() => runnerDb.SaveChangesAsync());
        await runnerDb.Entry(runnerCopy).ReloadAsync();
        Assert.True(runnerCopy.IsFinished);
        var job = await JobScenario.GetJobAsync(client, id);
        Assert.Equal("Cancelled", job.GetProperty("state").GetString());
        Assert.Equal(0, job.GetProperty("attempts").GetInt32());
    }

    [Fact]
    public async Task AProgressWriteMakesAnOlderCopyOfTheJobStale()
    {
        var client = host.Client();
        var (model, dataset) = await JobScenario.UploadAsync(client);
        var id = await JobScenario.SubmitAsync(client, JobScenario.Request(model, dataset, 10, 5));

        await using var scope = host.Factory.Services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<SurgeryDbContext>();
        var copy = await db.Jobs.SingleAsync(j => j.Id == id);
        // A raw SQL write like JobProgressWriter's: it does not know EF's token, but PostgreSQL changes xmin anyway.
        await host.Db.ScalarAsync<int>($"UPDATE jobs SET \"Loss\" = 1.5 WHERE \"Id\" = '{id}'");

        copy.RequestCancel(DateTimeOffset.UtcNow);
        await Assert.ThrowsAsync<DbUpdateConcurrencyException>(() => db.SaveChangesAsync());
    }
}
