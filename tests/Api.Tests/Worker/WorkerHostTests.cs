using SurgeryService.Api.Tests.Infrastructure;

namespace SurgeryService.Api.Tests.Worker;

public sealed class WorkerHostTests : IAsyncLifetime
{
    private TestDatabase _db = null!;

    public async Task InitializeAsync() => _db = await TestDatabase.CreateAsync("worker");

    public async Task DisposeAsync() => await _db.DisposeAsync();

    [Fact]
    public async Task WorkerProcessRegistersItsHangfireServerInPostgres()
    {
        using var worker = WorkerProcess.Start(_db.ConnectionString,
            new Dictionary<string, string> { ["Worker__Queues__0"] = "gpu", ["Worker__Queues__1"] = "cpu" });

        var registered = await Eventually.TrueAsync(async () =>
            !worker.HasExited && await ServerCount(worker.Id) == 1, TimeSpan.FromSeconds(60));

        Assert.True(registered, "no Hangfire server row for the worker; its output:\n" + worker.Output);
        var queues = await _db.ScalarAsync<string>(
            $"SELECT data FROM hangfire.server WHERE id LIKE '%:{worker.Id}:%'");
        Assert.Contains("\"gpu\"", queues);
    }

    [Fact]
    public async Task WorkerStartsLibTorchWithPassiveOpenMpWaiting()
    {
        // OMP_DISPLAY_ENV makes OpenMP print the settings it read when LibTorch loaded it.
        using var worker = WorkerProcess.Start(_db.ConnectionString, new Dictionary<string, string> { ["OMP_DISPLAY_ENV"] = "TRUE" });

        var shown = await Eventually.TrueAsync(() => Task.FromResult(worker.HasExited || worker.Output.Contains("OMP_WAIT_POLICY")),
            TimeSpan.FromSeconds(60));

        Assert.True(shown, "OpenMP printed no settings; the worker's output:\n" + worker.Output);
        Assert.Contains("OMP_WAIT_POLICY = 'PASSIVE'", worker.Output);
    }

    [Fact]
    public async Task OperatorsWaitPolicyWins()
    {
        using var worker = WorkerProcess.Start(_db.ConnectionString,
            new Dictionary<string, string> { ["OMP_DISPLAY_ENV"] = "TRUE", ["OMP_WAIT_POLICY"] = "ACTIVE" });

        var shown = await Eventually.TrueAsync(() => Task.FromResult(worker.HasExited || worker.Output.Contains("OMP_WAIT_POLICY")),
            TimeSpan.FromSeconds(60));

        Assert.True(shown, "OpenMP printed no settings; the worker's output:\n" + worker.Output);
        Assert.Contains("OMP_WAIT_POLICY = 'ACTIVE'", worker.Output);
    }

    [Fact]
    public async Task WorkerAsksAChildProcessWhetherOneDnnIsRightAndCapsItsInstructionSetWhenNot()
    {
        // DNNL_VERBOSE makes oneDNN name the instruction set it runs on when it creates its first kernel.
        using var worker = WorkerProcess.Start(_db.ConnectionString, new Dictionary<string, string> { ["DNNL_VERBOSE"] = "1" });

        var line = await StartupLine(worker);

        Assert.DoesNotContain("did not answer", line);
        if (line.Contains("DNNL_MAX_CPU_ISA=SSE41", StringComparison.Ordinal))
        {
            // This processor's own choice was wrong: the Worker runs oneDNN capped, and the in-process check found it right.
            Assert.Contains("isa:Intel SSE4.1", worker.Output);
            Assert.DoesNotContain("turned off", line);
        }
        else
        {
            Assert.Contains("oneDNN's own choice (float32 error", line);
        }
    }

    [Fact]
    public async Task OperatorsOneDnnInstructionSetWins()
    {
        using var worker = WorkerProcess.Start(_db.ConnectionString,
            new Dictionary<string, string> { ["DNNL_MAX_CPU_ISA"] = "SSE41", ["DNNL_VERBOSE"] = "1" });

        var line = await StartupLine(worker);

        Assert.Contains("DNNL_MAX_CPU_ISA=SSE41, set by the operator", line);
        Assert.Contains("isa:Intel SSE4.1", worker.Output);
    }

    /// <summary>The Worker's startup log line (it names the OpenMP policy, the threads and the convolutions).</summary>
    private static async Task<string> StartupLine(WorkerProcess worker)
    {
        var logged = await Eventually.TrueAsync(() => Task.FromResult(worker.HasExited || worker.Output.Contains("convolutions: ", StringComparison.Ordinal)),
            TimeSpan.FromSeconds(90));
        Assert.True(logged, "the worker logged no startup line; its output:\n" + worker.Output);
        return worker.Output.Split('\n').First(l => l.Contains("convolutions: ", StringComparison.Ordinal));
    }

    private async Task<long> ServerCount(int pid)
    {
        var schemaExists = await _db.ScalarAsync<bool>(
            "SELECT EXISTS (SELECT 1 FROM information_schema.tables WHERE table_schema = 'hangfire' AND table_name = 'server')");
        return schemaExists ? await _db.ScalarAsync<long>($"SELECT count(*) FROM hangfire.server WHERE id LIKE '%:{pid}:%'") : 0;
    }
}
