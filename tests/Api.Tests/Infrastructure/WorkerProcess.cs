namespace SurgeryService.Api.Tests.Infrastructure;

/// <summary>The real Worker executable (src/Worker's build output) started as a child process.</summary>
public sealed class WorkerProcess : ChildProcess
{
    private WorkerProcess(System.Diagnostics.Process process) : base(process)
    {
    }

    public static WorkerProcess Start(string connectionString, IReadOnlyDictionary<string, string>? environment = null) =>
        new(Launch("Worker", "SurgeryService.Worker.dll", connectionString, environment ?? new Dictionary<string, string>()));
}
