using System.ComponentModel.DataAnnotations;

namespace SurgeryService.Api.Tenants;

/// <summary>
/// Tenants and their API keys, section <c>Tenants</c>: <c>Tenants__acme__ApiKeys__0=...</c>. Each tenant sees only its
/// own models, datasets and jobs. Keys are compared by their SHA-256, never logged.
/// </summary>
public sealed class TenantsOptions : IValidatableObject
{
    public const string Section = "Tenants";

    public Dictionary<string, TenantSettings> Tenants { get; set; } = new(StringComparer.Ordinal);

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (name, tenant) in Tenants)
        {
            if (name.Length is 0 or > 64)
            {
                yield return new ValidationResult($"tenant name '{name}' must have 1 to 64 characters");
            }
            if (tenant.ApiKeys.Count == 0)
            {
                yield return new ValidationResult($"tenant '{name}' has no API key (Tenants:{name}:ApiKeys)");
            }
            foreach (var key in tenant.ApiKeys)
            {
                if (key.Length < 16)
                {
                    yield return new ValidationResult($"an API key of tenant '{name}' is shorter than 16 characters");
                }
                if (!seen.Add(key))
                {
                    yield return new ValidationResult($"an API key of tenant '{name}' is also configured for another tenant");
                }
            }
        }
    }
}

public sealed class TenantSettings
{
    public List<string> ApiKeys { get; set; } = [];
}
