namespace SurgeryService.Domain.Jobs;

/// <summary>A surgery job as stored in PostgreSQL: what was asked and where it stands.</summary>
public sealed class SurgeryJob
{
    public Guid Id { get; set; }
    public JobState State { get; set; }
    public DateTimeOffset CreatedAt { get; set; }
    public DateTimeOffset? StartedAt { get; set; }
    public DateTimeOffset? FinishedAt { get; set; }
    public string? Error { get; set; }
}
