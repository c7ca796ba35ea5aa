namespace SurgeryService.Domain.Jobs;

/// <summary>The Hangfire queues: the one place their names are defined.</summary>
public static class JobQueues
{
    /// <summary>Jobs that a CPU worker runs; the default for a job that names none.</summary>
    public const string Cpu = "cpu";

    /// <summary>Jobs that a worker with a CUDA device runs.</summary>
    public const string Gpu = "gpu";

    /// <summary>Hangfire's own queue (a job enqueued without a queue lands here).</summary>
    public const string Default = "default";

    /// <summary>The queues a job may ask for.</summary>
    public static readonly IReadOnlyList<string> ForJobs = [Cpu, Gpu];

    /// <summary>Every queue a worker may listen on.</summary>
    public static readonly IReadOnlyList<string> All = [Cpu, Gpu, Default];
}
