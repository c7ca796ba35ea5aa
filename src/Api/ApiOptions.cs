namespace SurgeryService.Api;

/// <summary>Settings of the HTTP host, section <c>Api</c>.</summary>
public sealed class ApiOptions
{
    public const string Section = "Api";

    /// <summary>Apply EF Core migrations when the Api starts. Exactly one process should do this.</summary>
    public bool MigrateOnStartup { get; set; } = true;

    /// <summary>Also run a Hangfire server inside the Api (single-process deployments).</summary>
    public bool RunWorker { get; set; }
}
