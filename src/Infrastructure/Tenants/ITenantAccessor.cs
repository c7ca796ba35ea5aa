namespace SurgeryService.Infrastructure.Tenants;

/// <summary>
/// Whose rows a <see cref="Persistence.SurgeryDbContext"/> sees: the query filter on models, datasets, jobs and
/// idempotency keys reads it on every query.
/// </summary>
public interface ITenantAccessor
{
    /// <summary>The tenant of the request; null where there is none (then only built-in datasets match).</summary>
    string? TenantId { get; }

    /// <summary>
    /// True for the service's own work outside a request (the job runner, the orphan sweep, start-up tasks): every
    /// tenant's rows are visible.
    /// </summary>
    bool AllTenants { get; }

    /// <summary>The tenant a new row belongs to; a caller without one cannot create tenant rows.</summary>
    string RequiredTenantId => TenantId ?? throw new InvalidOperationException("no tenant: the request is not authenticated");
}

/// <summary>The Worker's view, and the default of every host: the service itself, acting for all tenants.</summary>
public sealed class SystemTenant : ITenantAccessor
{
    public static readonly SystemTenant Instance = new();

    public string? TenantId => null;
    public bool AllTenants => true;
}
