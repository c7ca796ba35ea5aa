using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace SurgeryService.Api.Tests.Infrastructure;

/// <summary>
/// The real Api executable (src/Api's build output) on Kestrel at a free loopback port, as a child process: for tests
/// that kill it or measure its memory, which the in-process test server cannot show.
/// </summary>
public sealed class ApiProcess : ChildProcess
{
    private ApiProcess(Process process, Uri address) : base(process)
    {
        Address = address;
    }

    public Uri Address { get; }

    /// <summary>
    /// Starts the Api with the two test tenants and waits until <c>/health/ready</c> answers 200 and the Api has loaded
    /// LibTorch (it does so in the background at start: a test that measures the Api's memory must not count that).
    /// </summary>
    public static async Task<ApiProcess> StartAsync(string connectionString, IReadOnlyDictionary<string, string>? settings = null)
    {
        var address = new Uri($"http://127.0.0.1:{FreePort()}");
        var environment = new Dictionary<string, string>
        {
            ["ASPNETCORE_URLS"] = address.ToString(),
            ["Tenants__acme__ApiKeys__0"] = ServiceHost.AcmeKey,
            ["Tenants__globex__ApiKeys__0"] = ServiceHost.GlobexKey,
            ["Datasets__MnistDirectory"] = "",
            ["Logging__LogLevel__Microsoft.EntityFrameworkCore.Database.Command"] = "Critical",
        };
        foreach (var (key, value) in settings ?? new Dictionary<string, string>()) environment[key] = value;
        var api = new ApiProcess(Launch("Api", "SurgeryService.Api.dll", connectionString, environment), address);
        using var probe = new HttpClient { BaseAddress = address, Timeout = TimeSpan.FromSeconds(5) };
        var ready = await Eventually.TrueAsync(async () =>
        {
            if (api.HasExited) return true;
            try
            {
                return (await probe.GetAsync("/health/ready")).StatusCode == HttpStatusCode.OK;
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
            {
                return false;
            }
        }, TimeSpan.FromSeconds(90));
        var loaded = ready && await Eventually.TrueAsync(() => Task.FromResult(api.HasExited || api.Output.Contains("LibTorch loaded in", StringComparison.Ordinal)),
            TimeSpan.FromSeconds(60));
        if (!ready || !loaded || api.HasExited)
        {
            api.Dispose();
            throw new InvalidOperationException("the Api did not become ready or did not load LibTorch; its output:\n" + api.Output);
        }
        return api;
    }

    public HttpClient Client(string? apiKey = ServiceHost.AcmeKey)
    {
        var client = new HttpClient { BaseAddress = Address, Timeout = TimeSpan.FromMinutes(5) };
        if (apiKey is not null) client.DefaultRequestHeaders.Add("X-Api-Key", apiKey);
        return client;
    }

    /// <summary>Resident memory in bytes and thread count, from /proc.</summary>
    public (long RssBytes, int Threads) Figures()
    {
        var lines = File.ReadAllLines($"/proc/{Id}/status");
        long Field(string name) => long.Parse(lines.Single(l => l.StartsWith(name + ":", StringComparison.Ordinal))
            .Split((char[])[' ', '\t'], StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture);
        return (Field("VmRSS") * 1024, (int)Field("Threads"));
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
