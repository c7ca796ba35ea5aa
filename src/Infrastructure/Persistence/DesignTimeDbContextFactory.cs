using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Design;

namespace SurgeryService.Infrastructure.Persistence;

/// <summary>Lets <c>dotnet ef migrations add</c> build the model without a running database or host.</summary>
internal sealed class DesignTimeDbContextFactory : IDesignTimeDbContextFactory<SurgeryDbContext>
{
    public SurgeryDbContext CreateDbContext(string[] args) =>
        new(new DbContextOptionsBuilder<SurgeryDbContext>()
            .UseNpgsql(Environment.GetEnvironmentVariable("ConnectionStrings__Surgery") ?? "Host=localhost;Database=surgery")
            .Options, Tenants.SystemTenant.Instance);
}
