using System.Net;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using SurgeryService.Api.Datasets;
using SurgeryService.Api.Tests.Infrastructure;

namespace SurgeryService.Api.Tests.Datasets;

public sealed class BuiltInMnistHost() : ServiceHost("mnist", withWorker: false,
    new Dictionary<string, string?> { ["Datasets:MnistDirectory"] = TestData.MnistDirectory });

public sealed class BuiltInMnistTests(BuiltInMnistHost host) : IClassFixture<BuiltInMnistHost>
{
    [Fact]
    public async Task MnistIsRegisteredOnceAtStartForEveryTenantAndCannotBeDeleted()
    {
        System.Text.Json.JsonElement mnist = default;
        var listed = await Eventually.TrueAsync(async () =>
        {
            var datasets = await host.Client(ServiceHost.GlobexKey).GetAsync("/api/datasets").ExpectAsync(HttpStatusCode.OK);
            mnist = datasets.GetProperty("items").EnumerateArray().FirstOrDefault(d => d.GetProperty("name").GetString() == "mnist");
            return mnist.ValueKind != System.Text.Json.JsonValueKind.Undefined;
        }, TimeSpan.FromSeconds(60), TimeSpan.FromMilliseconds(500));

        Assert.True(listed, "the built-in mnist was not registered");
        Assert.True(mnist.GetProperty("builtIn").GetBoolean());
        Assert.Equal(60_000, mnist.GetProperty("trainCount").GetInt64());
        Assert.Equal(10_000, mnist.GetProperty("testCount").GetInt64());
        Assert.Equal(10, mnist.GetProperty("classCount").GetInt32());
        var id = mnist.GetProperty("id").GetGuid();
        await host.Client(ServiceHost.AcmeKey).GetAsync($"/api/datasets/{id}").ExpectAsync(HttpStatusCode.OK);
        await host.Client(ServiceHost.AcmeKey).DeleteAsync($"/api/datasets/{id}").ExpectAsync(HttpStatusCode.Conflict);

        // A second Api on the same database (a restart, or another instance) does not register it again.
        await using var second = new SurgeryApiFactory(host.Db.ConnectionString, new Dictionary<string, string?>
        {
            ["Tenants:acme:ApiKeys:0"] = ServiceHost.AcmeKey,
            ["Datasets:MnistDirectory"] = TestData.MnistDirectory,
        });
        second.CreateClient();
        var registration = second.Services.GetServices<IHostedService>().OfType<BuiltInDatasets>().Single();
        await registration.ExecuteTask!.WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Equal(1L, await host.Db.ScalarAsync<long>("SELECT count(*) FROM datasets WHERE \"BuiltIn\""));
    }
}
