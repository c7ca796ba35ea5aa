using SurgeryService.Domain.Surgery;
using Xunit.Abstractions;
using static SurgeryService.Domain.Tests.Surgery.Fixtures;

namespace SurgeryService.Domain.Tests.Surgery;

/// <summary>
/// The budget search under <c>target.maxMinutes</c>, on a clock that moves one second per training iteration and not
/// otherwise: the pace is exactly 1 s per iteration, and the evaluations, the analysis and the reserve take no time.
/// </summary>
public sealed class TimeBudgetTests(ITestOutputHelper log) : TrainedMlpTests(log)
{
    /// <summary>A clock the test moves.</summary>
    private sealed class Clock : TimeProvider
    {
        private static readonly DateTimeOffset Origin = new(2026, 12, 1, 8, 0, 0, TimeSpan.Zero);
        private long _ticks;

        public override DateTimeOffset GetUtcNow() => Origin.AddTicks(_ticks);
        public override long TimestampFrequency => TimeSpan.TicksPerSecond;
        public override long GetTimestamp() => _ticks += (long)(SecondsPerRead * TimeSpan.TicksPerSecond);

        /// <summary>Seconds each timestamp read moves the clock: time that passes while the search measures something.</summary>
        public double SecondsPerRead { get; set; }
        public void Advance(double seconds) => _ticks += (long)(seconds * TimeSpan.TicksPerSecond);
    }

    /// <summary>600 iterations: stages of 80 from iteration 0 while they fit in 480, then a fine-tune of 120.</summary>
    private static SurgerySettings BudgetSettings(double? maxMinutes) => Settings(600) with
    {
        CRate = null,
        EvalInterval = 50,
        Target = new SurgeryTarget { MaxAccuracyDrop = 1.0, MaxMinutes = maxMinutes },
    };

    private static RecordingObserver Paced(Clock clock, Action<IterationMetrics>? then = null) =>
        new() { OnEachIteration = m => { clock.Advance(1); then?.Invoke(m); } };

    [Fact]
    public void ATimeBudgetTooShortForMaxIterationsShortensTheSearchAndStillDeliversAStateWithinBudget()
    {
        using var model = TrainedModel();
        var settings = BudgetSettings(maxMinutes: 1);
        using var trainer = new SurgeryTrainer(model, PrunableLayers.Discover(model), settings);
        var clock = new Clock();
        var observer = Paced(clock);

        var outcome = new BudgetSearch(trainer, settings, settings.Target!) { Clock = clock }.Run(train, validation, test, observer);

        var report = outcome.Search!;
        foreach (var e in observer.Events) output.WriteLine($"{e.Iteration} {e.Kind}: {e.Message}");
        // 60 s at 1 s per iteration: 60 iterations of 600. Stage 1 was planned for 80 before any pace was measured; at
        // iteration 20 the pace says 60 in all, so it ends at 48 and leaves a fifth, 12, to the fine-tune.
        Assert.Equal(60, outcome.Iterations);
        Assert.Equal(Enumerable.Range(0, 60), observer.Iterations.Select(m => m.Iteration));
        var stage = Assert.Single(report.Stages);
        Assert.Equal((0, 48), (stage.Start, stage.End));
        Assert.NotNull(stage.Accepted); // judged on validation like any stage
        Assert.Equal((48, 60), (report.FineTuneStart, report.FineTuneEnd));
        Assert.Contains(observer.Events, e => e.Iteration == 20 && e.Message.StartsWith("stage 1: the time budget moves its end from iteration 80 to 48"));
        var time = report.TimeBudget!;
        Assert.True(time.Limited);
        Assert.Equal(1.0, time.SecondsPerIteration!.Value, 9);
        Assert.Equal(60, time.PlannedIterations);
        Assert.Contains(observer.Events, e => e.Kind == SurgeryEventKind.Warning
            && e.Message.StartsWith("the time budget of 1 minutes allowed 60 of 600 iterations"));
        if (report.BudgetProblem is { } problem) Assert.Contains("the time budget of 1 minutes allowed 60 of 600 iterations", problem);
        // What is delivered is the best state within the budget that the time allowed.
        Assert.True(report.ValidationTop1After >= report.Floor(0.01), $"validation top-1 {report.ValidationTop1After} under the floor");
        var candidates = report.Stages.Where(s => s.Accepted == true).Select(s => s.Compression!.Value)
            .Append(report.OneShot is { Accepted: true } o ? o.Compression!.Value : 1);
        Assert.Equal(candidates.Max(), outcome.Compression, 6);
    }

    [Fact]
    public void AnAnalysisTheTimeBudgetCannotPayForMeasuresTheLayersOnASampleAndJudgesOnTheWholeSplit()
    {
        BudgetSearch Search(double maxMinutes, out SurgeryOutcome outcome, out RecordingObserver observer)
        {
            using var model = TrainedModel();
            var settings = BudgetSettings(maxMinutes);
            using var trainer = new SurgeryTrainer(model, PrunableLayers.Discover(model), settings);
            // Each of the starting model's evaluations (256 validation, then 256 test samples) takes 10 s, so every layer's
            // ladder of 9 evaluations on the whole validation split would take 90 s; then the analysis itself is free.
            var clock = new Clock { SecondsPerRead = 10 };
            var seen = new RecordingObserver
            {
                OnEachIteration = _ => clock.Advance(1),
                OnEachPhase = p => { if (p.Phase == RunPhase.Sensitivity) clock.SecondsPerRead = 0; },
            };
            var search = new BudgetSearch(trainer, settings, settings.Target!) { Clock = clock, MinAnalysisSamples = 64 };
            outcome = search.Run(train, validation, test, seen);
            observer = seen;
            return search;
        }

        Search(maxMinutes: 10, out var short_, out var shortObserver);
        Search(maxMinutes: 600, out var ample, out var ampleObserver);

        foreach (var e in shortObserver.Events) output.WriteLine($"{e.Iteration} {e.Kind}: {e.Message}");
        // 10 minutes leave about 500 s after the evaluations and the reserve; 20% of that pays for about half the split.
        var sampled = short_.Search!.SensitivitySamples!.Value;
        Assert.InRange(sampled, 64, 255);
        Assert.Contains(shortObserver.Events, e => e.Message.StartsWith("the analysis would take up to ")
            && e.Message.Contains($"on a seeded sample of {sampled} of them (every candidate is still judged on all 256)"));
        Assert.Equal(256, short_.Search.ValidationSamples);
        Assert.All(short_.Search.Stages, s => Assert.NotNull(s.ValidationTop1));
        Assert.True(short_.Search.ValidationTop1After >= short_.Search.Floor(0.01));
        // With time to spare, the whole split.
        Assert.Equal(256, ample.Search!.SensitivitySamples);
        Assert.DoesNotContain(ampleObserver.Events, e => e.Message.StartsWith("the analysis would take up to "));
    }

    [Fact]
    public void AnAmpleTimeBudgetChangesNothing()
    {
        SurgeryOutcome Search(double? maxMinutes, out RecordingObserver observer)
        {
            using var model = TrainedModel();
            var settings = BudgetSettings(maxMinutes);
            using var trainer = new SurgeryTrainer(model, PrunableLayers.Discover(model), settings);
            var clock = new Clock();
            observer = Paced(clock);
            return new BudgetSearch(trainer, settings, settings.Target!) { Clock = clock }.Run(train, validation, test, observer);
        }

        var free = Search(maxMinutes: null, out var freeObserver);
        var timed = Search(maxMinutes: 600, out var timedObserver); // 36,000 s for 600 iterations at 1 s

        Assert.Null(free.Search!.TimeBudget);
        var time = timed.Search!.TimeBudget!;
        Assert.False(time.Limited);
        Assert.Equal(600, time.PlannedIterations);
        Assert.Equal(600, timed.Iterations);
        Assert.Equal(free.Search.Stages.Select(s => (s.Start, s.End, s.Compression, s.Accepted)),
            timed.Search.Stages.Select(s => (s.Start, s.End, s.Compression, s.Accepted)));
        Assert.Equal((free.Kept, free.Search.ValidationTop1After, free.Search.Delivered),
            (timed.Kept, timed.Search.ValidationTop1After, timed.Search.Delivered));
        Assert.Equal(freeObserver.Iterations.Select(m => m.Loss), timedObserver.Iterations.Select(m => m.Loss));
        Assert.DoesNotContain(timedObserver.Events, e => e.Kind == SurgeryEventKind.Warning || e.Message.Contains("the time budget"));
    }

    [Fact]
    public void AResumedSearchCountsItsTimeBudgetFromTheFirstStartAndKeepsItsPace()
    {
        var settings = BudgetSettings(maxMinutes: 1);
        var clock = new Clock();
        using var firstModel = TrainedModel();
        var checkpoint = new MemoryStream();
        using (var first = new SurgeryTrainer(firstModel, PrunableLayers.Discover(firstModel), settings))
        {
            using var cts = new CancellationTokenSource();
            var search = new BudgetSearch(first, settings, settings.Target!) { Clock = clock };
            var partial = search.Run(train, validation, test, Paced(clock, m => { if (m.Iteration == 29) cts.Cancel(); }),
                cancellationToken: cts.Token);
            Assert.True(partial.Cancelled);
            Assert.Equal(30, first.Iteration);
            search.SaveCheckpoint(checkpoint);
        }
        clock.Advance(10); // the worker was lost: 10 s pass before another resumes the job

        checkpoint.Position = 0;
        using var model = TrainedModel();
        using var trainer = new SurgeryTrainer(model, PrunableLayers.Discover(model), settings);
        var resumed = new BudgetSearch(trainer, settings, settings.Target!) { Clock = clock, StartedAt = clock.GetUtcNow() };
        resumed.LoadCheckpoint(checkpoint);
        var observer = Paced(clock);
        var outcome = resumed.Run(train, validation, test, observer);

        foreach (var e in observer.Events) output.WriteLine($"{e.Iteration} {e.Kind}: {e.Message}");
        // The budget counts from the first start (StartedAt only sets where a new search counts from), and the 30
        // iterations measured before the loss pace the resumed attempt at once: 20 s are left at iteration 30, so the
        // search ends at 50, and stage 1 at 40 to leave the fine-tune its fifth.
        Assert.Equal(50, outcome.Iterations);
        Assert.Equal(Enumerable.Range(30, 20), observer.Iterations.Select(m => m.Iteration));
        Assert.Equal(40, Assert.Single(outcome.Search!.Stages).End);
        Assert.Equal(50, outcome.Search.FineTuneEnd);
        Assert.Contains(observer.Events, e => e.Kind == SurgeryEventKind.Warning && e.Message.StartsWith("the time budget of 1 minutes allowed 50 of 600"));
    }
}
