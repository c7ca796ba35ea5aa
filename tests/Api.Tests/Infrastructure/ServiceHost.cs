using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace SurgeryService.Api.Tests.Infrastructure;

/// <summary>
/// A test database, the Api on it with two tenants, and optionally the real Worker process: what a service test
/// class shares (as an xunit class fixture).
/// </summary>
public class ServiceHost : IAsyncLifetime
{
    public const string AcmeKey = "acme-key-0123456789abcdef";
    public const string GlobexKey = "globex-key-0123456789abcdef";

    public static readonly JsonSerializerOptions Json = CreateJson();

    private readonly string _purpose;
    private readonly bool _withWorker;
    private readonly Dictionary<string, string?> _settings;

    protected ServiceHost(string purpose, bool withWorker, Dictionary<string, string?>? settings = null)
    {
        _purpose = purpose;
        _withWorker = withWorker;
        _settings = settings ?? [];
    }

    public TestDatabase Db { get; private set; } = null!;
    public SurgeryApiFactory Factory { get; private set; } = null!;
    public WorkerProcess? Worker { get; set; }

    /// <summary>Settings for the real Worker process: short timeouts so a lost job comes back within seconds.</summary>
    public static readonly IReadOnlyDictionary<string, string> WorkerSettings = new Dictionary<string, string>
    {
        ["Hangfire__InvisibilityTimeoutSeconds"] = "6",
        ["Hangfire__QueuePollIntervalMilliseconds"] = "200",
        ["Jobs__FlushIntervalMilliseconds"] = "200",
        ["Worker__ShutdownTimeoutSeconds"] = "5",
        ["Worker__TorchThreads"] = "1",
    };

    public async Task InitializeAsync()
    {
        Db = await TestDatabase.CreateAsync(_purpose);
        var settings = new Dictionary<string, string?>
        {
            ["Tenants:acme:ApiKeys:0"] = AcmeKey,
            ["Tenants:globex:ApiKeys:0"] = GlobexKey,
            ["Datasets:MnistDirectory"] = "",
            ["Api:EventPollMilliseconds"] = "100",
        };
        foreach (var (key, value) in _settings) settings[key] = value;
        Factory = new SurgeryApiFactory(Db.ConnectionString, settings);
        Factory.CreateClient(); // starts the host, which applies the migrations before any worker needs the schema
        if (_withWorker) Worker = StartWorker();
    }

    public WorkerProcess StartWorker() => WorkerProcess.Start(Db.ConnectionString, WorkerSettings);

    public HttpClient Client(string? apiKey = AcmeKey)
    {
        var client = Factory.CreateClient();
        if (apiKey is not null) client.DefaultRequestHeaders.Add("X-Api-Key", apiKey);
        return client;
    }

    public async Task DisposeAsync()
    {
        Worker?.Dispose();
        await Factory.DisposeAsync();
        await Db.DisposeAsync();
    }

    private static JsonSerializerOptions CreateJson()
    {
        var options = new JsonSerializerOptions(JsonSerializerDefaults.Web);
        options.Converters.Add(new JsonStringEnumConverter(JsonNamingPolicy.CamelCase));
        return options;
    }
}

public static class HttpExtensions
{
    public static MultipartFormDataContent Form(byte[] file, string fileName, params (string Name, string Value)[] fields)
    {
        var form = new MultipartFormDataContent();
        var content = new ByteArrayContent(file);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
        form.Add(content, "file", fileName);
        foreach (var (name, value) in fields) form.Add(new StringContent(value), name);
        return form;
    }

    public static async Task<JsonElement> JsonAsync(this HttpResponseMessage response)
    {
        var text = await response.Content.ReadAsStringAsync();
        try
        {
            return JsonDocument.Parse(text).RootElement.Clone();
        }
        catch (JsonException)
        {
            throw new InvalidOperationException($"{(int)response.StatusCode} with a body that is not JSON: {text}");
        }
    }

    public static async Task<JsonElement> ExpectAsync(this Task<HttpResponseMessage> request, System.Net.HttpStatusCode status)
    {
        var response = await request;
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == status, $"expected {(int)status}, got {(int)response.StatusCode}: {body}");
        return body.Length == 0 ? default : JsonDocument.Parse(body).RootElement.Clone();
    }

    public static Task<HttpResponseMessage> PostJsonAsync(this HttpClient client, string url, object body) =>
        client.PostAsJsonAsync(url, body, ServiceHost.Json);
}
