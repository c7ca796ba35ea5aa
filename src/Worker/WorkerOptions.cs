using System.ComponentModel.DataAnnotations;
using SurgeryService.Domain.Jobs;

namespace SurgeryService.Worker;

/// <summary>Settings of the job worker, section <c>Worker</c>.</summary>
public sealed class WorkerOptions : IValidatableObject
{
    public const string Section = "Worker";

    /// <summary>Hangfire queues this worker takes jobs from, in priority order (<c>gpu</c>, <c>cpu</c>, <c>default</c>).</summary>
    [MinLength(1)]
    public string[] Queues { get; set; } = [JobQueues.Cpu, JobQueues.Default];

    /// <summary>Jobs run at once. Training uses every core, so one per machine is the useful default.</summary>
    [Range(1, 64)]
    public int WorkerCount { get; set; } = 1;

    [Range(1, 3600)]
    public int ShutdownTimeoutSeconds { get; set; } = 30;

    /// <summary>
    /// LibTorch threads per job; 0 (default) measures at each job's start whether more than one thread pays
    /// (<c>TrainingThreads</c>), between 1 and the cores shared among <see cref="WorkerCount"/> jobs.
    /// </summary>
    [Range(0, 1024)]
    public int TorchThreads { get; set; }

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext) =>
        Queues.Where(q => !JobQueues.All.Contains(q)).Select(q => new ValidationResult(
            $"queue '{q}' is not one of {string.Join(", ", JobQueues.All)}", [nameof(Queues)]));
}
