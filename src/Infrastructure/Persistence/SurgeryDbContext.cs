using Microsoft.EntityFrameworkCore;
using SurgeryService.Domain.Artifacts;
using SurgeryService.Domain.Datasets;
using SurgeryService.Domain.Jobs;
using SurgeryService.Domain.Models;

namespace SurgeryService.Infrastructure.Persistence;

/// <summary>
/// The service's one database. Add a migration with:
/// <c>dotnet tool restore &amp;&amp; dotnet ef migrations add NAME --project src/Infrastructure --startup-project src/Api --output-dir Persistence/Migrations</c>
/// </summary>
public sealed class SurgeryDbContext(DbContextOptions<SurgeryDbContext> options) : DbContext(options)
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

    protected override void OnModelCreating(ModelBuilder modelBuilder) =>
        modelBuilder.ApplyConfigurationsFromAssembly(typeof(SurgeryDbContext).Assembly);
}
