using SurgeryService.Domain.Surgery;
using SurgeryService.Infrastructure.Jobs;

namespace SurgeryService.Api.Tests.Jobs;

/// <summary>The estimate of a run's time left, on a clock the test moves.</summary>
public sealed class JobPaceTests
{
    private sealed class Clock : TimeProvider
    {
        public long Ticks { get; set; }
        public override long TimestampFrequency => TimeSpan.TicksPerSecond;
        public static readonly DateTimeOffset Origin = new(2026, 12, 1, 8, 0, 0, TimeSpan.Zero);
        public override long GetTimestamp() => Ticks;
        public override DateTimeOffset GetUtcNow() => Origin.AddTicks(Ticks);
        public void Advance(double seconds) => Ticks += (long)(seconds * TimeSpan.TicksPerSecond);
    }

    [Fact]
    public void NothingMeasuredMeansNoEstimate()
    {
        var pace = new JobPace(totalIterations: 1000, startIteration: 0, batchSize: 64, new Clock());
        Assert.Null(pace.Remaining());
        pace.OnPhase(new PhaseUpdate(RunPhase.Evaluating));
        Assert.Null(pace.Remaining());
        pace.OnPhase(new PhaseUpdate(RunPhase.Sensitivity, 0, 4));
        Assert.Null(pace.Remaining());
    }

    [Fact]
    public void TheIterationsLeftGoAtTheMeasuredPace()
    {
        var clock = new Clock();
        var pace = new JobPace(totalIterations: 1000, startIteration: 200, batchSize: 64, clock);
        pace.OnPhase(new PhaseUpdate(RunPhase.Stage, 1, 5));
        pace.OnIteration(200);
        clock.Advance(10);
        pace.OnIteration(300); // 0.1 s an iteration; 699 to go after iteration 300
        Assert.Equal(69.9, pace.Remaining()!.Value.TotalSeconds, 6);
        clock.Advance(40);
        pace.OnIteration(400); // 50 s for 200 iterations: 0.25 s an iteration
        Assert.Equal(599 * 0.25, pace.Remaining()!.Value.TotalSeconds, 6);
    }

    [Fact]
    public void DuringTheAnalysisTheLayersLeftAndTheIterationsToComeAreEstimatedFromItsPace()
    {
        var clock = new Clock();
        var pace = new JobPace(totalIterations: 1000, startIteration: 0, batchSize: 64, clock);
        pace.OnSplits(new EvaluationSplits(ValidationSplit.TrainingHoldout, 6400, TestSplit.Whole, 10000));
        pace.OnPhase(new PhaseUpdate(RunPhase.Sensitivity, 0, 4));
        clock.Advance(9);
        pace.OnPhase(new PhaseUpdate(RunPhase.Sensitivity, 1, 4));
        // 9 s a layer: 9 evaluations of 6400 samples, 1/6400 s a sample; an iteration of 64 samples is about 3 passes of them.
        var perIteration = 1.0 / 6400 * 64 * 3;
        Assert.Equal(3 * 9 + 1000 * perIteration, pace.Remaining()!.Value.TotalSeconds, 6);
        clock.Advance(27);
        pace.OnPhase(new PhaseUpdate(RunPhase.Sensitivity, 4, 4));
        Assert.Equal(1000 * perIteration, pace.Remaining()!.Value.TotalSeconds, 6);
    }

    [Fact]
    public void AnAnalysisOnASampleOfTheValidationSplitEstimatesIterationsFromTheSamplesItMeasured()
    {
        var clock = new Clock();
        var pace = new JobPace(totalIterations: 1000, startIteration: 0, batchSize: 64, clock);
        pace.OnSplits(new EvaluationSplits(ValidationSplit.TrainingHoldout, 6400, TestSplit.Whole, 10000));
        pace.OnPhase(new PhaseUpdate(RunPhase.Sensitivity, 0, 4));
        clock.Advance(9);
        // 9 s a layer on 1,600 of the 6,400 validation samples: a sample takes 1/1600 s, four times what the split implies.
        pace.OnPhase(new PhaseUpdate(RunPhase.Sensitivity, 1, 4, Samples: 1600));
        Assert.Equal(3 * 9 + 1000 * (1.0 / 1600 * 64 * 3), pace.Remaining()!.Value.TotalSeconds, 6);
    }

    [Fact]
    public void AJobWithATimeBudgetIsNeverEstimatedToEndPastItsDeadline()
    {
        var clock = new Clock();
        // 1,000 iterations at 0.1 s would take 100 s; the time budget ends 60 s after the start.
        var pace = new JobPace(totalIterations: 1000, startIteration: 0, batchSize: 64, clock) { Deadline = Clock.Origin.AddSeconds(60) };
        pace.OnPhase(new PhaseUpdate(RunPhase.Stage, 1, 6));
        pace.OnIteration(0);
        clock.Advance(10);
        pace.OnIteration(100);
        Assert.Equal(50, pace.Remaining()!.Value.TotalSeconds, 6);
        clock.Advance(55);
        pace.OnIteration(650);
        Assert.Equal(0, pace.Remaining()!.Value.TotalSeconds, 6);
    }

    [Fact]
    public void ASensitivityJobCountsOnlyItsLayers()
    {
        var clock = new Clock();
        var pace = new JobPace(totalIterations: 0, startIteration: 0, batchSize: 64, clock);
        pace.OnPhase(new PhaseUpdate(RunPhase.Sensitivity, 0, 5));
        clock.Advance(4);
        pace.OnPhase(new PhaseUpdate(RunPhase.Sensitivity, 2, 5));
        Assert.Equal(6, pace.Remaining()!.Value.TotalSeconds, 6);
    }
}
