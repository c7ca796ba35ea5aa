using System.IO.Compression;
using System.Net;
using System.Runtime.InteropServices;
using System.Text;
using SurgeryService.Api.Tests.Infrastructure;
using SurgeryService.Api.Tests.Jobs;
using TorchSharp;
using static TorchSharp.torch;

namespace SurgeryService.Api.Tests.Models;

public sealed class ZooHost() : ServiceHost("zoo", withWorker: false,
    new Dictionary<string, string?> { ["Api:RunWorker"] = "true", ["Hangfire:QueuePollIntervalMilliseconds"] = "200" });

/// <summary>A TorchSharp user's TorchVision resnet18 (3 classes) through upload, a short job and the download.</summary>
public sealed class TorchVisionZooUploadTests(ZooHost host) : IClassFixture<ZooHost>
{
    private const int Classes = 3;
    private const int Train = 48;
    private const int Test = 24;

    [Fact]
    public async Task AResNet18WeightFileIsAcceptedCompressedAndDeliveredAsWeightsTorchVisionLoads()
    {
        var client = host.Client();
        var upload = await client.PostAsync("/api/models", HttpExtensions.Form(ResNet18Weights(seed: 1), "resnet18.dat",
            ("architecture", "resnet18"), ("classes", "3"))).ExpectAsync(HttpStatusCode.Created);
        Assert.Equal("torchsharp", upload.GetProperty("format").GetString());
        Assert.Equal("resnet18", upload.GetProperty("architecture").GetString());
        Assert.Equal(3, upload.GetProperty("classCount").GetInt32());
        Assert.Equal([3, -1, -1], upload.GetProperty("inputShape").EnumerateArray().Select(d => d.GetInt64()));
        Assert.Equal(21, upload.GetProperty("layers").EnumerateArray().Count(l => l.GetProperty("prunable").GetBoolean()));
        var dataset = await client.PostAsync("/api/datasets", HttpExtensions.Form(Images(), "images.npz"))
            .ExpectAsync(HttpStatusCode.Created);

        var job = await JobScenario.SubmitAsync(client, new
        {
            modelId = upload.GetProperty("id").GetGuid(),
            datasetId = dataset.GetProperty("id").GetGuid(),
            method = "dns",
            settings = new { iterations = 4, batchSize = 8, evalInterval = 4, learningRate = 0.01, cRate = 1.0, seed = 7 },
        });
        var done = await JobScenario.WaitForAsync(client, job, JobScenario.IsFinished, TimeSpan.FromMinutes(5)); // 45 MB of weights in and out: slow on a loaded machine

        Assert.Equal("Succeeded", done.GetProperty("state").GetString());
        Assert.Equal(["torchsharp"], done.GetProperty("resultFormats").EnumerateArray().Select(f => f.GetString()));
        var bytes = await (await client.GetAsync($"/api/jobs/{job}/result?format=torchsharp")).Content.ReadAsByteArrayAsync();
        using var scope = NewDisposeScope();
        using var delivered = torchvision.models.resnet18(num_classes: Classes);
        delivered.load(new MemoryStream(bytes), strict: true);
        var zeros = delivered.named_parameters()
            .Where(p => p.name.EndsWith(".weight", StringComparison.Ordinal) && (p.name.Contains("conv") || p.name.Contains("downsample.0") || p.name == "fc.weight"))
            .Sum(p => p.parameter.eq(0).sum().item<long>());
        Assert.True(done.GetProperty("kept").GetInt64() < done.GetProperty("total").GetInt64(), done.ToString());
        Assert.Equal(done.GetProperty("total").GetInt64() - done.GetProperty("kept").GetInt64(), zeros);

        // It scores what the job reports on the test images (one borderline sample may flip between batchings).
        delivered.eval();
        var (x, y) = TestImages();
        using var noGrad = no_grad();
        var top1 = delivered.forward(x).argmax(1).eq(y).sum().item<long>() / (double)Test;
        Assert.InRange(top1, done.GetProperty("test").GetProperty("top1After").GetDouble() - 1.0 / Test, done.GetProperty("test").GetProperty("top1After").GetDouble() + 1.0 / Test);
    }

    [Fact]
    public async Task AResNet18FileWhoseTensorsDoNotMatchIsRefusedNamingTheFirstMismatchedTensor()
    {
        var client = host.Client();
        var weights = ResNet18Weights(seed: 2);

        var renamed = await client.PostAsync("/api/models", HttpExtensions.Form(
            Rename(weights, "layer3.1.conv2.weight", "layer3.1.convX.weight"), "resnet18.dat", ("architecture", "resnet18")))
            .ExpectAsync(HttpStatusCode.UnprocessableEntity);
        Assert.EndsWith("the file's tensor 'layer3.1.convX.weight' [256x256x3x3] is not part of the architecture",
            renamed.GetProperty("detail").GetString());

        var otherCount = await client.PostAsync("/api/models", HttpExtensions.Form(weights, "resnet18.dat",
            ("architecture", "resnet18"), ("classes", "5"))).ExpectAsync(HttpStatusCode.UnprocessableEntity);
        Assert.EndsWith("tensor 'fc.weight' is [3x512] in the file but [5x512] in the architecture",
            otherCount.GetProperty("detail").GetString());

        var otherArchitecture = await client.PostAsync("/api/models", HttpExtensions.Form(weights, "resnet18.dat",
            ("architecture", "resnet34"))).ExpectAsync(HttpStatusCode.UnprocessableEntity);
        Assert.Contains("architecture 'resnet34'", otherArchitecture.GetProperty("detail").GetString());

        await client.PostAsync("/api/models", HttpExtensions.Form(weights, "resnet18.dat",
            ("architecture", "resnet18"), ("classes", "three"))).ExpectAsync(HttpStatusCode.BadRequest);
    }

    private static byte[] ResNet18Weights(int seed)
    {
        using var scope = NewDisposeScope();
        manual_seed(seed);
        using var module = torchvision.models.resnet18(num_classes: Classes);
        using var stream = new MemoryStream();
        module.save(stream);
        return stream.ToArray();
    }

    /// <summary>3-channel 16×16 images whose class is the channel that is brightest.</summary>
    private static (float[] X, long[] Y) Samples(int count, int seed)
    {
        var random = new Random(seed);
        var y = Enumerable.Range(0, count).Select(_ => (long)random.Next(Classes)).ToArray();
        var x = new float[count * 3 * 16 * 16];
        for (var i = 0; i < x.Length; i++)
        {
            var sample = i / (3 * 256);
            var channel = i / 256 % 3;
            x[i] = (float)random.NextDouble() * 0.5f + (channel == y[sample] ? 0.5f : 0);
        }
        return (x, y);
    }

    private static byte[] Images()
    {
        var (xTrain, yTrain) = Samples(Train, seed: 11);
        var (xTest, yTest) = Samples(Test, seed: 12);
        return TestData.Npz(CompressionLevel.Fastest,
            ("x_train", "<f4", [Train, 3, 16, 16], MemoryMarshal.AsBytes(xTrain.AsSpan()).ToArray()),
            ("y_train", "<i8", [Train], MemoryMarshal.AsBytes(yTrain.AsSpan()).ToArray()),
            ("x_test", "<f4", [Test, 3, 16, 16], MemoryMarshal.AsBytes(xTest.AsSpan()).ToArray()),
            ("y_test", "<i8", [Test], MemoryMarshal.AsBytes(yTest.AsSpan()).ToArray()));
    }

    private static (Tensor X, Tensor Y) TestImages()
    {
        var (x, y) = Samples(Test, seed: 12);
        return (tensor(x).reshape(Test, 3, 16, 16), tensor(y));
    }

    private static byte[] Rename(byte[] bytes, string from, string to)
    {
        var at = bytes.AsSpan().IndexOf(Encoding.UTF8.GetBytes(from));
        Assert.True(at > 0);
        var renamed = bytes.ToArray();
        Encoding.UTF8.GetBytes(to).CopyTo(renamed, at);
        return renamed;
    }
}
