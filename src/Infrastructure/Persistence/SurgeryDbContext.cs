using Microsoft.EntityFrameworkCore;
using SurgeryService.Domain.Artifacts;
using SurgeryService.Domain.Datasets;
using SurgeryService.Domain.Jobs;
using SurgeryService.Domain.Models;
using SurgeryService.Infrastructure.Tenants;

namespace SurgeryService.Infrastructure.Persistence;

/// <summary>
/// The service's one database. Add a migration with:
/// <c>dotnet tool restore &amp;&amp; dotnet ef migrations add NAME --project src/Infrastructure --startup-project src/Api --output-dir Persistence/Migrations</c>
/// <para>Tenant isolation is the query filter here: a request sees its tenant's models, jobs and idempotency keys, and its
/// own and the built-in datasets; work outside a request (<see cref="SystemTenant"/>) sees every row. A query that must
/// cross tenants inside a request says so with <c>IgnoreQueryFilters()</c>.</para>
/// </summary>
public sealed class SurgeryDbContext(DbContextOptions<SurgeryDbContext> options, ITenantAccessor tenant) : DbContext(options)
{
    /// <summary>The shadow property that maps a job's PostgreSQL <c>xmin</c> as its concurrency token.</summary>
    public const string RowVersion = "Version";

    public DbSet<SurgeryJob> Jobs => Set<SurgeryJob>();
    public DbSet<JobMetric> JobMetrics => Set<JobMetric>();
    public DbSet<JobEvaluation> JobEvaluations => Set<JobEvaluation>();
    public DbSet<JobEvent> JobEvents => Set<JobEvent>();
    public DbSet<JobLayerResult> JobLayerResults => Set<JobLayerResult>();
    public DbSet<ModelEntry> Models => Set<ModelEntry>();
    public DbSet<DatasetEntry> Datasets => Set<DatasetEntry>();
    public DbSet<Artifact> Artifacts => Set<Artifact>();
    public DbSet<IdempotencyRecord> IdempotencyRecords => Set<IdempotencyRecord>();

    // Context members, so EF reads them on each query rather than baking one tenant into the cached model.
    private string? TenantId => tenant.TenantId;
    private bool AllTenants => tenant.AllTenants;

    protected override void OnModelCreating(ModelBuilder modelBuilder)
    {
        modelBuilder.ApplyConfigurationsFromAssembly(typeof(SurgeryDbContext).Assembly);
        modelBuilder.Entity<ModelEntry>().HasQueryFilter(m => AllTenants || m.TenantId == TenantId);
        modelBuilder.Entity<DatasetEntry>().HasQueryFilter(d => AllTenants || d.TenantId == TenantId || d.BuiltIn);
        modelBuilder.Entity<SurgeryJob>().HasQueryFilter(j => AllTenants || j.TenantId == TenantId);
        modelBuilder.Entity<IdempotencyRecord>().HasQueryFilter(r => AllTenants || r.TenantId == TenantId);
    }
}
