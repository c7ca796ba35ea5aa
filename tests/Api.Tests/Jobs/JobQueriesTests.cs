using System.Data.Common;
using System.Net;
using System.Text.Json;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Diagnostics;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Migrations;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using SurgeryService.Api.Jobs;
using SurgeryService.Api.Tests.Infrastructure;
using SurgeryService.Domain.Jobs;
using SurgeryService.Domain.Models;
using SurgeryService.Domain.Surgery;
using SurgeryService.Infrastructure.Jobs;
using SurgeryService.Infrastructure.Persistence;
using SurgeryService.Infrastructure.Tenants;

namespace SurgeryService.Api.Tests.Jobs;

public sealed class JobQueriesHost() : ServiceHost("jobqueries", withWorker: false);

/// <summary>
/// What the job list and the event stream read from PostgreSQL: job rows written directly (no worker takes them), the
/// commands EF sends counted and read through a command interceptor.
/// </summary>
public sealed class JobQueriesTests(JobQueriesHost host) : IClassFixture<JobQueriesHost>
{
    private const string Acme = "acme", Globex = "globex";

    private readonly CommandLog _log = new();

    [Fact]
    public async Task AListGivesEachQueuedJobItsPlaceInItsQueueCountingEveryTenantsJobs()
    {
        var (cpu, gpu) = (Queue("cpu"), Queue("gpu"));
        var start = DateTimeOffset.UtcNow.AddHours(-1);
        // Submitted in this order; the running and the cancelled job ahead of them hold no place.
        var plan = new[] { (Acme, cpu), (Globex, cpu), (Acme, gpu), (Acme, cpu), (Globex, gpu), (Acme, gpu), (Acme, cpu), (Acme, gpu) };
        var queued = plan.Select((p, i) => Job(p.Item1, p.Item2, start.AddSeconds(i))).ToList();
        var running = Job(Acme, cpu, start.AddSeconds(-2));
        running.StartAttempt(start);
        var cancelled = Job(Globex, gpu, start.AddSeconds(-1));
        cancelled.RequestCancel(start);
        await SaveAsync([.. queued, running, cancelled]);

        var positions = new Dictionary<Guid, int>();
        foreach (var key in new[] { ServiceHost.AcmeKey, ServiceHost.GlobexKey })
        {
            var page = await host.Client(key).GetAsync("/api/jobs?state=queued&pageSize=200").ExpectAsync(HttpStatusCode.OK);
            foreach (var item in page.GetProperty("items").EnumerateArray().Where(j => j.GetProperty("queue").GetString() is { } q && (q == cpu || q == gpu)))
            {
                positions[item.GetProperty("id").GetGuid()] = item.GetProperty("queuePosition").GetInt32();
            }
        }

        Assert.Equal(queued.Count, positions.Count);
        foreach (var queue in new[] { cpu, gpu })
        {
            Assert.Equal([1, 2, 3, 4], queued.Where(j => j.Queue == queue).Select(j => positions[j.Id]));
        }
        var single = await JobScenario.GetJobAsync(host.Client(), queued[^1].Id);
        Assert.Equal(4, single.GetProperty("queuePosition").GetInt32());
    }

    [Fact]
    public async Task StandingsOfAPageCostTheSameCommandsHoweverManyOfItsJobsAreQueued()
    {
        var commands = new Dictionary<int, int>();
        foreach (var count in new[] { 2, 40 })
        {
            var (cpu, gpu) = (Queue("cpu"), Queue("gpu"));
            var start = DateTimeOffset.UtcNow.AddMinutes(-count);
            var jobs = Enumerable.Range(0, count).Select(i => Job(Acme, i % 2 == 0 ? cpu : gpu, start.AddSeconds(i))).ToList();
            await SaveAsync(jobs);

            await using var db = Context(Acme);
            var queries = new JobQueries(db, new NoWorkers());
            var ids = jobs.Select(j => j.Id).ToList();
            var page = await db.Jobs.AsNoTracking().Where(j => ids.Contains(j.Id)).OrderByDescending(j => j.CreatedAt).ToListAsync();
            _log.Clear();
            var standings = await queries.StandingsAsync(page, CancellationToken.None);
            commands[count] = _log.Commands.Count;

            foreach (var queue in new[] { cpu, gpu })
            {
                Assert.Equal(Enumerable.Range(1, count / 2).Cast<int?>(), jobs.Where(j => j.Queue == queue).Select(j => standings[j.Id].QueuePosition));
            }
            Assert.All(standings.Values, s => Assert.StartsWith("no live worker serves", s.Warnings[0]));
        }
        Assert.Equal(commands[2], commands[40]);
        Assert.True(commands[40] <= 2, $"{commands[40]} commands for a page of 40 queued jobs");
    }

    [Fact]
    public async Task AProgressPollReadsTheEventsColumnsAndNotTheJobsLargeSettings()
    {
        var now = DateTimeOffset.UtcNow;
        var settings = new SurgerySettings
        {
            Target = new SurgeryTarget { MaxAccuracyDrop = 1 },
            Layers = [.. Enumerable.Range(0, SurgerySettings.MaxLayers).Select(i => new LayerSettings { Pattern = $"block{i}." + new string('x', 400) })],
        };
        var job = Job(Acme, Queue("cpu"), now, settings);
        job.StartAttempt(now);
        (job.Phase, job.PhaseStep, job.PhaseSteps, job.Iteration, job.Loss, job.Kept, job.Total) = (RunPhase.Stage, 2, 5, 120, 0.25, 100, 1000);
        (job.BestCompression, job.ValidationTop1, job.EstimatedFinishAt) = (4, 0.9, now.AddMinutes(5));
        await SaveAsync([job]);
        Assert.True(await host.Db.ScalarAsync<int>($"SELECT length(\"Settings\"::text) FROM jobs WHERE \"Id\" = '{job.Id}'") > 100_000);

        await using var db = Context(Acme);
        var queries = new JobQueries(db, new NoWorkers());
        _log.Clear();
        var progress = await queries.ProgressAsync(job.Id, CancellationToken.None);
        var sql = Assert.Single(_log.Commands);
        foreach (var column in new[] { "Settings", "Preprocessing", "Search", "LayerNames", "LayerTotals" })
        {
            Assert.DoesNotContain($"\"{column}\"", sql);
        }
        Assert.NotNull(progress);
        Assert.Equal((BudgetJob.ModeName, JobState.Running, RunPhase.Stage, 120, 0.25, 4.0), (progress.Mode, progress.State, progress.Phase!.Value,
            progress.Iteration, progress.Loss!.Value, progress.BestCompression!.Value));

        // The whole row, which the poll read before, does carry the settings.
        _log.Clear();
        await queries.FindAsync(job.Id, CancellationToken.None);
        Assert.Contains("\"Settings\"", Assert.Single(_log.Commands));

        await using var other = Context(Globex);
        Assert.Null(await new JobQueries(other, new NoWorkers()).ProgressAsync(job.Id, CancellationToken.None));
    }

    [Fact]
    public async Task AProgressEventHoldsWhatTheWholeJobSaysInEveryModeAndState()
    {
        var now = DateTimeOffset.UtcNow;
        var queue = Queue("cpu");
        var modes = new[]
        {
            new SurgerySettings { CRate = 3 }, new SurgerySettings { Target = new SurgeryTarget() }, new SurgerySettings(),
            new SurgerySettings { Sensitivity = new SensitivitySettings() },
        };
        var jobs = new List<SurgeryJob>();
        foreach (var (settings, i) in modes.Select((s, i) => (s, i)))
        {
            jobs.Add(Job(Acme, queue, now.AddSeconds(i), settings));
            jobs.Add(Running(Job(Acme, queue, now, settings)));
            var succeeded = Running(Job(Acme, queue, now, settings));
            succeeded.Succeed(new SurgeryOutcome(1000, false, new EvaluationMetrics(0, 0.2, 0.97, 0.99), new EvaluationMetrics(1000, 0.3, 0.95, 0.99),
                [new LayerResult("fc1", LayerKind.FullyConnected, 1000, 80, 930, 10)]), new Dictionary<ResultFormat, Guid>(), now);
            jobs.Add(succeeded);
            var failed = Running(Job(Acme, queue, now, settings));
            failed.Fail("the dataset is unreadable", now);
            jobs.Add(failed);
            var cancelled = Job(Acme, queue, now, settings);
            cancelled.RequestCancel(now);
            jobs.Add(cancelled);
        }
        await SaveAsync(jobs);

        await using var db = Context(Acme);
        var queries = new JobQueries(db, new NoWorkers());
        var json = host.Factory.Services.GetRequiredService<IOptions<Microsoft.AspNetCore.Http.Json.JsonOptions>>().Value.SerializerOptions;
        var events = new Dictionary<Guid, JobProgressEvent>();
        foreach (var job in jobs)
        {
            var whole = (await queries.FindAsync(job.Id, CancellationToken.None))!;
            var expected = FromWholeJob(JobResponse.From(whole, await queries.StandingAsync(whole, CancellationToken.None)));
            var progress = (await queries.ProgressAsync(job.Id, CancellationToken.None))!;
            var actual = JobProgressEvent.From(progress, await queries.QueuePositionAsync(progress, CancellationToken.None));
            Assert.Equal(JsonSerializer.Serialize(expected, json), JsonSerializer.Serialize(actual, json));
            Assert.Equal(whole.Kind.Name, progress.Mode);
            events[job.Id] = actual;
        }
        Assert.Equal(new int?[] { 1, 2, 3, 4 }, jobs.Where(j => j.State == JobState.Queued).Select(j => events[j.Id].QueuePosition));
        Assert.Contains(events.Values, e => e is { Phase: not null, Compression: not null, ValidationTop1: not null, TestTop1: not null });
        Assert.Contains(events.Values, e => e.Error is not null);

        // The event as it was made before a poll read only these columns: from the job as GET /api/jobs/{id} answers it.
        static JobProgressEvent FromWholeJob(JobResponse job) => new(job.Id, job.State, job.QueuePosition, job.Phase, job.Iteration,
            job.TotalIterations, job.Progress, job.EstimatedFinishAt, job.Loss, job.Sparsity, job.Compression, job.StageCompression,
            job.Validation?.Top1, job.Test?.Top1, job.CheckpointIteration, job.Error);

        SurgeryJob Running(SurgeryJob job)
        {
            job.StartAttempt(now);
            (job.Phase, job.PhaseStep, job.PhaseSteps, job.Iteration, job.Loss, job.Kept, job.Total) = (RunPhase.Stage, 1, 4, 300, 0.4, 250, 1000);
            (job.BestCompression, job.StageCompression, job.ValidationTop1, job.TestTop1, job.TestSplit) = (2.5, 4, 0.93, 0.94, TestSplit.Whole);
            (job.EstimatedFinishAt, job.CheckpointIteration) = (now.AddMinutes(3), 200);
            return job;
        }
    }

    [Fact]
    public async Task TheMigrationGivesExistingJobsTheModeTheirSettingsName()
    {
        await using var database = await TestDatabase.CreateAsync("jobmode");
        await using var db = new SurgeryDbContext(
            new DbContextOptionsBuilder<SurgeryDbContext>().UseNpgsql(database.ConnectionString).Options, SystemTenant.Instance);
        await db.Database.MigrateAsync();
        var cases = new (SurgerySettings Settings, string Mode)[]
        {
            (new SurgerySettings { CRate = 3 }, FixedJob.ModeName),
            (new SurgerySettings { Layers = [new LayerSettings { Pattern = "fc2" }, new LayerSettings { Pattern = "fc1", CRate = 2 }] }, FixedJob.ModeName),
            (new SurgerySettings { Target = new SurgeryTarget { MaxAccuracyDrop = 1 } }, BudgetJob.ModeName),
            (new SurgerySettings(), BudgetJob.ModeName),
            (new SurgerySettings { Layers = [new LayerSettings { Pattern = "fc1", Gamma = 0.1 }] }, BudgetJob.ModeName),
            (new SurgerySettings { Sensitivity = new SensitivitySettings() }, SensitivityJob.ModeName),
        };
        var jobs = cases.Select(c => Job(Acme, "cpu", DateTimeOffset.UtcNow, c.Settings)).ToList();
        Assert.Equal(cases.Select(c => c.Mode), jobs.Select(j => j.Mode));
        db.Jobs.AddRange(jobs);
        await db.SaveChangesAsync();

        // Back to the schema before the column, then forward again: the rows are now jobs that existed before it.
        var migrator = db.GetService<IMigrator>();
        await migrator.MigrateAsync("ModelActivationBytes");
        Assert.Equal(0, await database.ScalarAsync<long>(
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'jobs' AND column_name = 'Mode'"));
        await migrator.MigrateAsync();

        db.ChangeTracker.Clear();
        var stored = await db.Jobs.AsNoTracking().ToDictionaryAsync(j => j.Id, j => j.Mode);
        Assert.Equal(cases.Select(c => c.Mode), jobs.Select(j => stored[j.Id]));
    }

    /// <summary>A queue of this test's own, so other tests' queued jobs hold no place in it.</summary>
    private static string Queue(string kind) => $"{kind}-{Guid.NewGuid():N}"[..16];

    private static SurgeryJob Job(string tenant, string queue, DateTimeOffset createdAt, SurgerySettings? settings = null) => new()
    {
        Id = Guid.CreateVersion7(),
        TenantId = tenant,
        Settings = settings ?? new SurgerySettings { CRate = 3 },
        Preprocessing = new JobPreprocessing(),
        Queue = queue,
        CheckpointInterval = 100,
        TotalIterations = 1000,
        CreatedAt = createdAt,
        UpdatedAt = createdAt,
    };

    private async Task SaveAsync(IEnumerable<SurgeryJob> jobs)
    {
        await using var db = new SurgeryDbContext(
            new DbContextOptionsBuilder<SurgeryDbContext>().UseNpgsql(host.Db.ConnectionString).Options, SystemTenant.Instance);
        db.Jobs.AddRange(jobs);
        await db.SaveChangesAsync();
    }

    /// <summary>A context as a request of <paramref name="tenant"/> has it, whose commands go to <see cref="_log"/>.</summary>
    private SurgeryDbContext Context(string tenant) => new(
        new DbContextOptionsBuilder<SurgeryDbContext>().UseNpgsql(host.Db.ConnectionString).AddInterceptors(_log).Options, new Tenant(tenant));

    private sealed class Tenant(string id) : ITenantAccessor
    {
        public string? TenantId => id;
        public bool AllTenants => false;
    }

    private sealed class NoWorkers : IWorkerPresence
    {
        public bool ServesQueue(string queue) => false;
    }

    /// <summary>The SQL of every command EF executes.</summary>
    private sealed class CommandLog : DbCommandInterceptor
    {
        private readonly List<string> _commands = [];

        public IReadOnlyList<string> Commands
        {
            get { lock (_commands) return [.. _commands]; }
        }

        public void Clear()
        {
            lock (_commands) _commands.Clear();
        }

        private void Add(DbCommand command)
        {
            lock (_commands) _commands.Add(command.CommandText);
        }

        public override InterceptionResult<DbDataReader> ReaderExecuting(DbCommand command, CommandEventData eventData,
            InterceptionResult<DbDataReader> result)
        {
            Add(command);
            return result;
        }

        public override ValueTask<InterceptionResult<DbDataReader>> ReaderExecutingAsync(DbCommand command, CommandEventData eventData,
            InterceptionResult<DbDataReader> result, CancellationToken cancellationToken = default)
        {
            Add(command);
            return ValueTask.FromResult(result);
        }

        public override InterceptionResult<object> ScalarExecuting(DbCommand command, CommandEventData eventData, InterceptionResult<object> result)
        {
            Add(command);
            return result;
        }

        public override ValueTask<InterceptionResult<object>> ScalarExecutingAsync(DbCommand command, CommandEventData eventData,
            InterceptionResult<object> result, CancellationToken cancellationToken = default)
        {
            Add(command);
            return ValueTask.FromResult(result);
        }
    }
}
