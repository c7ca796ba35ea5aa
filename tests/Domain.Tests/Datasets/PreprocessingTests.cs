using SurgeryService.Domain.Datasets;
using TorchSharp;
using static TorchSharp.torch;

namespace SurgeryService.Domain.Tests.Datasets;

public class PreprocessingTests
{
    private static TensorDataset Images(int channels) =>
        new(arange(2 * channels * 2 * 3, ScalarType.Float32).reshape(2, channels, 2, 3), tensor(new long[] { 0, 1 }), 2);

    [Fact]
    public void DefaultFeedsTheRawValuesUnchanged()
    {
        using var data = Images(1);
        using var result = InputPreprocessing.Raw.Apply(data, [1, 2, 3]);
        Assert.True(result.Inputs.eq(data.Inputs).all().item<bool>());
        Assert.True(result.Labels.eq(data.Labels).all().item<bool>());
    }

    [Fact]
    public void AppliesScaleAndOffsetThenPerChannelMeanAndStd()
    {
        using var data = Images(2);
        var preprocessing = new InputPreprocessing { Scale = 0.5, Offset = 1, Mean = [1, 2], Std = [2, 4] };
        using var result = preprocessing.Apply(data);
        // sample 0, channel 1, first pixel holds 6: (6 * 0.5 + 1 - 2) / 4
        Assert.Equal(0.5f, result.Inputs[0, 1, 0, 0].item<float>());
        Assert.Equal((0 * 0.5f + 1 - 1) / 2, result.Inputs[0, 0, 0, 0].item<float>());
    }

    [Fact]
    public void ConvertsToChannelsLastAndToTheModelsFlatInput()
    {
        using var data = Images(2);
        using var nhwc = new InputPreprocessing { Layout = InputLayout.Nhwc }.Apply(data, [2, 3, 2]);
        Assert.Equal([2, 2, 3, 2], nhwc.Inputs.shape);
        Assert.Equal(data.Inputs[1, 1, 0, 2].item<float>(), nhwc.Inputs[1, 0, 2, 1].item<float>());
        using var flat = InputPreprocessing.Raw.Apply(data, [12]);
        Assert.Equal([2, 12], flat.Inputs.shape);
    }

    [Fact]
    public void RefusesStatisticsThatDoNotMatchTheChannelsAndShapesThatDoNotFit()
    {
        using var data = Images(1);
        Assert.Contains("3 values but", Assert.Throws<SurgeryException>(() => new InputPreprocessing { Mean = [1, 2, 3] }.Apply(data)).Message);
        Assert.Contains("> 0", Assert.Throws<SurgeryException>(() => new InputPreprocessing { Std = [0] }.Apply(data)).Message);
        Assert.Contains("[1, 2, 3]", Assert.Throws<SurgeryException>(() => InputPreprocessing.Raw.Apply(data, [3, 32, 32])).Message);
    }
}
