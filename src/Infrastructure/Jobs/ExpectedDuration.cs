using SurgeryService.Domain.Jobs;

namespace SurgeryService.Infrastructure.Jobs;

/// <summary>A finished job whose pace a new job on the same model and queue goes by: its iterations and how long they took.</summary>
/// <param name="JobId">The finished job.</param>
/// <param name="Iterations">The iterations it trained.</param>
/// <param name="BatchSize">Its settings' batch size.</param>
/// <param name="Seconds">Seconds from its first start to its finish.</param>
public sealed record FinishedRun(Guid JobId, int Iterations, int BatchSize, double Seconds)
{
    /// <summary>Seconds per iteration over the whole run: the analysis, evaluations and export share the iterations' time.</summary>
    public double SecondsPerIteration => Seconds / Iterations;
}

/// <summary>
/// How long a job should run from its first start, as estimated when it is submitted (<see cref="SurgeryJob.ExpectedSeconds"/>):
/// kept honest and simple. A time budget (<c>target.maxMinutes</c>) bounds it. A finished job on the same model and queue
/// gives a pace: its whole run's seconds per iteration, times this job's iterations, scaled by the ratio of the batch
/// sizes (an iteration's work grows with its batch). With both, the smaller; with neither, no estimate: the running job
/// measures its pace (<c>etaSeconds</c>).
/// </summary>
public static class ExpectedDuration
{
    public static (double? Seconds, string Basis) Of(JobKind kind, int totalIterations, FinishedRun? previous)
    {
        if (kind is SensitivityJob)
        {
            return (null, "a sensitivity analysis is timed as it runs: etaSeconds follows from the layers it has measured");
        }
        var budget = (kind as BudgetJob)?.Target.MaxMinutes is { } minutes ? minutes * 60 : (double?)null;
        var paced = previous is { Iterations: > 0, Seconds: > 0 }
            ? previous.SecondsPerIteration * totalIterations * kind.Settings.BatchSize / previous.BatchSize
            : (double?)null;
        var pace = previous is null || paced is null ? null
            : $"job {previous.JobId} on this model and queue ran {previous.SecondsPerIteration:g3} s per iteration over its whole " +
              $"run at batch size {previous.BatchSize}; times {totalIterations} iterations at batch size {kind.Settings.BatchSize}";
        var limit = $"the time budget, target.maxMinutes {budget / 60:0.##}";
        return (budget, paced) switch
        {
            ({ } b, { } p) when p < b => (Math.Round(p, 1), $"{pace}, within {limit}"),
            ({ } b, { } p) => (b, $"{limit}: the search fits its stages to it ({pace} would take {p:0} s)"),
            ({ } b, null) => (b, $"{limit}: the search fits its stages to it (no finished job on this model and queue to go by)"),
            (null, { } p) => (Math.Round(p, 1), pace!),
            _ => (null, "no job on this model and queue has finished to go by: the pace is measured once the job runs (etaSeconds)"),
        };
    }
}
