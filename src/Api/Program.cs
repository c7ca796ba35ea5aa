using Hangfire;
using Microsoft.EntityFrameworkCore;
using SurgeryService.Api;
using SurgeryService.Api.Errors;
using SurgeryService.Api.Health;
using SurgeryService.Domain.Hosting;
using SurgeryService.Domain.Persistence;

var builder = WebApplication.CreateBuilder(args);

builder.Services.AddOptions<ApiOptions>()
    .BindConfiguration(ApiOptions.Section)
    .ValidateDataAnnotations()
    .ValidateOnStart();

builder.Services.AddSurgeryPersistence(builder.Configuration);
builder.Services.AddHangfire(hangfire => hangfire.UseSurgeryStorage(builder.Configuration));
if (builder.Configuration.GetValue<bool>($"{ApiOptions.Section}:{nameof(ApiOptions.RunWorker)}"))
{
    // Single-process mode: the Api also runs jobs (the Worker project is the scalable way).
    builder.Services.AddHangfireServer();
}

builder.Services.AddProblemDetails();
builder.Services.AddExceptionHandler<DomainExceptionHandler>();
builder.Services.AddEndpointsApiExplorer();
builder.Services.AddSwaggerGen();
builder.Services.AddSurgeryHealthChecks();

var app = builder.Build();

if (app.Services.GetRequiredService<Microsoft.Extensions.Options.IOptions<ApiOptions>>().Value.MigrateOnStartup)
{
    using var scope = app.Services.CreateScope();
    await scope.ServiceProvider.GetRequiredService<SurgeryDbContext>().Database.MigrateAsync();
}

app.UseExceptionHandler();
app.UseStatusCodePages();
app.UseSwagger();
app.UseSwaggerUI();
app.MapSurgeryHealthChecks();

app.Run();

/// <summary>Entry point; public for WebApplicationFactory in the tests.</summary>
public partial class Program;
