using Hangfire;
using Hangfire.PostgreSql;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using SurgeryService.Domain.Artifacts;
using SurgeryService.Domain.Jobs;
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
        services.AddScoped<ArtifactStore>();
        return services;
    }

    /// <summary>Hangfire's job storage in the same PostgreSQL database, in its own schema.</summary>
    public static IGlobalConfiguration UseSurgeryStorage(this IGlobalConfiguration hangfire, IConfiguration configuration)
    {
        var connectionString = configuration.GetSurgeryConnectionString();
        var storage = configuration.GetSection(HangfireStorageSettings.Section).Get<HangfireStorageSettings>() ?? new();
        return hangfire
            .SetDataCompatibilityLevel(CompatibilityLevel.Version_180)
            .UseSimpleAssemblyNameTypeSerializer()
            .UseRecommendedSerializerSettings()
            .UsePostgreSqlStorage(
                storage => storage.UseNpgsqlConnection(connectionString),
                new PostgreSqlStorageOptions
                {
                    SchemaName = HangfireSchema,
                    PrepareSchemaIfNecessary = true,
                    // A job whose worker died becomes visible to other workers after this long; live workers keep
                    // extending it (sliding), so long surgeries are never taken twice.
                    InvisibilityTimeout = TimeSpan.FromSeconds(storage.InvisibilityTimeoutSeconds),
                    UseSlidingInvisibilityTimeout = true,
                    QueuePollInterval = TimeSpan.FromMilliseconds(storage.QueuePollIntervalMilliseconds),
                });
    }

    /// <summary>Registers what a Hangfire server needs to run surgery jobs.</summary>
    public static IServiceCollection AddSurgeryJobs(this IServiceCollection services)
    {
        services.AddOptions<JobOptions>()
            .BindConfiguration(JobOptions.Section)
            .ValidateDataAnnotations()
            .ValidateOnStart();
        services.AddScoped<ArtifactStore>();
        services.AddScoped<SurgeryJobRunner>();
        return services;
    }
}

/// <summary>Hangfire's PostgreSQL storage, section <c>Hangfire</c>.</summary>
public sealed class HangfireStorageSettings
{
    public const string Section = "Hangfire";

    /// <summary>How long a job fetched by a worker that then disappeared stays invisible to the others.</summary>
    public int InvisibilityTimeoutSeconds { get; set; } = 300;

    public int QueuePollIntervalMilliseconds { get; set; } = 1000;
}
