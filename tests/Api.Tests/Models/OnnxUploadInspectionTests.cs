using System.Net;
using SurgeryService.Api.Tests.Infrastructure;
using SurgeryService.Domain.Onnx;

namespace SurgeryService.Api.Tests.Models;

public sealed class OnnxUploadInspectionHost() : ServiceHost("onnxuploadinspection", withWorker: false);

/// <summary>An ONNX upload whose weights span many stored chunks is inspected from the artifact store's stream.</summary>
public sealed class OnnxUploadInspectionTests(OnnxUploadInspectionHost host) : IClassFixture<OnnxUploadInspectionHost>
{
    [Fact]
    public async Task AModelWithWeightsOverManyChunksIsInspectedFromTheStoreAsTheWholeFileIsRead()
    {
        const int hidden = 4096; // fc1.weight [4096, 784]: 12.8 MB, 13 chunks the inspection skips
        var bytes = OnnxMlp.Create(hidden);
        var whole = OnnxModel.Load(bytes);

        var upload = await host.Client().PostAsync("/api/models", HttpExtensions.Form(bytes, "mlp.onnx"))
            .ExpectAsync(HttpStatusCode.Created);

        Assert.Equal(whole.Layers.Select(l => (l.Name, l.ParameterCount, l.Prunable)),
            upload.GetProperty("layers").EnumerateArray()
                .Select(l => (l.GetProperty("name").GetString()!, l.GetProperty("parameters").GetInt64(), l.GetProperty("prunable").GetBoolean())));
        Assert.Equal(784L * hidden + hidden + hidden * 10 + 10, upload.GetProperty("parameterCount").GetInt64());
        Assert.Equal([784], upload.GetProperty("inputShape").EnumerateArray().Select(d => d.GetInt64()));
        var id = upload.GetProperty("id").GetGuid();
        var activation = await host.Db.ScalarAsync<long>($"SELECT \"ActivationBytesPerSample\" FROM models WHERE \"Id\" = '{id}'");
        Assert.Equal(4L * (784 + hidden + hidden + 10), activation);
    }

    [Fact]
    public async Task TheApiLoadsLibTorchAtStartSoThatNoUploadPaysForItsLoad()
    {
        // A separate Api process: this test process may have loaded LibTorch already for other tests.
        await using var db = await TestDatabase.CreateAsync("preload");
        using var api = await ApiProcess.StartAsync(db.ConnectionString);

        var maps = await File.ReadAllTextAsync($"/proc/{api.Id}/maps");
        Assert.Contains("libtorch_cpu.so", maps);
        Assert.Contains("LibTorch loaded in", api.Output);
    }
}
