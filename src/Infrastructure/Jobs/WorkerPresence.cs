using Hangfire;

namespace SurgeryService.Infrastructure.Jobs;

/// <summary>Whether a worker is there to take a queue's jobs now (a submit warns the client when none is).</summary>
public interface IWorkerPresence
{
    bool ServesQueue(string queue);
}

/// <summary>Reads Hangfire's server list: a server that listens to the queue and sent a heartbeat recently.</summary>
public sealed class HangfireWorkerPresence(JobStorage storage) : IWorkerPresence
{
    /// <summary>Hangfire servers beat every 30 s by default; two missed beats and a server no longer counts as live.</summary>
    public static readonly TimeSpan LiveHeartbeat = TimeSpan.FromSeconds(90);

    public bool ServesQueue(string queue)
    {
        var since = DateTime.UtcNow - LiveHeartbeat;
        return storage.GetMonitoringApi().Servers()
            .Any(s => s.Queues.Contains(queue, StringComparer.OrdinalIgnoreCase) && s.Heartbeat is { } beat && beat >= since);
    }
}
