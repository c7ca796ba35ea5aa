using SurgeryService.Infrastructure.Tenants;

namespace SurgeryService.Api.Tenants;

/// <summary>
/// The tenant of the current request's API key. Outside a request (start-up tasks, and jobs when the Api runs a Hangfire
/// server itself) the service acts for every tenant, as the Worker does.
/// </summary>
public sealed class RequestTenant(IHttpContextAccessor http) : ITenantAccessor
{
    public string? TenantId => http.HttpContext?.User.FindFirst(ApiKeyAuthenticationHandler.TenantClaim)?.Value;

    public bool AllTenants => http.HttpContext is null;
}
