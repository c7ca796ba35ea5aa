using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace SurgeryService.Api.Tests.Infrastructure;

/// <summary>
/// The real Api executable (src/Api's build output) on Kestrel at a free loopback port, as a child process: for tests
/// that kill it or measure its memory, which the in-process test server cannot show.
/// </summary>
public sealed class ApiProcess : IDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _output = new();

    private ApiProcess(Process process, Uri address)
    {
        _process = process;
        Address = address;
        process.OutputDataReceived += (_, e) => Append(e.Data);
        process.ErrorDataReceived += (_, e) => Append(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
    }

    public Uri Address { get; }
    public int Id => _process.Id;
    public bool HasExited => _process.HasExited;

    public string Output
    {
        get { lock (_output) { return _output.ToString(); } }
    }

    /// <summary>Starts the Api with the two test tenants and waits until <c>/health/ready</c> answers 200.</summary>
    public static async Task<ApiProcess> StartAsync(string connectionString, IReadOnlyDictionary<string, string>? settings = null)
    {
        var assembly = BuildOutput.Path("Api", "SurgeryService.Api.dll");
        var address = new Uri($"http://127.0.0.1:{FreePort()}");
        var info = new ProcessStartInfo("dotnet", [assembly])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = System.IO.Path.GetDirectoryName(assembly)!,
        };
        info.Environment["ConnectionStrings__Surgery"] = connectionString;
        info.Environment["ASPNETCORE_URLS"] = address.ToString();
        info.Environment["DOTNET_ENVIRONMENT"] = "Development";
        info.Environment["Tenants__acme__ApiKeys__0"] = ServiceHost.AcmeKey;
        info.Environment["Tenants__globex__ApiKeys__0"] = ServiceHost.GlobexKey;
        info.Environment["Datasets__MnistDirectory"] = "";
        info.Environment["Logging__LogLevel__Microsoft.EntityFrameworkCore.Database.Command"] = "Critical";
        foreach (var (key, value) in settings ?? new Dictionary<string, string>()) info.Environment[key] = value;
        var api = new ApiProcess(Process.Start(info) ?? throw new InvalidOperationException("could not start the Api"), address);
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
        if (!ready || api.HasExited)
        {
            api.Dispose();
            throw new InvalidOperationException("the Api did not become ready; its output:\n" + api.Output);
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

    /// <summary>Kills the process at once, as a crash or the OOM killer would: no graceful shutdown.</summary>
    public void Kill()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            _process.WaitForExit();
        }
    }

    public void Dispose()
    {
        Kill();
        _process.Dispose();
    }

    private void Append(string? line)
    {
        if (line is null) return;
        lock (_output) { _output.AppendLine(line); }
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}

/// <summary>Where the build output of a project of this solution lies, next to this test assembly's.</summary>
public static class BuildOutput
{
    public static string Path(string project, string assembly)
    {
        // tests/Api.Tests/bin/<Configuration>/net10.0/ -> src/<project>/bin/<Configuration>/net10.0/
        var testBin = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(System.IO.Path.DirectorySeparatorChar));
        var configuration = testBin.Parent!.Name;
        var root = testBin;
        while (root is not null && !File.Exists(System.IO.Path.Combine(root.FullName, "SurgeryService.sln")))
        {
            root = root.Parent;
        }
        if (root is null) throw new InvalidOperationException("SurgeryService.sln not found above " + AppContext.BaseDirectory);
        var path = System.IO.Path.Combine(root.FullName, "src", project, "bin", configuration, testBin.Name, assembly);
        return File.Exists(path) ? path : throw new FileNotFoundException($"Build {project} first", path);
    }

    public static string RepositoryRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(System.IO.Path.Combine(dir.FullName, "SurgeryService.sln"))) dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("SurgeryService.sln not found above " + AppContext.BaseDirectory);
    }
}
