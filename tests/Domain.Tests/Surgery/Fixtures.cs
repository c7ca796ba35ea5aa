using SurgeryService.Domain.Datasets;
using SurgeryService.Domain.Surgery;
using Linear = TorchSharp.Modules.Linear;
using Parameter = TorchSharp.Modules.Parameter;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace SurgeryService.Domain.Tests.Surgery;

/// <summary>Small models and synthetic data for the engine's tests.</summary>
internal static class Fixtures
{
    /// <summary>
    /// A 2-layer MLP with dropout: fc1 (inputs x hidden) and fc2 (hidden x classes). Its dropout draws from the
    /// trainer's generator, as the ONNX graphs' Dropout does.
    /// </summary>
    public sealed class Mlp : Module<Tensor, Tensor>
    {
        private readonly Linear fc1;
        private readonly Linear fc2;

        public Mlp(int inputs, int hidden, int classes) : base("mlp")
        {
            fc1 = Linear(inputs, hidden);
            fc2 = Linear(hidden, classes);
            RegisterComponents();
        }

        public override Tensor forward(Tensor input)
        {
            using var scope = NewDisposeScope();
            var x = functional.relu(fc1.forward(input.flatten(1)));
            if (training) x = TrainingRandom.Dropout(x, 0.2);
            return fc2.forward(x).MoveToOuterDisposeScope();
        }
    }

    /// <summary>
    /// Linearly separable classes: each class is a random prototype in a few informative dimensions, plus noise in
    /// the rest; many input weights are useless, so the network can be pruned hard.
    /// </summary>
    public static (TensorDataset Train, TensorDataset Test) Blobs(int inputs = 32, int classes = 4, int train = 512, int test = 256, int seed = 7)
    {
        using var scope = NewDisposeScope();
        using var generator = new Generator((ulong)seed);
        var prototypes = randn(classes, inputs, generator: generator) * 2;
        prototypes[.., 8..] = zeros(classes, inputs - 8);
        TensorDataset Make(int n)
        {
            var labels = randint(0, classes, n, generator: generator);
            var x = prototypes.index_select(0, labels) + randn(n, inputs, generator: generator) * 0.5;
            return new TensorDataset(x.DetachFromDisposeScope(), labels.DetachFromDisposeScope(), classes);
        }
        return (Make(train), Make(test));
    }

    public static SurgerySettings Settings(int iterations = 200) => new()
    {
        Iterations = iterations,
        BatchSize = 32,
        LearningRate = 0.05,
        LrPolicy = LearningRatePolicy.Fixed,
        WeightDecay = 0,
        CRate = 0.5,
        Gamma = 1e-3,
        EvalInterval = 1000,
        Seed = 3,
    };

    public static Parameter Parameter(params float[] values) => new(tensor(values));

    public sealed class RecordingObserver : ISurgeryObserver
    {
        public List<IterationMetrics> Iterations { get; } = [];
        public List<EvaluationMetrics> Evaluations { get; } = [];
        public List<SurgeryEvent> Events { get; } = [];

        /// <summary>Phases as they were entered, each with the number of iterations done by then.</summary>
        public List<(PhaseUpdate Phase, int IterationsDone)> Phases { get; } = [];

        public List<double> Deliverables { get; } = [];
        public List<EvaluationSplits> Splits { get; } = [];
        public Action<IterationMetrics>? OnEachIteration { get; init; }
        public Action<ICheckpointSource>? OnCheckpoint { get; init; }
        public Action<SurgeryEvent>? OnEachEvent { get; init; }
        public Action<PhaseUpdate>? OnEachPhase { get; init; }

        public void OnIteration(IterationMetrics metrics)
        {
            Iterations.Add(metrics);
            OnEachIteration?.Invoke(metrics);
        }

        public void OnEvaluation(EvaluationMetrics metrics) => Evaluations.Add(metrics);
        public void OnPhase(PhaseUpdate phase)
        {
            Phases.Add((phase, Iterations.Count));
            OnEachPhase?.Invoke(phase);
        }
        public void OnDeliverable(double compression) => Deliverables.Add(compression);
        public void OnSplits(EvaluationSplits splits) => Splits.Add(splits);
        public void OnCheckpointDue(ICheckpointSource source) => OnCheckpoint?.Invoke(source);
        public void OnEvent(SurgeryEvent surgeryEvent)
        {
            Events.Add(surgeryEvent);
            OnEachEvent?.Invoke(surgeryEvent);
        }
    }

    public static float[] Values(Tensor t) => t.detach().cpu().to(float32).data<float>().ToArray();
}
