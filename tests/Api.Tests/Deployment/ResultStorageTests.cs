using SurgeryService.Api.Jobs;
using SurgeryService.Domain.Artifacts;
using SurgeryService.Domain.Models;

namespace SurgeryService.Api.Tests.Deployment;

/// <summary>The storage a download's <c>X-Model-Storage</c> header and the report state for each result format.</summary>
public class ResultStorageTests
{
    private static Artifact File(string sha) => new() { FileName = "m.onnx", ContentType = "application/onnx", Sha256 = sha };

    [Fact]
    public void ASparseResultThatIsTheDenseFileByteForByteSaysDense()
    {
        var dense = File("aa");

        Assert.Equal("dense", ResultStorage.Of(ResultFormat.OnnxSparse, File("aa"), dense));
        Assert.Equal("sparse", ResultStorage.Of(ResultFormat.OnnxSparse, File("bb"), dense));
    }

    [Theory]
    [InlineData(ResultFormat.Onnx, "dense")]
    [InlineData(ResultFormat.TorchSharp, "dense")]
    [InlineData(ResultFormat.OnnxInt8, "int8")]
    public void EveryOtherFormatStatesItsOwnStorage(ResultFormat format, string storage) =>
        Assert.Equal(storage, ResultStorage.Of(format, File("cc"), File("dd")));
}
