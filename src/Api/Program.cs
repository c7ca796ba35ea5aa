using System.Text.Json;
using System.Text.Json.Serialization;
using Hangfire;
using Hangfire.Dashboard;
using Microsoft.AspNetCore.Authentication;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using SurgeryService.Api;
using SurgeryService.Api.Datasets;
using SurgeryService.Api.Errors;
using SurgeryService.Api.Health;
using SurgeryService.Api.Idempotency;
using SurgeryService.Api.Jobs;
using SurgeryService.Api.Models;
using SurgeryService.Api.OpenApi;
using SurgeryService.Api.Security;
using SurgeryService.Api.Tenants;
using SurgeryService.Api.Uploads;
using SurgeryService.Domain.Jobs;
using SurgeryService.Infrastructure.Hosting;
using SurgeryService.Infrastructure.Models;
using SurgeryService.Infrastructure.Persistence;
using SurgeryService.Infrastructure.Tenants;

// Before anything touches TorchSharp: OpenMP reads its wait policy once, when LibTorch loads. The Api computes only to
// measure uploaded models; its OpenMP threads must not spin on cores the Worker and PostgreSQL need.
SurgeryService.Domain.Surgery.OpenMpWaitPolicy.PassiveUnlessSet();

var builder = WebApplication.CreateBuilder(args);
builder.WebHost.ConfigureKestrel(kestrel => kestrel.AddServerHeader = false); // no "Server: Kestrel" to fingerprint

builder.Services.AddOptions<ApiOptions>()
    .BindConfiguration(ApiOptions.Section)
    .ValidateDataAnnotations()
    .ValidateOnStart();
builder.Services.AddOptions<TenantsOptions>()
    .Configure<IConfiguration>((options, configuration) =>
        options.Tenants = configuration.GetSection(TenantsOptions.Section).Get<Dictionary<string, TenantSettings>>() ?? [])
    .ValidateDataAnnotations()
    .ValidateOnStart();
builder.Services.AddOptions<DatasetOptions>()
    .BindConfiguration(DatasetOptions.Section)
    .ValidateDataAnnotations()
    .ValidateOnStart();

builder.Services.AddSurgeryCore(builder.Configuration);
builder.Services.AddSurgeryUseCases();
builder.Services.AddSingleton(services =>
    new ModelInspectionGate(services.GetRequiredService<IOptions<ApiOptions>>().Value.MaxConcurrentModelInspections));
// The tenant query filter sees the request's tenant (replacing the Worker's all-tenants view that AddSurgeryCore registers).
builder.Services.AddHttpContextAccessor();
builder.Services.Replace(ServiceDescriptor.Scoped<ITenantAccessor, RequestTenant>());
if (builder.Configuration.GetValue<bool>($"{ApiOptions.Section}:{nameof(ApiOptions.RunWorker)}"))
{
    // Single-process mode: the Api also runs jobs (the Worker project is the scalable way).
    builder.Services.AddHangfireServer(server => server.Queues = [.. JobQueues.All]);
    builder.Services.AddSurgeryJobServer();
}
builder.Services.AddHostedService<BuiltInDatasets>();
builder.Services.AddHostedService<LibTorchPreload>();
builder.Services.AddScoped<MultipartUpload>();

builder.Services.AddAuthentication(ApiKeyAuthenticationHandler.SchemeName)
    .AddScheme<AuthenticationSchemeOptions, ApiKeyAuthenticationHandler>(ApiKeyAuthenticationHandler.SchemeName, null);
builder.Services.AddAuthorizationBuilder()
    .AddPolicy("HangfireDashboard", policy => policy.RequireAuthenticatedUser().RequireAssertion(context =>
    {
        if (context.Resource is not HttpContext http) return false;
        var options = http.RequestServices.GetRequiredService<IOptions<ApiOptions>>().Value;
        var tenant = context.User.FindFirst(ApiKeyAuthenticationHandler.TenantClaim)?.Value;
        return tenant is not null && (options.DashboardTenants.Contains(tenant) || options.DashboardOperatorTenants.Contains(tenant));
    }));

// Hangfire's dashboard validates every POST (its delete and requeue buttons) against this antiforgery service, so a page
// on another site cannot drive a browser that holds the dashboard's Basic credentials.
builder.Services.AddAntiforgery();
builder.Services.ConfigureHttpJsonOptions(json =>
{
    // Enum settings by name only: "1" or 2 would pick whichever member has that number today.
    json.SerializerOptions.Converters.Add(new JsonStringEnumConverter(JsonNamingPolicy.CamelCase, allowIntegerValues: false));
    // A misspelled setting ("iteratons") must not be ignored silently: the job would run with the default instead.
    json.SerializerOptions.UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow;
    // Nor a setting given twice, of which the last would win unseen.
    json.SerializerOptions.AllowDuplicateProperties = false;
    // A diverged iteration's loss is NaN or Infinity in the metric series; JSON has no literal for them otherwise.
    json.SerializerOptions.NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals;
});
// Unreadable bodies surface as BadHttpRequestException, which DomainExceptionHandler turns into a 400 naming the field.
builder.Services.Configure<RouteHandlerOptions>(options => options.ThrowOnBadRequest = true);
builder.Services.AddProblemDetails();
builder.Services.AddExceptionHandler<DomainExceptionHandler>();
builder.Services.AddEndpointsApiExplorer();
builder.Services.AddSurgerySwagger();
builder.Services.AddSurgeryHealthChecks();

var app = builder.Build();

if (app.Services.GetRequiredService<IOptions<ApiOptions>>().Value.MigrateOnStartup)
{
    using var scope = app.Services.CreateScope();
    await scope.ServiceProvider.GetRequiredService<SurgeryDbContext>().Database.MigrateAsync();
}

app.UseSecurityHeaders();
app.UseExceptionHandler();
app.UseProblemContentType();
app.UseStatusCodePages();
app.UseSwagger();
app.UseSwaggerUI(ui => ui.EnablePersistAuthorization());
app.UseAuthentication();
app.UseAuthorization();
app.UseMiddleware<JsonBodyLimit>();
app.UseMiddleware<IdempotencyMiddleware>();
app.MapSurgeryHealthChecks();
app.MapModels();
app.MapDatasets();
app.MapJobs();
// Operators' view of every tenant's queue (job arguments are ids only): only Api:DashboardTenants (read-only) and
// Api:DashboardOperatorTenants (who may also use its actions; for the others Hangfire answers 401) open it.
app.MapHangfireDashboard(ApiKeyAuthenticationHandler.DashboardPath, new DashboardOptions
{
    Authorization = [],
    AsyncAuthorization = [],
    DisplayStorageConnectionString = false,
    IsReadOnlyFunc = context =>
    {
        var http = context.GetHttpContext();
        var tenant = http.User.FindFirst(ApiKeyAuthenticationHandler.TenantClaim)?.Value;
        return tenant is null || !http.RequestServices.GetRequiredService<IOptions<ApiOptions>>().Value.DashboardOperatorTenants.Contains(tenant);
    },
}).RequireAuthorization("HangfireDashboard");

app.Run();

/// <summary>Entry point; public for WebApplicationFactory in the tests.</summary>
public partial class Program;
