using SurgeryService.Domain.Surgery;

namespace SurgeryService.Infrastructure.Jobs;

/// <summary>
/// When a run should end, from the pace this attempt has measured: seconds per training iteration (evaluations,
/// checkpoints and stage changes included, as they recur) and, during a sensitivity analysis, seconds per layer. Until an
/// iteration has been timed, a training job's iterations are estimated from the analysis: an iteration's forward and
/// backward pass over a batch costs about three forward passes over as many samples, and a layer's analysis is
/// <see cref="Sensitivity.Ladder"/> evaluations of the samples it measures (the validation split, or the sample of it
/// the phase names). Nothing measured yet: no estimate. A budget job
/// with <c>target.maxMinutes</c> ends by its <see cref="Deadline"/> whatever the pace says, so the estimate never runs
/// past it. Fed on the training thread, read by the progress writer's loop.
/// </summary>
public sealed class JobPace(int totalIterations, int startIteration, int batchSize, TimeProvider time)
{
    /// <summary>When the job's time budget ends (its first start plus <c>target.maxMinutes</c>); null without one.</summary>
    public DateTimeOffset? Deadline { get; init; }

    /// <summary>Forward and backward over a batch, in forward passes over as many samples.</summary>
    private const double BackwardFactor = 3;

    private readonly Lock _lock = new();
    private (int Iteration, long Timestamp)? _first, _last;
    private PhaseUpdate? _phase;
    private long _sensitivityStart;
    private double? _secondsPerLayer;
    private long _validationSamples;
    private long _analysisSamples;

    /// <summary>Iteration <paramref name="iteration"/> has just completed.</summary>
    public void OnIteration(int iteration)
    {
        var now = time.GetTimestamp();
        lock (_lock)
        {
            _first ??= (iteration, now);
            _last = (iteration, now);
        }
    }

    public void OnPhase(PhaseUpdate phase)
    {
        var now = time.GetTimestamp();
        lock (_lock)
        {
            if (phase.Phase == RunPhase.Sensitivity)
            {
                if (_phase?.Phase != RunPhase.Sensitivity) _sensitivityStart = now;
                if (phase.Step > 0) _secondsPerLayer = time.GetElapsedTime(_sensitivityStart, now).TotalSeconds / phase.Step;
                if (phase.Samples > 0) _analysisSamples = phase.Samples;
            }
            _phase = phase;
        }
    }

    public void OnSplits(EvaluationSplits splits)
    {
        lock (_lock) _validationSamples = splits.ValidationSamples;
    }

    /// <summary>When the latest iteration completed (<see cref="TimeProvider.GetTimestamp"/>); null before any.</summary>
    public long? LastIterationTimestamp
    {
        get
        {
            lock (_lock) return _last?.Timestamp;
        }
    }

    /// <summary>The time the run still needs at the measured pace, or null while there is no pace to go by.</summary>
    public TimeSpan? Remaining()
    {
        lock (_lock)
        {
            if (_phase?.Phase is RunPhase.Evaluating or RunPhase.Probing && _last is null && _secondsPerLayer is null) return null;
            var seconds = 0.0;
            if (_phase is { Phase: RunPhase.Sensitivity } analysis)
            {
                if (_secondsPerLayer is not { } perLayer) return null;
                seconds += (analysis.Steps - analysis.Step) * perLayer;
            }
            var done = _last is { } last ? last.Iteration + 1 : startIteration;
            var left = Math.Max(0, totalIterations - done);
            if (left > 0)
            {
                if (SecondsPerIteration() is not { } perIteration) return null;
                seconds += left * perIteration;
            }
            if (Deadline is { } deadline) seconds = Math.Min(seconds, Math.Max(0, (deadline - time.GetUtcNow()).TotalSeconds));
            return TimeSpan.FromSeconds(seconds);
        }
    }

    private double? SecondsPerIteration()
    {
        if (_first is { } first && _last is { } last && last.Iteration > first.Iteration)
        {
            return time.GetElapsedTime(first.Timestamp, last.Timestamp).TotalSeconds / (last.Iteration - first.Iteration);
        }
        var analysed = _analysisSamples > 0 ? _analysisSamples : _validationSamples;
        if (_secondsPerLayer is { } perLayer && analysed > 0)
        {
            return perLayer / Sensitivity.Ladder.Count / analysed * batchSize * BackwardFactor;
        }
        return null;
    }
}
