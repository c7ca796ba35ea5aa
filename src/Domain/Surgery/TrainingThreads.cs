using System.Diagnostics;
using static TorchSharp.torch;

namespace SurgeryService.Domain.Surgery;

/// <summary>
/// LibTorch's intra-op thread count for one training run. Fixed when the operator sets one; otherwise measured at the
/// run's start: after a warm-up on one thread, iterations alternate in short rounds between one thread and
/// <see cref="MaxThreads"/>, and the run keeps the extra threads only when their median iteration is at least
/// <see cref="MinSpeedup"/> times faster. A small model gains nothing from a second thread and loses much when OpenMP
/// threads wait on each other while the Api or another job holds the other core (bench -- threads); a large one can earn it.
/// The measurement takes at most <see cref="MaxMeasureSeconds"/> or <see cref="MaxMeasureShare"/> of the run's expected
/// duration, whichever is less: the warm-up times the one-thread iteration, and the rounds are sized from it (up to 4
/// rounds of 25 iterations on each count; fewer and shorter for slow iterations or a short run). A run too short for
/// one iteration on each count inside that budget stays on one thread, unless one iteration takes
/// <see cref="HeavyIterationSeconds"/> or more on one thread: then it takes <see cref="MaxThreads"/>. Such an iteration is
/// made of large kernels, which more threads do speed up, and on a 10 s budget every iteration over about 2.5 s is
/// unmeasurable: VGG11-BN had trained a whole job on one thread and spent 159 s in its final evaluation, against 76 s on
/// two (docs/benchmarks.md#mask-counts-in-double-and-onednn-at-sse41-2026-12-08).
/// Until the first iteration, a run that measures uses every core it may: what comes before it is evaluation in batches
/// of 1,000 samples (the starting model, and a budget job's sensitivity analysis, nine evaluations per layer): with
/// passive waiting, 1.3-1.8x faster alone on every model size, and 0.86-1.04x beside a second process
/// (bench -- threads --evaluate).
/// </summary>
/// <remarks>
/// LibTorch applies a count to the thread that sets it and to threads that have not run a parallel operation yet, so
/// <see cref="Observe"/> and the choice must run on the training thread; observers are called there.
/// The budget is counted from the end of the run's first iteration (whose time includes the run's setup) to the
/// choice; evaluations and checkpoints inside it count, but are kept out of the iteration times.
/// </remarks>
public sealed class TrainingThreads
{
    public const double MinSpeedup = 1.25;

    /// <summary>The longest the measurement may take, in seconds.</summary>
    public const double MaxMeasureSeconds = 10;

    /// <summary>The largest share of the run's expected duration (iterations times the one-thread pace) it may take.</summary>
    public const double MaxMeasureShare = 0.05;

    /// <summary>A one-thread iteration at least this long (seconds) is large kernels: unmeasured, it gets every thread it may.</summary>
    public const double HeavyIterationSeconds = 1;

    private const int MinWarmUp = 2, WarmUp = 20, RoundLength = 25, Rounds = 4;

    /// <summary>The warm-up ends after <see cref="WarmUp"/> iterations or this share of the budget, whichever comes first.</summary>
    private const double WarmUpShare = 0.2;

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

    /// <summary>A measured choice between one thread and <paramref name="maxThreads"/>, whatever this machine's cores.</summary>
    internal static TrainingThreads Measured(int maxThreads) => new(0, Math.Max(1, maxThreads));

    /// <summary>
    /// Sets the starting count on the calling (training) thread and returns the observer to train with: <paramref name="inner"/>,
    /// wrapped when the count is still to be measured. <paramref name="iterations"/> is how many iterations the run will
    /// train (its expected duration bounds the measurement; 0 when unknown). <paramref name="chosen"/> hears the count and
    /// why, once. <paramref name="clock"/> times the iterations (the system's by default).
    /// </summary>
    public ISurgeryObserver Observe(ISurgeryObserver inner, int iterations, Action<int, string> chosen, TimeProvider? clock = null)
    {
        if (FixedThreads > 0 || MaxThreads == 1)
        {
            var threads = FixedThreads > 0 ? FixedThreads : 1;
            set_num_threads(threads);
            chosen(threads, FixedThreads > 0 ? "set by the operator" : "one core per job on this machine");
            return inner;
        }
        set_num_threads(MaxThreads); // the evaluations before the first iteration; the warm-up then starts on one
        return new Measuring(inner, MaxThreads, iterations, chosen, clock ?? TimeProvider.System);
    }

    /// <summary>The measurement's budget in seconds for a run of <paramref name="iterations"/> at <paramref name="secondsPerIteration"/>.</summary>
    public static double Budget(int iterations, double secondsPerIteration) =>
        iterations > 0 ? Math.Min(MaxMeasureSeconds, MaxMeasureShare * iterations * secondsPerIteration) : MaxMeasureSeconds;

    private sealed class Measuring(ISurgeryObserver inner, int maxThreads, int iterations, Action<int, string> chosen, TimeProvider clock)
        : ISurgeryObserver
    {
        private readonly List<double> _warm = [], _one = [], _many = [];
        private long _last = clock.GetTimestamp();
        private long _start;
        private int _seen;
        private int _firstRound = -1, _roundLength, _rounds;
        private double _budget;
        private bool _done;

        public void OnIteration(IterationMetrics metrics)
        {
            inner.OnIteration(metrics);
            if (_done) return;
            var now = clock.GetTimestamp();
            var seconds = clock.GetElapsedTime(_last, now).TotalSeconds;
            _last = now;
            var n = _seen++;
            if (n == 0)
            {
                // The first iteration ran on every core and carries the run's setup: the clock starts after it.
                _start = now;
                set_num_threads(1);
                return;
            }
            var spent = clock.GetElapsedTime(_start, now).TotalSeconds;
            if (_firstRound < 0)
            {
                _warm.Add(seconds);
                var pace = Median(_warm);
                var budget = Budget(iterations, pace);
                if (_warm.Count < MinWarmUp || (_warm.Count < WarmUp && spent < budget * WarmUpShare)) return;
                PlanRounds(n + 1, budget, pace, pace > 0 ? (budget - spent) / pace : 0);
                return;
            }
            (ThreadsOf(n) == 1 ? _one : _many).Add(seconds);
            if (n + 1 < _firstRound + 2 * _rounds * _roundLength && spent < _budget)
            {
                if (ThreadsOf(n + 1) != ThreadsOf(n)) set_num_threads(ThreadsOf(n + 1));
                return;
            }
            Decide(spent);
        }

        public void OnEvaluation(EvaluationMetrics metrics)
        {
            inner.OnEvaluation(metrics);
            _last = clock.GetTimestamp();
        }

        public void OnCheckpointDue(ICheckpointSource source)
        {
            inner.OnCheckpointDue(source);
            _last = clock.GetTimestamp();
        }

        public void OnEvent(SurgeryEvent surgeryEvent) => inner.OnEvent(surgeryEvent);

        /// <summary>Rounds that fit the <paramref name="available"/> iterations left of the budget: up to 4 of 25 on each count.</summary>
        private void PlanRounds(int first, double budget, double pace, double available)
        {
            _budget = budget;
            _firstRound = first;
            _roundLength = (int)Math.Clamp(available / (2 * Rounds), 0, RoundLength);
            _rounds = Rounds;
            if (_roundLength == 0)
            {
                _roundLength = 1;
                _rounds = (int)Math.Clamp(available / 2, 0, Rounds);
            }
            if (_rounds == 0)
            {
                var heavy = pace >= HeavyIterationSeconds;
                var why = Format($"the run is too short to measure: its budget of {budget:F2} s fits no iteration on each count");
                Settle(heavy ? maxThreads : 1,
                    heavy ? why + Format($", and one iteration on one thread takes {pace:F1} s, large kernels that more threads speed up") : why);
                return;
            }
            set_num_threads(ThreadsOf(first));
        }

        private void Decide(double spent)
        {
            if (_one.Count == 0 || _many.Count == 0)
            {
                Settle(1, Format($"the measurement ran out of its {_budget:F2} s before timing both counts"));
                return;
            }
            double one = Median(_one), many = Median(_many);
            Settle(one / many >= MinSpeedup ? maxThreads : 1, Format(
                $"measured in {spent:F1} s: 1 thread {one * 1000:F2} ms per iteration, {maxThreads} threads {many * 1000:F2} ms (more threads need {MinSpeedup}x)"));
        }

        private void Settle(int threads, string why)
        {
            _done = true;
            set_num_threads(threads);
            chosen(threads, why);
        }

        private int ThreadsOf(int n) => (n - _firstRound) / _roundLength % 2 == 0 ? 1 : maxThreads;

        private static string Format(FormattableString text) => FormattableString.Invariant(text);

        private static double Median(List<double> values)
        {
            var sorted = values.Order().ToList();
            return (sorted[(sorted.Count - 1) / 2] + sorted[sorted.Count / 2]) / 2;
        }
    }
}
