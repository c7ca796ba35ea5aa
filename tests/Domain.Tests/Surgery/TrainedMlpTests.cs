using SurgeryService.Domain.Datasets;
using SurgeryService.Domain.Surgery;
using Xunit.Abstractions;
using static SurgeryService.Domain.Tests.Surgery.Fixtures;
using static TorchSharp.torch;

namespace SurgeryService.Domain.Tests.Surgery;

/// <summary>
/// Tests that start the budget search from a trained model: 768 separable training blobs (256 of them held out to
/// validate) and 256 test blobs, and a small MLP trained on them.
/// </summary>
public abstract class TrainedMlpTests : IDisposable
{
    protected readonly ITestOutputHelper output;
    protected readonly TensorDataset train;
    protected readonly TensorDataset validation;
    protected readonly TensorDataset test;

    protected TrainedMlpTests(ITestOutputHelper output)
    {
        this.output = output;
        var (all, held) = Blobs(train: 768, test: 256);
        (train, validation) = all.Split(256, seed: 5);
        all.Dispose();
        test = held;
    }

    public void Dispose()
    {
        train.Dispose();
        validation.Dispose();
        test.Dispose();
        GC.SuppressFinalize(this);
    }

    /// <summary>A trained MLP (the budget search starts from a trained model).</summary>
    private protected Mlp TrainedModel()
    {
        manual_seed(11);
        var model = new Mlp(32, 24, 4);
        using var dense = new SurgeryTrainer(model, [], Settings(300) with { CRate = null });
        dense.Run(train, test, new RecordingObserver());
        return model;
    }
}
