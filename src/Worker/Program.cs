using Hangfire;
using SurgeryService.Infrastructure.Hosting;
using SurgeryService.Worker;

var builder = Host.CreateApplicationBuilder(args);

builder.Services.AddOptions<WorkerOptions>()
    .BindConfiguration(WorkerOptions.Section)
    .ValidateDataAnnotations()
    .ValidateOnStart();

var options = builder.Configuration.GetSection(WorkerOptions.Section).Get<WorkerOptions>() ?? new WorkerOptions();
if (options.TorchThreads > 0)
{
    TorchSharp.torch.set_num_threads(options.TorchThreads);
}
builder.Services.AddSurgeryCore(builder.Configuration);
builder.Services.AddSurgeryJobServer();
builder.Services.AddHangfireServer(server =>
{
    // Configuration arrays bind on top of the default list, so a queue can appear twice.
    server.Queues = options.Queues.Distinct(StringComparer.Ordinal).ToArray();
    server.WorkerCount = options.WorkerCount;
    server.ServerName = Environment.MachineName; // Hangfire adds the process id and a guid
    server.ShutdownTimeout = TimeSpan.FromSeconds(options.ShutdownTimeoutSeconds);
});
// The host waits longer than Hangfire so a running job can reach its next checkpoint and stop cleanly.
builder.Services.Configure<HostOptions>(host =>
    host.ShutdownTimeout = TimeSpan.FromSeconds(options.ShutdownTimeoutSeconds + 15));

builder.Build().Run();
