using System.ComponentModel.DataAnnotations;

namespace SurgeryService.Api;

/// <summary>Settings of the HTTP host, section <c>Api</c>.</summary>
public sealed class ApiOptions
{
    public const string Section = "Api";

    /// <summary>Apply EF Core migrations when the Api starts. Exactly one process should do this.</summary>
    public bool MigrateOnStartup { get; set; } = true;

    /// <summary>Also run a Hangfire server inside the Api (single-process deployments).</summary>
    public bool RunWorker { get; set; }

    /// <summary>Largest model or dataset upload in bytes; larger ones get 413. Default 1 GiB.</summary>
    [Range(1, long.MaxValue)]
    public long MaxUploadBytes { get; set; } = 1L << 30;

    /// <summary>
    /// Largest JSON request body in bytes (a job or sensitivity request); larger ones get 413. Default 64 KiB, which holds
    /// every setting with hundreds of per-layer entries; 1 KiB to 16 MiB.
    /// </summary>
    [Range(1024, 16 << 20)]
    public int MaxJsonBodyBytes { get; set; } = 64 * 1024;

    /// <summary>How long an <c>Idempotency-Key</c> and the answer it got are kept: a retry within it gets the same answer.</summary>
    [Range(24, 24 * 30)]
    public int IdempotencyHours { get; set; } = 24;

    /// <summary>Model uploads parsed at once (each holds its file in memory a few times over while parsed).</summary>
    [Range(1, 64)]
    public int MaxConcurrentModelInspections { get; set; } = 2;

    /// <summary>
    /// Tenants whose keys may view the Hangfire dashboard read-only. It shows every tenant's job ids, states and timings,
    /// so it is for operators: empty (the default) opens it to nobody but <see cref="DashboardOperatorTenants"/>.
    /// </summary>
    public string[] DashboardTenants { get; set; } = [];

    /// <summary>
    /// Operators: tenants whose keys open the dashboard and may also act in it (delete, requeue). Everybody else in
    /// <see cref="DashboardTenants"/> gets it read-only, since its actions reach every tenant's jobs. Empty (the
    /// default): nobody acts in it.
    /// </summary>
    public string[] DashboardOperatorTenants { get; set; } = [];

    /// <summary>How often the events stream (SSE) looks at a running job's progress.</summary>
    [Range(50, 60_000)]
    public int EventPollMilliseconds { get; set; } = 500;

    /// <summary>Seconds of silence after which the events stream sends a <c>: keep-alive</c> comment (idle proxies cut streams).</summary>
    [Range(1, 300)]
    public int EventKeepAliveSeconds { get; set; } = 15;
}
