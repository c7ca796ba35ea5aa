using System.ComponentModel.DataAnnotations;
using Hangfire;
using Hangfire.PostgreSql;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.DependencyInjection.Extensions;
using SurgeryService.Domain.Surgery;
using SurgeryService.Infrastructure.Artifacts;
using SurgeryService.Infrastructure.Datasets;
using SurgeryService.Infrastructure.Jobs;
using SurgeryService.Infrastructure.Models;
using SurgeryService.Infrastructure.Persistence;
using SurgeryService.Infrastructure.Tenants;

namespace SurgeryService.Infrastructure.Hosting;

/// <summary>The composition root shared by the Api and the Worker: each host calls <see cref="AddSurgeryCore"/>.</summary>
public static class ServiceCollectionExtensions
{
    public const string ConnectionStringName = "Surgery";
    public const string HangfireSchema = "hangfire";

    public static string GetSurgeryConnectionString(this IConfiguration configuration) =>
        configuration.GetConnectionString(ConnectionStringName)
        ?? throw new InvalidOperationException(
            $"Connection string '{ConnectionStringName}' is not set: set ConnectionStrings__{ConnectionStringName}.");

    /// <summary>
    /// What both hosts need: EF Core on PostgreSQL, the artifact store, the job runner and its options, and Hangfire's
    /// storage and client configuration. A host that runs jobs adds <c>AddHangfireServer</c> on top.
    /// </summary>
    public static IServiceCollection AddSurgeryCore(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddSurgeryPersistence(configuration);
        services.AddSurgeryJobs();
        services.AddSurgeryHangfireStorage(configuration);
        services.AddHangfire((provider, hangfire) => hangfire.UseSurgeryDefaults(provider)
            .UseFilter(ActivatorUtilities.CreateInstance<CancelWhenDeleted>(provider)));
        return services;
    }

    /// <summary>
    /// What a host that runs jobs adds to <see cref="AddSurgeryCore"/> besides its Hangfire server: the sweep that
    /// enqueues jobs saved without a Hangfire job.
    /// </summary>
    public static IServiceCollection AddSurgeryJobServer(this IServiceCollection services)
    {
        services.AddHostedService<OrphanJobSweeper>();
        return services;
    }

    /// <summary>
    /// The use cases behind the HTTP endpoints, on top of <see cref="AddSurgeryCore"/>: uploads, lists and deletes of
    /// models and datasets, and submitting, listing and cancelling jobs. The host registers the
    /// <see cref="ModelInspectionGate"/> with its bound.
    /// </summary>
    public static IServiceCollection AddSurgeryUseCases(this IServiceCollection services)
    {
        services.AddScoped<UploadModel>();
        services.AddScoped<DeleteModel>();
        services.AddScoped<ModelQueries>();
        services.AddScoped<UploadDataset>();
        services.AddScoped<DeleteDataset>();
        services.AddScoped<DatasetQueries>();
        services.AddSingleton<IWorkerPresence, HangfireWorkerPresence>();
        services.AddScoped<SubmitJob>();
        services.AddScoped<CancelJob>();
        services.AddScoped<DeleteJob>();
        services.AddScoped<JobQueries>();
        return services;
    }

    /// <summary>EF Core on PostgreSQL and the artifact store.</summary>
    private static IServiceCollection AddSurgeryPersistence(this IServiceCollection services, IConfiguration configuration)
    {
        var connectionString = configuration.GetSurgeryConnectionString();
        // The Worker's (and start-up tasks') view: every tenant. The Api replaces it with the request's tenant.
        services.TryAddSingleton<ITenantAccessor>(SystemTenant.Instance);
        services.AddDbContext<SurgeryDbContext>(options => options.UseNpgsql(connectionString));
        services.AddScoped<ArtifactStore>();
        return services;
    }

    /// <summary>
    /// Hangfire's job storage in the same PostgreSQL database, in its own schema, and a job activator on this host's
    /// services, both as this host's singletons. Hangfire's defaults are process-wide statics (JobStorage.Current,
    /// JobActivator.Current) that several hosts in one process (the service tests) would otherwise share.
    /// Registered before <c>AddHangfire</c>, which then keeps these registrations.
    /// </summary>
    private static IServiceCollection AddSurgeryHangfireStorage(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddOptions<HangfireStorageSettings>()
            .BindConfiguration(HangfireStorageSettings.Section)
            .ValidateDataAnnotations()
            .ValidateOnStart();
        services.AddSingleton<JobStorage>(provider =>
            CreateStorage(configuration.GetSurgeryConnectionString(), provider.GetRequiredService<IOptions<HangfireStorageSettings>>().Value));
        services.AddSingleton<JobActivator>(provider => new ScopedJobActivator(provider.GetRequiredService<IServiceScopeFactory>()));
        return services;
    }

    /// <summary>Hangfire's serialisation and logging for this service.</summary>
    private static IGlobalConfiguration UseSurgeryDefaults(this IGlobalConfiguration hangfire, IServiceProvider services) => hangfire
        .SetDataCompatibilityLevel(CompatibilityLevel.Version_180)
        .UseSimpleAssemblyNameTypeSerializer()
        .UseRecommendedSerializerSettings()
        .UseLogProvider(new HangfireLogging(services.GetRequiredService<Microsoft.Extensions.Logging.ILoggerFactory>()));

    private static PostgreSqlStorage CreateStorage(string connectionString, HangfireStorageSettings settings)
    {
        var options = new PostgreSqlStorageOptions
        {
            SchemaName = HangfireSchema,
            PrepareSchemaIfNecessary = true,
            // A job whose worker died becomes visible to other workers after this long; live workers keep extending it
            // (sliding), so long surgeries are never taken twice.
            InvisibilityTimeout = TimeSpan.FromSeconds(settings.InvisibilityTimeoutSeconds),
            UseSlidingInvisibilityTimeout = true,
            QueuePollInterval = TimeSpan.FromMilliseconds(settings.QueuePollIntervalMilliseconds),
        };
        return new PostgreSqlStorage(new Hangfire.PostgreSql.Factories.NpgsqlConnectionFactory(connectionString, options), options);
    }

    /// <summary>Creates each job (the runner and its DbContext) in a DI scope of its own, disposed after the job.</summary>
    private sealed class ScopedJobActivator(IServiceScopeFactory scopes) : JobActivator
    {
        public override JobActivatorScope BeginScope(JobActivatorContext context) => new Scope(scopes.CreateScope());

        private sealed class Scope(IServiceScope scope) : JobActivatorScope
        {
            public override object Resolve(Type type) => ActivatorUtilities.GetServiceOrCreateInstance(scope.ServiceProvider, type);

            public override void DisposeScope() => scope.Dispose();
        }
    }

    /// <summary>Registers what a Hangfire server needs to run surgery jobs.</summary>
    private static IServiceCollection AddSurgeryJobs(this IServiceCollection services)
    {
        services.AddOptions<JobOptions>()
            .BindConfiguration(JobOptions.Section)
            .ValidateDataAnnotations()
            .ValidateOnStart();
        services.AddScoped<SurgeryJobRunner>();
        services.AddScoped<JobQueuing>();
        // A Worker registers its own (Worker:TorchThreads, Worker:WorkerCount) first; the Api's in-process server measures.
        services.TryAddSingleton(_ => TrainingThreads.For(0));
        return services;
    }
}

/// <summary>Hangfire's PostgreSQL storage, section <c>Hangfire</c>.</summary>
public sealed class HangfireStorageSettings
{
    public const string Section = "Hangfire";

    /// <summary>How long a job fetched by a worker that then disappeared stays invisible to the others.</summary>
    [Range(1, 86_400)]
    public int InvisibilityTimeoutSeconds { get; set; } = 300;

    /// <summary>How often an idle worker asks the queue for a job.</summary>
    [Range(50, 60_000)]
    public int QueuePollIntervalMilliseconds { get; set; } = 1000;
}
