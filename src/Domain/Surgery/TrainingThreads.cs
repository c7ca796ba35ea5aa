using System.Diagnostics;
using static TorchSharp.torch;

namespace SurgeryService.Domain.Surgery;

/// <summary>
/// LibTorch's intra-op thread count for one training run. Fixed when the operator sets one; otherwise measured at the
/// run's start: after a warm-up, iterations alternate in short rounds between one thread and <see cref="MaxThreads"/>,
/// and the run keeps the extra threads only when their median iteration is at least <see cref="MinSpeedup"/> times
/// faster. A small model gains nothing from a second thread and loses much when OpenMP threads wait on each other
/// while the Api or another job holds the other core (bench -- threads); a large one can earn it.
/// Until the first iteration, a run that measures uses every core it may: what comes before it is evaluation in batches
/// of 1,000 samples (the starting model, and a budget job's sensitivity analysis, nine evaluations per layer): with
/// passive waiting, 1.3-1.8x faster alone on every model size, and 0.86-1.04x beside a second process
/// (bench -- threads --evaluate).
/// </summary>
/// <remarks>
/// LibTorch applies a count to the thread that sets it and to threads that have not run a parallel operation yet, so
/// <see cref="Observe"/> and the choice must run on the training thread; observers are called there.
/// </remarks>
public sealed class TrainingThreads
{
    public const double MinSpeedup = 1.25;
    private const int WarmUp = 20, RoundLength = 25, Rounds = 4;

    private TrainingThreads(int fixedThreads, int maxThreads)
    {
        FixedThreads = fixedThreads;
        MaxThreads = maxThreads;
    }

    /// <summary>The operator's count, or 0 to measure.</summary>
    public int FixedThreads { get; }

    public int MaxThreads { get; }

    /// <summary>
    /// <paramref name="fixedThreads"/> when positive; otherwise measured between one thread and this machine's cores
    /// shared among <paramref name="concurrentJobs"/>.
    /// </summary>
    public static TrainingThreads For(int fixedThreads, int concurrentJobs = 1) =>
        new(Math.Max(0, fixedThreads), Math.Max(1, Environment.ProcessorCount / Math.Max(1, concurrentJobs)));

    /// <summary>
    /// Sets the starting count on the calling (training) thread and returns the observer to train with: <paramref name="inner"/>,
    /// wrapped when the count is still to be measured. <paramref name="chosen"/> hears the count and why, once.
    /// </summary>
    public ISurgeryObserver Observe(ISurgeryObserver inner, Action<int, string> chosen)
    {
        if (FixedThreads > 0 || MaxThreads == 1)
        {
            var threads = FixedThreads > 0 ? FixedThreads : 1;
            set_num_threads(threads);
            chosen(threads, FixedThreads > 0 ? "set by the operator" : "one core per job on this machine");
            return inner;
        }
        set_num_threads(MaxThreads); // the evaluations before the first iteration; the warm-up then starts on one
        return new Measuring(inner, MaxThreads, chosen);
    }

    private sealed class Measuring(ISurgeryObserver inner, int maxThreads, Action<int, string> chosen) : ISurgeryObserver
    {
        private readonly List<double> _one = [], _many = [];
        private long _last = Stopwatch.GetTimestamp();
        private int _seen;
        private bool _done;

        public void OnIteration(IterationMetrics metrics)
        {
            inner.OnIteration(metrics);
            if (_done) return;
            var now = Stopwatch.GetTimestamp();
            var n = _seen++;
            if (n >= WarmUp) (ThreadsOf(n) == 1 ? _one : _many).Add(Stopwatch.GetElapsedTime(_last, now).TotalMilliseconds);
            _last = now;
            if (n + 1 < WarmUp + 2 * Rounds * RoundLength)
            {
                if (n == 0 || ThreadsOf(n + 1) != ThreadsOf(n)) set_num_threads(ThreadsOf(n + 1));
                return;
            }
            _done = true;
            double one = Median(_one), many = Median(_many);
            var threads = one / many >= MinSpeedup ? maxThreads : 1;
            set_num_threads(threads);
            chosen(threads, string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $"measured: 1 thread {one:F2} ms per iteration, {maxThreads} threads {many:F2} ms (more threads need {MinSpeedup}x)"));
        }

        public void OnEvaluation(EvaluationMetrics metrics) => inner.OnEvaluation(metrics);

        public void OnCheckpointDue(ICheckpointSource source) => inner.OnCheckpointDue(source);

        public void OnEvent(SurgeryEvent surgeryEvent) => inner.OnEvent(surgeryEvent);

        private int ThreadsOf(int n) => n < WarmUp || (n - WarmUp) / RoundLength % 2 == 0 ? 1 : maxThreads;

        private static double Median(List<double> values)
        {
            var sorted = values.Order().ToList();
            return (sorted[(sorted.Count - 1) / 2] + sorted[sorted.Count / 2]) / 2;
        }
    }
}
