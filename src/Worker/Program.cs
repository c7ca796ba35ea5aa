using Hangfire;
using SurgeryService.Infrastructure.Hosting;
using SurgeryService.Domain.Surgery;
using SurgeryService.Worker;

// Before anything touches TorchSharp: oneDNN reads its instruction-set cap once, at its first kernel (in the child
// process this starts, the check answers and exits here).
var convolutions = SurgeryService.Domain.Torch.ConvolutionCheck.ChooseInstructionSet();
// OpenMP reads its wait policy once, when LibTorch loads.
var waitPolicy = OpenMpWaitPolicy.PassiveUnlessSet();
// Before the first tensor: freed tensor memory is reused rather than returned and faulted back in (evaluations 3-10x faster).
var keepsTensorMemory = SurgeryService.Domain.Torch.ProcessMemory.KeepFreedTensorMemory();

var builder = Host.CreateApplicationBuilder(args);

builder.Services.AddOptions<WorkerOptions>()
    .BindConfiguration(WorkerOptions.Section)
    .ValidateDataAnnotations()
    .ValidateOnStart();

var options = builder.Configuration.GetSection(WorkerOptions.Section).Get<WorkerOptions>() ?? new WorkerOptions();
// Each job sets its LibTorch thread count on its training thread: measured, or Worker:TorchThreads.
builder.Services.AddSingleton(TrainingThreads.For(options.TorchThreads, options.WorkerCount));
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

var host = builder.Build();
// Loads LibTorch now, so its OpenMP runtime starts with the policy above and a broken native install shows at start.
host.Services.GetRequiredService<ILogger<WorkerOptions>>().LogInformation(
    "OpenMP wait policy {WaitPolicy}; LibTorch threads per job: {Threads} (LibTorch's default here: {Default}); " +
    "freed tensor memory kept for reuse until a job ends: {KeepsTensorMemory}; convolutions: {Convolutions}", waitPolicy,
    options.TorchThreads > 0 ? options.TorchThreads.ToString(System.Globalization.CultureInfo.InvariantCulture) : "measured per job",
    TorchSharp.torch.get_num_threads(), keepsTensorMemory,
    $"{convolutions}; {SurgeryService.Domain.Torch.ConvolutionCheck.Describe(SurgeryService.Domain.Torch.ConvolutionCheck.Ensure())}");
host.Run();
