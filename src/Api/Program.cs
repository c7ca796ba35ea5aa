using System.Text.Json;
using System.Text.Json.Serialization;
using Hangfire;
using Microsoft.AspNetCore.Authentication;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using SurgeryService.Api;
using SurgeryService.Api.Datasets;
using SurgeryService.Api.Errors;
using SurgeryService.Api.Health;
using SurgeryService.Api.Jobs;
using SurgeryService.Api.Models;
using SurgeryService.Api.OpenApi;
using SurgeryService.Api.Tenants;
using SurgeryService.Api.Uploads;
using SurgeryService.Domain.Jobs;
using SurgeryService.Infrastructure.Hosting;
using SurgeryService.Infrastructure.Persistence;

var builder = WebApplication.CreateBuilder(args);

builder.Services.AddOptions<ApiOptions>()
    .BindConfiguration(ApiOptions.Section)
    .ValidateDataAnnotations()
    .ValidateOnStart();
builder.Services.AddOptions<TenantsOptions>()
    .Configure<IConfiguration>((options, configuration) =>
        options.Tenants = configuration.GetSection(TenantsOptions.Section).Get<Dictionary<string, TenantSettings>>() ?? [])
    .ValidateDataAnnotations()
    .ValidateOnStart();
builder.Services.AddOptions<DatasetOptions>().BindConfiguration(DatasetOptions.Section);

builder.Services.AddSurgeryCore(builder.Configuration);
if (builder.Configuration.GetValue<bool>($"{ApiOptions.Section}:{nameof(ApiOptions.RunWorker)}"))
{
    // Single-process mode: the Api also runs jobs (the Worker project is the scalable way).
    builder.Services.AddHangfireServer(server => server.Queues = [.. JobQueues.All]);
    builder.Services.AddSurgeryJobServer();
}
builder.Services.AddHostedService<BuiltInDatasets>();
builder.Services.AddScoped<MultipartUpload>();

builder.Services.AddAuthentication(ApiKeyAuthenticationHandler.SchemeName)
    .AddScheme<AuthenticationSchemeOptions, ApiKeyAuthenticationHandler>(ApiKeyAuthenticationHandler.SchemeName, null);
builder.Services.AddAuthorizationBuilder()
    .AddPolicy("HangfireDashboard", policy => policy.RequireAuthenticatedUser().RequireAssertion(context =>
    {
        var allowed = context.Resource is HttpContext http
            ? http.RequestServices.GetRequiredService<IOptions<ApiOptions>>().Value.DashboardTenants
            : [];
        var tenant = context.User.FindFirst(ApiKeyAuthenticationHandler.TenantClaim)?.Value;
        return tenant is not null && (allowed.Length == 0 || allowed.Contains(tenant));
    }));

builder.Services.ConfigureHttpJsonOptions(json =>
{
    json.SerializerOptions.Converters.Add(new JsonStringEnumConverter(JsonNamingPolicy.CamelCase));
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

app.UseExceptionHandler();
app.UseStatusCodePages();
app.UseSwagger();
app.UseSwaggerUI(ui => ui.EnablePersistAuthorization());
app.UseAuthentication();
app.UseAuthorization();
app.MapSurgeryHealthChecks();
app.MapModels();
app.MapDatasets();
app.MapJobs();
// Operators' view of every tenant's queue (job arguments are ids only): Api:DashboardTenants limits who opens it.
app.MapHangfireDashboard("/hangfire", new DashboardOptions { Authorization = [], AsyncAuthorization = [], DisplayStorageConnectionString = false })
    .RequireAuthorization("HangfireDashboard");

app.Run();

/// <summary>Entry point; public for WebApplicationFactory in the tests.</summary>
public partial class Program;
