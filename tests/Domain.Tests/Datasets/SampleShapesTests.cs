using SurgeryService.Domain.Datasets;

namespace SurgeryService.Domain.Tests.Datasets;

/// <summary>The one shape check that the Api (at submit) and the worker (when preparing inputs) share.</summary>
public class SampleShapesTests
{
    [Fact]
    public void SamplesThatMatchWithSymbolicDimensionsKeepTheirShape()
    {
        Assert.Equal([1L, 28, 28], SampleShapes.Target([1, 28, 28], [1, -1, -1])!);
        Assert.Null(SampleShapes.Problem([1, 28, 28], InputLayout.Nchw, [1, -1, -1]));
    }

    [Fact]
    public void SamplesAreFlattenedOrReshapedWhenTheValueCountsAgree()
    {
        Assert.Equal([784L], SampleShapes.Target([1, 28, 28], [784])!);
        Assert.Equal([16L, 49], SampleShapes.Target([1, 28, 28], [-1, 49])!);
    }

    [Fact]
    public void TwoSymbolicDimensionsThatDoNotMatchCannotBeResolvedSoTheSubmitIsRefused()
    {
        // The Api used to accept this (784 is a multiple of 1) and the worker then failed the job.
        Assert.Null(SampleShapes.Target([1, 28, 28], [-1, -1]));
        var problem = SampleShapes.Problem([1, 28, 28], InputLayout.Nchw, [-1, -1]);
        Assert.Equal("the data set's samples have shape [1, 28, 28] (784 values) but the model's input takes [?, ?]", problem);
    }

    [Fact]
    public void TheLayoutIsAppliedBeforeTheShapesAreCompared()
    {
        Assert.Equal([28L, 28, 3], SampleShapes.LaidOut([3, 28, 28], InputLayout.Nhwc));
        Assert.Null(SampleShapes.Problem([3, 28, 28], InputLayout.Nhwc, [-1, -1, 3]));
        Assert.NotNull(SampleShapes.Problem([3, 28, 28], InputLayout.Nchw, [-1, -1, 3]));
    }

    [Fact]
    public void AModelThatStatesNoShapeTakesTheSamplesAsTheyAre() =>
        Assert.Equal([1L, 28, 28], SampleShapes.Target([1, 28, 28], [])!);
}
