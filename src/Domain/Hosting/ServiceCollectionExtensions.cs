using Hangfire;
using Hangfire.PostgreSql;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using SurgeryService.Domain.Persistence;

namespace SurgeryService.Domain.Hosting;

public static class ServiceCollectionExtensions
{
    public const string ConnectionStringName = "Surgery";
    public const string HangfireSchema = "hangfire";

    public static string GetSurgeryConnectionString(this IConfiguration configuration) =>
        configuration.GetConnectionString(ConnectionStringName)
        ?? throw new InvalidOperationException(
            $"Connection string '{ConnectionStringName}' is not set: set ConnectionStrings__{ConnectionStringName}.");

    /// <summary>EF Core on PostgreSQL, shared by the Api and the Worker.</summary>
    public static IServiceCollection AddSurgeryPersistence(this IServiceCollection services, IConfiguration configuration)
    {
        var connectionString = configuration.GetSurgeryConnectionString();
        services.AddDbContext<SurgeryDbContext>(options => options.UseNpgsql(connectionString));
        return services;
    }

    /// <summary>Hangfire's job storage in the same PostgreSQL database, in its own schema.</summary>
    public static IGlobalConfiguration UseSurgeryStorage(this IGlobalConfiguration hangfire, IConfiguration configuration)
    {
        var connectionString = configuration.GetSurgeryConnectionString();
        return hangfire
            .SetDataCompatibilityLevel(CompatibilityLevel.Version_180)
            .UseSimpleAssemblyNameTypeSerializer()
            .UseRecommendedSerializerSettings()
            .UsePostgreSqlStorage(
                storage => storage.UseNpgsqlConnection(connectionString),
                new PostgreSqlStorageOptions { SchemaName = HangfireSchema, PrepareSchemaIfNecessary = true });
    }
}
