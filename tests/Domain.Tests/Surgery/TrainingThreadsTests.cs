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

        var observer = TrainingThreads.For(3).Observe(inner, (threads, why) => reports.Add((threads, why)));

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
        var observer = threads.Observe(inner, (count, _) => reports.Add(count));

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
        var observer = threads.Observe(new Recorder(), (_, _) => { });

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

    private sealed class Recorder : ISurgeryObserver
    {
        public int Iterations { get; private set; }
        public void OnIteration(IterationMetrics metrics) => Iterations++;
        public void OnEvaluation(EvaluationMetrics metrics) { }
        public void OnCheckpointDue(ICheckpointSource source) { }
    }
}
