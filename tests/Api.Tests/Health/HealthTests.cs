using System.Net;
using SurgeryService.Api.Tests.Infrastructure;

namespace SurgeryService.Api.Tests.Health;

public sealed class HealthTests : IAsyncLifetime
{
    private TestDatabase _db = null!;

    public async Task InitializeAsync() => _db = await TestDatabase.CreateAsync("health");

    public async Task DisposeAsync() => await _db.DisposeAsync();

    [Fact]
    public async Task ReadyAnswers200OnceMigrationsAreApplied()
    {
        await using var factory = new SurgeryApiFactory(_db.ConnectionString);
        var client = factory.CreateClient();

        var ready = await client.GetAsync("/health/ready");
        var live = await client.GetAsync("/health/live");

        Assert.Equal(HttpStatusCode.OK, ready.StatusCode);
        Assert.Equal(HttpStatusCode.OK, live.StatusCode);
        var migrations = typeof(SurgeryService.Infrastructure.Persistence.SurgeryDbContext).Assembly.GetTypes()
            .Count(t => t.IsSubclassOf(typeof(Microsoft.EntityFrameworkCore.Migrations.Migration)));
        Assert.Equal(migrations, await _db.ScalarAsync<long>("SELECT count(*) FROM \"__EFMigrationsHistory\""));
    }

    [Fact]
    public async Task ReadyAnswers503WhileMigrationsArePending()
    {
        await using var factory = new SurgeryApiFactory(_db.ConnectionString,
            new Dictionary<string, string?> { ["Api:MigrateOnStartup"] = "false" });
        var client = factory.CreateClient();

        var ready = await client.GetAsync("/health/ready");

        Assert.Equal(HttpStatusCode.ServiceUnavailable, ready.StatusCode);
    }

    [Fact]
    public async Task SwaggerUiAndDocumentAreServed()
    {
        await using var factory = new SurgeryApiFactory(_db.ConnectionString);
        var client = factory.CreateClient();

        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/swagger/index.html")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/swagger/v1/swagger.json")).StatusCode);
    }
}
