using SurgeryService.Domain.Surgery;

namespace SurgeryService.Domain.Jobs;

/// <summary>
/// One training iteration of a job. (JobId, Iteration) is the key: a resumed attempt deletes the rows past its checkpoint
/// and inserts with ON CONFLICT DO NOTHING, so the series never holds an iteration twice.
/// </summary>
public sealed class JobMetric
{
    public Guid JobId { get; set; }
    public int Iteration { get; set; }
    public double Loss { get; set; }
    public double LearningRate { get; set; }
    public long Kept { get; set; }
    public long Total { get; set; }

    /// <summary>Per layer, in the order of <see cref="SurgeryJob.LayerNames"/>.</summary>
    public long[] LayerKept { get; set; } = [];

    public long[] LayerPruned { get; set; } = [];
    public long[] LayerSpliced { get; set; } = [];
}

/// <summary>A test-set evaluation during or after the run.</summary>
public sealed class JobEvaluation
{
    public Guid JobId { get; set; }
    public int Iteration { get; set; }
    public double Loss { get; set; }
    public double Top1 { get; set; }
    public double? Top5 { get; set; }
}

/// <summary>A prunable layer after surgery.</summary>
public sealed class JobLayerResult
{
    public Guid JobId { get; set; }
    public required string Layer { get; set; }
    public int Order { get; set; }
    public LayerKind Kind { get; set; }
    public long Total { get; set; }
    public long Kept { get; set; }
    public long PrunedTotal { get; set; }
    public long SplicedTotal { get; set; }
}

/// <summary>
/// A warning, rollback or budget-search step of a job, numbered in the order the engine emitted it. A checkpoint
/// records how many came before it, so a resumed attempt replaces exactly those that came after.
/// </summary>
public sealed class JobEvent
{
    public Guid JobId { get; set; }
    public int Sequence { get; set; }
    public int Iteration { get; set; }
    public required string Kind { get; set; }
    public required string Message { get; set; }
    public DateTimeOffset CreatedAt { get; set; }
}
