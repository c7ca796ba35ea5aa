using Microsoft.EntityFrameworkCore;
using SurgeryService.Domain.Jobs;

namespace SurgeryService.Domain.Persistence;

/// <summary>
/// The service's one database. Add a migration with:
/// <c>dotnet tool restore &amp;&amp; dotnet ef migrations add NAME --project src/Domain --startup-project src/Api --output-dir Persistence/Migrations</c>
/// </summary>
public sealed class SurgeryDbContext(DbContextOptions<SurgeryDbContext> options) : DbContext(options)
{
    public DbSet<SurgeryJob> Jobs => Set<SurgeryJob>();

    protected override void OnModelCreating(ModelBuilder modelBuilder) =>
        modelBuilder.ApplyConfigurationsFromAssembly(typeof(SurgeryDbContext).Assembly);
}
