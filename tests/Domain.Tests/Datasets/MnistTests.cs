using SurgeryService.Domain.Datasets;
using SurgeryService.Domain.Models;
using SurgeryService.Domain.Surgery;
using SurgeryService.Domain.Tests.Surgery;
using SurgeryService.Tests.Shared;
using static TorchSharp.torch;

namespace SurgeryService.Domain.Tests.Datasets;

/// <summary>On the real MNIST files that scripts/test.sh puts in place (SURGERY_MNIST_DIR).</summary>
public class MnistTests
{
    [Fact]
    public void LoadsTheFourOriginalFiles()
    {
        var (train, test) = Mnist.Load(TestMnist.Directory);
        using var _ = train;
        using var __ = test;

        Assert.Equal(new long[] { 60000, 1, 28, 28 }, train.Inputs.shape);
        Assert.Equal(new long[] { 10000, 1, 28, 28 }, test.Inputs.shape);
        Assert.Equal(10, train.ClassCount);
        Assert.Equal(ScalarType.Int64, train.Labels.dtype);
        Assert.Equal(255f, train.Inputs.max().item<float>());
        Assert.Equal(5L, train.Labels[0].item<long>()); // the first training digit is a 5
        Assert.Equal(7L, test.Labels[0].item<long>()); // the first test digit is a 7
    }

    [Fact]
    public void LeNet300100OnAnMnistSubsetIsPrunedAndKeepsItsAccuracy()
    {
        var (fullTrain, fullTest) = Mnist.Load(TestMnist.Directory);
        using var train = Subset(fullTrain, 6000);
        using var test = Subset(fullTest, 1000);
        fullTrain.Dispose();
        fullTest.Dispose();
        manual_seed(5);
        using var model = Architectures.Create(Architectures.LeNet300100);
        var dense = new SurgerySettings { Iterations = 500, LearningRate = 0.05, LrPolicy = LearningRatePolicy.Fixed, EvalInterval = 10000 };
        double denseAccuracy;
        using (var trainer = new SurgeryTrainer(model, [], dense))
        {
            denseAccuracy = trainer.Run(train, test, new Fixtures.RecordingObserver()).After!.Top1;
        }

        using var surgery = new SurgeryTrainer(model, PrunableLayers.Discover(model),
            dense with { Iterations = 600, CRate = 2, FcIterStop = 500 });
        var outcome = surgery.Run(train, test, new Fixtures.RecordingObserver());

        Assert.True(denseAccuracy > 0.9, $"dense accuracy {denseAccuracy:P1}");
        Assert.True(outcome.Compression >= 10, $"compression {outcome.Compression:F1}x");
        Assert.True(outcome.After!.Top1 >= denseAccuracy - 0.02, $"accuracy {denseAccuracy:P1} -> {outcome.After.Top1:P1}");
    }

    private static TensorDataset Subset(TensorDataset full, int count) =>
        new(full.Inputs.narrow(0, 0, count).div(255f), full.Labels.narrow(0, 0, count).clone(), full.ClassCount);
}
