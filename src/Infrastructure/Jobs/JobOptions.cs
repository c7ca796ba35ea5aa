using System.ComponentModel.DataAnnotations;

namespace SurgeryService.Infrastructure.Jobs;

/// <summary>How workers run surgery jobs, section <c>Jobs</c>.</summary>
public sealed class JobOptions
{
    public const string Section = "Jobs";

    /// <summary>Metric rows written per database round trip at most.</summary>
    [Range(1, 100_000)]
    public int MetricBatchSize { get; set; } = 1000;

    /// <summary>Progress (and the cancel flag) is written and read at least this often while a job runs.</summary>
    [Range(50, 60_000)]
    public int FlushIntervalMilliseconds { get; set; } = 1000;

    /// <summary>Checkpoint interval of a job that does not set one.</summary>
    [Range(1, 10_000_000)]
    public int DefaultCheckpointInterval { get; set; } = 1000;

    /// <summary>A queued job without a Hangfire job this long after it was saved is enqueued by the sweep.</summary>
    [Range(1, 86_400)]
    public int OrphanAfterSeconds { get; set; } = 60;

    /// <summary>How often a host that runs jobs looks for such jobs.</summary>
    [Range(1, 86_400)]
    public int OrphanSweepSeconds { get; set; } = 60;

    /// <summary>Training samples whose activation ranges calibrate an int8 model (min/max; the first N samples).</summary>
    [Range(1, 100_000)]
    public int Int8CalibrationSamples { get; set; } = 1000;

    /// <summary>ONNX Runtime intra-op threads of the deployment report's latency runs.</summary>
    [Range(1, 256)]
    public int DeploymentThreads { get; set; } = 1;

    /// <summary>Timed runs per batch size (1 and 64) of the deployment report, after <see cref="DeploymentWarmupRuns"/>.</summary>
    [Range(1, 100_000)]
    public int DeploymentRuns { get; set; } = 100;

    [Range(0, 100_000)]
    public int DeploymentWarmupRuns { get; set; } = 10;

    /// <summary>
    /// A job whose estimated peak memory (<c>JobMemoryEstimate</c>) is over this is refused at submit with a 422 that
    /// names the estimate. Set it to what a worker may use for one job; the default is 75% of the memory this process
    /// sees (the machine's, or its container's limit), right when the Api and the Worker share a machine.
    /// </summary>
    [Range(typeof(long), "1", "9223372036854775807")]
    public long MaxJobMemoryBytes { get; set; } = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes / 4 * 3;
}
