using SurgeryService.Domain.Surgery;
using static TorchSharp.torch;

namespace SurgeryService.Domain.Tests.Surgery;

public sealed class TrainingThreadsTests : IDisposable
{
    public void Dispose() => set_num_threads(1); // this assembly trains with one thread (TestSetup)

    [Fact]
    public void OperatorsCountIsAppliedAndNothingIsMeasured()
    {
        var inner = new Recorder();
        var reports = new List<(int Threads, string Why)>();

        var observer = TrainingThreads.For(3).Observe(inner, 1000, (threads, why) => reports.Add((threads, why)));

        Assert.Same(inner, observer);
        Assert.Equal(3, get_num_threads());
        Assert.Equal([(3, "set by the operator")], reports);
    }

    [Fact]
    public void MeasuringSettlesOnOneThreadOrEveryCoreAndReportsOnce()
    {
        var threads = TrainingThreads.For(0);
        var inner = new Recorder();
        var reports = new List<int>();
        var observer = threads.Observe(inner, 500, (count, _) => reports.Add(count));

        for (var i = 0; i < 500; i++) observer.OnIteration(new IterationMetrics(i, 1, 0.01, []));

        Assert.Equal(500, inner.Iterations); // every event still reaches the job's own observer
        var chosen = Assert.Single(reports);
        Assert.Contains(chosen, new[] { 1, threads.MaxThreads });
        Assert.Equal(chosen, get_num_threads());
    }

    [Fact]
    public void EvaluatesOnEveryCoreBeforeTheFirstIterationThenWarmsUpOnOne()
    {
        var threads = TrainingThreads.For(0);
        var observer = threads.Observe(new Recorder(), 500, (_, _) => { });

        Assert.Equal(threads.MaxThreads, get_num_threads()); // the starting model's evaluations, the sensitivity analysis
        observer.OnIteration(new IterationMetrics(0, 1, 0.01, []));
        Assert.Equal(1, get_num_threads()); // the measurement's warm-up and first round
    }

    [Fact]
    public void ConcurrentJobsShareTheCores()
    {
        Assert.Equal(1, TrainingThreads.For(0, concurrentJobs: Environment.ProcessorCount).MaxThreads);
        Assert.Equal(Environment.ProcessorCount, TrainingThreads.For(0).MaxThreads);
    }

    [Theory]
    [InlineData(100, 40, 100_000)] // a slow model that earns the second thread, in a long run: the 10 s cap
    [InlineData(100, 150, 100_000)] // one that does not
    [InlineData(100, 40, 1_000)] // a 100 s run: 5% of it, 5 s
    [InlineData(1, 0.5, 1_000_000)] // a fast model: the full 4 rounds of 25 fit easily
    [InlineData(100, 5_000, 100_000)] // the second thread far slower than the warm-up predicts: stopped at the budget
    public void TheChoiceIsTheFasterCountAndTakesAtMostItsBudgetAfterTheFirstIteration(double oneMs, double manyMs, int iterations)
    {
        var clock = new PacedClock(oneMs, manyMs);
        var threads = TrainingThreads.Measured(2);
        var reports = new List<(int Threads, double At)>();
        double? firstIterationEnd = null;
        var observer = threads.Observe(new Recorder(), iterations, (count, _) => reports.Add((count, clock.Seconds)), clock);

        for (var i = 0; i < 1000 && reports.Count == 0; i++)
        {
            clock.Iterate();
            firstIterationEnd ??= clock.Seconds;
            observer.OnIteration(new IterationMetrics(i, 1, 0.01, []));
        }

        var (chosen, at) = Assert.Single(reports);
        Assert.Equal(manyMs * TrainingThreads.MinSpeedup <= oneMs ? 2 : 1, chosen);
        Assert.Equal(chosen, get_num_threads());
        var budget = TrainingThreads.Budget(iterations, oneMs / 1000);
        Assert.True(budget <= TrainingThreads.MaxMeasureSeconds && budget <= iterations * oneMs / 1000 * TrainingThreads.MaxMeasureShare);
        // The hard stop looks at the clock after each iteration: at most one iteration past the budget.
        Assert.InRange(at - firstIterationEnd!.Value, 0, budget + Math.Max(oneMs, manyMs) / 1000);
        Assert.True(clock.Iterations[2] > 0 && clock.Iterations[1] > 0, "both counts were timed");
    }

    [Theory]
    [InlineData(10, 1, 50, 1)] // a small model in a short run: its 0.025 s budget times nothing, and it stays on one thread
    [InlineData(3_000, 1_600, 20_000, 2)] // 3 s per iteration: the 10 s budget holds the warm-up only; large kernels take both cores
    public void ARunTooShortToMeasureStaysOnOneThreadUnlessItsIterationsAreLargeKernels(double oneMs, double manyMs, int iterations, int expected)
    {
        var clock = new PacedClock(oneMs, manyMs);
        var reports = new List<(int Threads, string Why)>();
        var observer = TrainingThreads.Measured(2).Observe(new Recorder(), iterations, (count, why) => reports.Add((count, why)), clock);

        for (var i = 0; i < 10; i++)
        {
            clock.Iterate();
            observer.OnIteration(new IterationMetrics(i, 1, 0.01, []));
        }

        var (chosen, why) = Assert.Single(reports);
        Assert.Equal(expected, chosen);
        Assert.Equal(expected, get_num_threads());
        Assert.Contains("too short to measure", why);
        // Nothing was spent measuring: the other count ran only what came before the choice (the first iteration on
        // both cores, the two warm-up iterations on one).
        Assert.Equal(expected == 1 ? 1 : 2, expected == 1 ? clock.Iterations[2] : clock.Iterations[1]);
        if (expected == 2) Assert.Contains("takes 3.0 s", why);
    }

    [Fact]
    public void EvaluationsAreKeptOutOfTheIterationTimes()
    {
        var clock = new PacedClock(100, 90);
        var reports = new List<int>();
        var observer = TrainingThreads.Measured(2).Observe(new Recorder(), 100_000, (count, _) => reports.Add(count), clock);

        for (var i = 0; i < 1000 && reports.Count == 0; i++)
        {
            clock.Iterate();
            observer.OnIteration(new IterationMetrics(i, 1, 0.01, []));
            if (get_num_threads() == 1)
            {
                clock.Advance(0.3); // an evaluation after every iteration on one thread: counted, one thread would look 4x slower
                observer.OnEvaluation(new EvaluationMetrics(i, 1, 0.1, null));
            }
        }

        Assert.Equal([1], reports); // 100 against 90 ms is under MinSpeedup
    }

    /// <summary>A clock that advances by an iteration's time at the current LibTorch thread count.</summary>
    private sealed class PacedClock(double oneMs, double manyMs) : TimeProvider
    {
        private long _microseconds;

        public Dictionary<int, int> Iterations { get; } = new() { [1] = 0, [2] = 0 };

        public double Seconds => _microseconds / 1e6;

        public override long TimestampFrequency => 1_000_000;

        public override long GetTimestamp() => _microseconds;

        public void Iterate()
        {
            var threads = get_num_threads() == 1 ? 1 : 2;
            Iterations[threads]++;
            _microseconds += (long)((threads == 1 ? oneMs : manyMs) * 1000);
        }

        public void Advance(double seconds) => _microseconds += (long)(seconds * 1e6);
    }

    private sealed class Recorder : ISurgeryObserver
    {
        public int Iterations { get; private set; }
        public void OnIteration(IterationMetrics metrics) => Iterations++;
        public void OnEvaluation(EvaluationMetrics metrics) { }
        public void OnCheckpointDue(ICheckpointSource source) { }
    }
}
