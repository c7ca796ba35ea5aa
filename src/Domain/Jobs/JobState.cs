namespace SurgeryService.Domain.Jobs;

public enum JobState
{
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

public static class JobStates
{
    public static bool IsFinished(this JobState state) => state is JobState.Succeeded or JobState.Failed or JobState.Cancelled;
}
