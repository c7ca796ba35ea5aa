using System.Diagnostics;

namespace SurgeryService.Api.Tests.Infrastructure;

/// <summary>
/// A PostgreSQL cluster of a test's own, started by scripts/lib/provision.sh in a bash child (so it runs as the scripts
/// run it, as the <c>postgres</c> user under root), for faults that would hurt other tests on the shared one: a
/// restart. The child lives as long as its standard input; disposing (or this process dying) stops and deletes it.
/// </summary>
public sealed class PrivatePostgres : IAsyncDisposable
{
    private const string Script = """
        set -euo pipefail
        source scripts/lib/provision.sh
        ensure_postgres_binaries
        CLUSTER="$(postgres_dir "postgres-$CLUSTER_NAME")"
        trap 'stop_postgres; rm -rf "$CLUSTER"' EXIT
        PG_FSYNC=off PG_PORT_START=56432 start_postgres "$CLUSTER"
        "${PG_AS[@]}" "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -qc 'CREATE DATABASE surgery' >&2
        echo "Host=127.0.0.1;Port=$PG_PORT;Username=postgres;Database=surgery"
        while read -r command; do
          case "$command" in
            restart) "${PG_AS[@]}" "$PG_BIN/pg_ctl" -D "$PG_DATA" restart -m fast -w -t 60 >/dev/null && echo restarted ;;
            stop) "${PG_AS[@]}" "$PG_BIN/pg_ctl" -D "$PG_DATA" stop -m fast -w -t 60 >/dev/null && echo stopped ;;
            start) PG_FSYNC=off start_cluster && echo started ;;
            *) echo "unknown command $command" ;;
          esac
        done
        """;

    private readonly Process _process;

    private PrivatePostgres(Process process, string connectionString)
    {
        _process = process;
        ConnectionString = connectionString;
    }

    public string ConnectionString { get; }

    public static async Task<PrivatePostgres> StartAsync(string name)
    {
        var info = new ProcessStartInfo("bash", ["-c", Script])
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            UseShellExecute = false,
            WorkingDirectory = BuildOutput.RepositoryRoot(),
        };
        info.Environment["CLUSTER_NAME"] = $"{name}-{Guid.NewGuid():N}"[..24];
        var process = Process.Start(info) ?? throw new InvalidOperationException("could not start bash");
        var line = await process.StandardOutput.ReadLineAsync()
            ?? throw new InvalidOperationException("the private PostgreSQL did not start (its messages are in the test output)");
        return new PrivatePostgres(process, line);
    }

    /// <summary><c>pg_ctl restart -m fast</c>: every connection is cut, the server is back on the same port when this returns.</summary>
    public Task RestartAsync() => CommandAsync("restart", "restarted");

    /// <summary><c>pg_ctl stop -m fast</c>: every connection is cut and the server stays down until <see cref="StartAgainAsync"/>.</summary>
    public Task StopAsync() => CommandAsync("stop", "stopped");

    /// <summary>Starts the stopped server again on the same port.</summary>
    public Task StartAgainAsync() => CommandAsync("start", "started");

    private async Task CommandAsync(string command, string done)
    {
        await _process.StandardInput.WriteLineAsync(command);
        await _process.StandardInput.FlushAsync();
        var answer = await _process.StandardOutput.ReadLineAsync();
        if (answer != done) throw new InvalidOperationException($"'{command}' answered '{answer}'");
    }

    public async ValueTask DisposeAsync()
    {
        _process.StandardInput.Close();
        await _process.WaitForExitAsync();
        _process.Dispose();
    }
}
