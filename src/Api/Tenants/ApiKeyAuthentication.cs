using System.Net.Http.Headers;
using System.Security.Claims;
using System.Security.Cryptography;
using System.Text;
using System.Text.Encodings.Web;
using Microsoft.AspNetCore.Authentication;
using Microsoft.Extensions.Options;

namespace SurgeryService.Api.Tenants;

/// <summary>
/// Authenticates a request by its <c>X-Api-Key</c> header, or, for browsers on the Hangfire dashboard only, by HTTP Basic
/// credentials whose password is the key. The principal carries the tenant as <see cref="TenantClaim"/>.
/// </summary>
public sealed class ApiKeyAuthenticationHandler(
    IOptionsMonitor<AuthenticationSchemeOptions> options,
    ILoggerFactory logger,
    UrlEncoder encoder,
    IOptions<TenantsOptions> tenants)
    : AuthenticationHandler<AuthenticationSchemeOptions>(options, logger, encoder)
{
    public const string SchemeName = "ApiKey";
    public const string HeaderName = "X-Api-Key";
    public const string TenantClaim = "tenant";

    /// <summary>The Hangfire dashboard: the one place that accepts HTTP Basic credentials.</summary>
    public const string DashboardPath = "/hangfire";

    private readonly Dictionary<string, string> _tenantByKeyHash = tenants.Value.Tenants
        .SelectMany(t => t.Value.ApiKeys.Select(key => (Hash: Hash(key), Tenant: t.Key)))
        .ToDictionary(k => k.Hash, k => k.Tenant, StringComparer.Ordinal);

    protected override Task<AuthenticateResult> HandleAuthenticateAsync()
    {
        // Basic credentials only where a browser needs them: a browser sends cached Basic credentials with any request to
        // the host, a cross-site form post included, whereas X-Api-Key is never sent without the caller's script.
        var key = Request.Headers[HeaderName].FirstOrDefault() ?? (IsDashboard ? BasicPassword() : null);
        if (string.IsNullOrEmpty(key))
        {
            return Task.FromResult(AuthenticateResult.NoResult());
        }
        if (!_tenantByKeyHash.TryGetValue(Hash(key), out var tenant))
        {
            return Task.FromResult(AuthenticateResult.Fail("unknown API key"));
        }
        var identity = new ClaimsIdentity([new Claim(TenantClaim, tenant), new Claim(ClaimTypes.Name, tenant)], SchemeName);
        return Task.FromResult(AuthenticateResult.Success(new AuthenticationTicket(new ClaimsPrincipal(identity), SchemeName)));
    }

    protected override Task HandleChallengeAsync(AuthenticationProperties properties)
    {
        Response.StatusCode = StatusCodes.Status401Unauthorized;
        // Lets a browser on the dashboard prompt for the key (user name: anything, password: the key).
        Response.Headers.WWWAuthenticate = IsDashboard
            ? "Basic realm=\"surgery\", charset=\"UTF-8\""
            : $"ApiKey header=\"{HeaderName}\"";
        return Task.CompletedTask;
    }

    private bool IsDashboard => Request.Path.StartsWithSegments(DashboardPath);

    private string? BasicPassword()
    {
        if (!AuthenticationHeaderValue.TryParse(Request.Headers.Authorization, out var header)
            || !"Basic".Equals(header.Scheme, StringComparison.OrdinalIgnoreCase) || header.Parameter is null)
        {
            return null;
        }
        try
        {
            var credentials = Encoding.UTF8.GetString(Convert.FromBase64String(header.Parameter));
            var colon = credentials.IndexOf(':');
            return colon < 0 ? null : credentials[(colon + 1)..];
        }
        catch (FormatException)
        {
            return null;
        }
    }

    private static string Hash(string key) => Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(key)));
}
