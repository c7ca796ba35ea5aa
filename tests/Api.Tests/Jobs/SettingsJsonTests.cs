using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using SurgeryService.Domain.Surgery;

namespace SurgeryService.Api.Tests.Jobs;

/// <summary>Surgery settings through the JSON options the Api itself reads and writes request and response bodies with.</summary>
public sealed class SettingsJsonTests(JobStateHost host) : IClassFixture<JobStateHost>
{
    [Fact]
    public void SettingsRoundTripThroughTheApisOwnJsonOptions()
    {
        var json = host.Factory.Services.GetRequiredService<IOptions<Microsoft.AspNetCore.Http.Json.JsonOptions>>().Value.SerializerOptions;
        var settings = new SurgerySettings
        {
            Method = SurgeryMethod.Magnitude,
            LrPolicy = LearningRatePolicy.Step,
            Phases = PruningPhases.ConvThenFc,
            Device = DeviceChoice.Cpu,
            Layers = [new LayerSettings { Pattern = "fc1", CRate = 2, IterStop = 100 }],
            Iterations = 123,
        };

        var text = JsonSerializer.Serialize(settings, json);
        var back = JsonSerializer.Deserialize<SurgerySettings>(text, json)!;

        Assert.Contains("\"method\":\"magnitude\"", text); // camelCase names and enum values, as the Api answers
        Assert.Equal(settings with { Layers = [] }, back with { Layers = [] });
        Assert.Equal(settings.Layers, back.Layers);
    }
}
