using SurgeryService.Domain.Jobs;
using SurgeryService.Domain.Models;
using SurgeryService.Domain.Surgery;
using SurgeryService.Domain.Tests.Onnx;

namespace SurgeryService.Domain.Tests.Jobs;

public class JobMemoryEstimateTests
{
    [Fact]
    public void InspectionMeasuresTheBytesOfEveryValueOneSampleComputes()
    {
        var g = new OnnxGraphBuilder(13);
        var x = g.Input("x", -1, 1, 8, 8);
        var conv = g.Named("conv", "Conv", [x, g.Init("conv.weight", [4, 1, 3, 3]), g.Init("conv.bias", [4])]); // [4, 6, 6]
        var relu = g.Node("Relu", [conv]);
        var flat = g.Node("Flatten", [relu]); // [144]
        var fc = g.Named("fc", "Gemm", [flat, g.Init("fc.weight", [10, 144]), g.Init("fc.bias", [10])], ("transB", 1L));

        var inspection = ModelFormats.Inspect(g.Bytes(fc), architecture: null);

        Assert.Equal(4 * (64 + 144 + 144 + 144 + 10), inspection.ActivationBytesPerSample);
    }

    [Fact]
    public void ASymbolicSampleShapeIsNotMeasured()
    {
        var g = new OnnxGraphBuilder(13);
        var x = g.Input("x", -1, -1);
        var y = g.Node("Relu", [x]);

        Assert.Equal(0, ModelFormats.Inspect(g.Bytes(y), architecture: null).ActivationBytesPerSample);
    }

    [Fact]
    public void BuiltInArchitecturesCountTheirLayersOutputs()
    {
        var inspection = ModelFormats.Inspect(TorchSharpWeights.Save(Architectures.Create(Architectures.LeNet300100)), Architectures.LeNet300100);

        Assert.Equal(4 * (784 + 300 + 300 + 100 + 100 + 10), inspection.ActivationBytesPerSample);
    }

    [Fact]
    public void TheEstimateIsTheWeightMultipleAndTheLargerBatchOfActivationsAndTheDatasetTwice()
    {
        var estimate = JobMemoryEstimate.Of(parameters: 1_000_000, activationBytesPerSample: 10_000, batchSize: 64,
            trainSamples: 5000, testSamples: 500, sampleElements: 784);

        Assert.Equal((long)(JobMemoryEstimate.WeightMultiple * 4_000_000), estimate.WeightBytes);
        Assert.Equal(2L * 10_000 * 64, estimate.ActivationBytes); // 2 x 64 trained; 128 evaluated hold as much
        Assert.Equal(2L * 5500 * 784 * 4, estimate.DatasetBytes);
        Assert.Equal(estimate.WeightBytes + estimate.ActivationBytes + estimate.DatasetBytes, estimate.TotalBytes);
    }

    [Theory]
    [InlineData(200_000_000, OptimizerChoice.Sgd, null)]
    [InlineData(200_000_000, OptimizerChoice.Adam, "or optimizer 'sgd'")]
    [InlineData(240_000_000, OptimizerChoice.Sgd, "use a model with fewer parameters")]
    public void AModelWhoseTrainingStateOutgrowsOneArrayIsRefusedAtSubmitNamingWhatToChange(long parameters, OptimizerChoice optimizer, string? says)
    {
        var problem = JobMemoryEstimate.SnapshotProblem(parameters, optimizer);

        if (says is null)
        {
            Assert.Null(problem);
            return;
        }
        Assert.Contains(says, problem);
        Assert.Contains($"{parameters:N0} parameters with {optimizer.ToString().ToLowerInvariant()}", problem);
    }

    [Fact]
    public void OverTheLimitTheProblemNamesTheEstimateAndTheBatchSizeWhenActivationsDominate()
    {
        var big = JobMemoryEstimate.Of(1_000, 1_000_000, batchSize: 4096, trainSamples: 50_000, testSamples: 0, sampleElements: 1);
        var small = JobMemoryEstimate.Of(1_000, 1_000_000, batchSize: 64, trainSamples: 50_000, testSamples: 0, sampleElements: 1);
        const long limit = 4L << 30;

        var problem = big.Problem(limit, 4096);

        Assert.NotNull(problem);
        Assert.Contains("7,813 MB", problem); // 2 x 1 MB x 4096
        Assert.Contains("4,096 MB (Jobs:MaxJobMemoryBytes)", problem);
        Assert.Contains("lower batchSize (4096", problem);
        Assert.Contains("input size", problem);
        Assert.Null(small.Problem(limit, 64));
    }
}
