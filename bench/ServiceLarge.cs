using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using SurgeryService.Domain.Surgery;

namespace SurgeryService.Bench;

/// <summary>
/// A large model through the whole service (issue 25): ResNet-18 or VGG11-BN exported as ONNX by PyTorch
/// (bench/large/cnns.py; ResNet-18 is 42.6 MB at 64x64, VGG11-BN 515 MB) and a data set of random images of its input
/// size, uploaded to the real Api, a short fixed-mode job run by the real Worker on a private PostgreSQL. Prints the
/// Api's resident memory around the model's upload, the Worker's own account of the time from the job's last iteration
/// to its stored results (final evaluations, export, storing), the job's wall time, and the Worker's resident memory
/// before, at its peak and after. The Api's job memory limit is the machine's memory: the bench measures what a job
/// takes, which the estimate may put over the default limit (VGG11-BN).
/// </summary>
internal static class ServiceLarge
{
    public static async Task<int> Run(string[] args)
    {
        var options = Options.Parse(args);
        int Int(string name, int fallback) => int.Parse(options.Get(name, fallback.ToString(CultureInfo.InvariantCulture)), CultureInfo.InvariantCulture);
        var model = options.Get("model", "resnet18");
        var size = Int("size", model == "vgg11_bn" ? 224 : 64);
        var batch = Int("batch", model == "vgg11_bn" ? 8 : 64);
        var iterations = Int("iterations", 20);
        var threads = Int("threads", 0);
        var python = options.Get("python", "/usr/bin/python3");
        var root = Service.FindRoot();
        Directory.SetCurrentDirectory(root);
        var dir = Path.GetFullPath(Path.Combine(".data", "bench", "service-large"));
        Directory.CreateDirectory(dir);
        var onnxPath = Path.Combine(dir, $"{model}-{size}.onnx");
        var dataPath = Path.Combine(dir, $"random-{size}.npz");
        Service.Check(await Service.RunToEnd(python, [Path.Combine(AppContext.BaseDirectory, "large", "cnns.py"), "--model", model, "--out", onnxPath,
            "--size", size.ToString(CultureInfo.InvariantCulture), "--iterations", "0", "--dataset", dataPath]), "cnns.py");
        if (!options.Has("no-build"))
        {
            foreach (var project in new[] { "src/Api/Api.csproj", "src/Worker/Worker.csproj" })
            {
                Service.Check(await Service.RunToEnd("dotnet", ["build", project, "-c", "Release", "-nologo", "-v", "q"]), "dotnet build " + project);
            }
        }
        Console.WriteLine($"{model} at 3x{size}x{size}: {new FileInfo(onnxPath).Length / 1e6:F1} MB; {iterations} iterations at batch {batch}; cores {Environment.ProcessorCount}");

        var logs = Path.Combine(dir, "logs");
        Directory.CreateDirectory(logs);
        await using var postgres = await Service.Postgres.StartAsync(root, logs);
        var apiUrl = $"http://127.0.0.1:{Service.FreePort()}";
        var common = new Dictionary<string, string> { ["ConnectionStrings__Surgery"] = postgres.ConnectionString, ["DOTNET_ENVIRONMENT"] = "Production" };
        using var api = Service.Child.Start(Path.Combine(root, "src/Api/bin/Release/net10.0/SurgeryService.Api.dll"), Path.Combine(logs, "api.log"),
            new Dictionary<string, string>(common)
            {
                ["ASPNETCORE_URLS"] = apiUrl,
                ["Tenants__bench__ApiKeys__0"] = Service.ApiKey,
                ["Datasets__MnistDirectory"] = Path.GetFullPath(Path.Combine(".data", "datasets", "mnist")),
                ["Jobs__MaxJobMemoryBytes"] = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes.ToString(CultureInfo.InvariantCulture),
            });
        using var http = new HttpClient { BaseAddress = new Uri(apiUrl), Timeout = TimeSpan.FromMinutes(5) };
        http.DefaultRequestHeaders.Add("X-Api-Key", Service.ApiKey);
        await Service.WaitUntil(async () => (await Service.TryGet(http, "/health/ready"))?.IsSuccessStatusCode == true, TimeSpan.FromSeconds(120), api, "the Api");
        var workerSettings = new Dictionary<string, string>(common);
        if (threads > 0) workerSettings["Worker__TorchThreads"] = threads.ToString(CultureInfo.InvariantCulture);
        using var worker = Service.Child.Start(Path.Combine(root, "src/Worker/bin/Release/net10.0/SurgeryService.Worker.dll"), Path.Combine(logs, "worker.log"), workerSettings);
        await Service.WaitUntil(() => Task.FromResult(worker.Output.Contains("successfully announced", StringComparison.Ordinal)),
            TimeSpan.FromSeconds(120), worker, "the Worker's Hangfire server");

        var apiBefore = Rss(api.Id);
        var apiPeak = apiBefore;
        var uploading = Upload(http, "/api/models", onnxPath);
        while (!uploading.IsCompleted)
        {
            apiPeak = Math.Max(apiPeak, Rss(api.Id));
            await Task.WhenAny(uploading, Task.Delay(100));
        }
        var modelId = await uploading;
        var apiAfter = Rss(api.Id);
        var datasetId = await Upload(http, "/api/datasets", dataPath);
        var idle = Rss(worker.Id);
        var settings = new SurgerySettings { Iterations = iterations, BatchSize = batch, LearningRate = 0.01, CRate = 1, EvalInterval = 1_000_000 };
        var body = new JsonObject
        {
            ["modelId"] = modelId,
            ["datasetId"] = datasetId,
            ["settings"] = System.Text.Json.JsonSerializer.SerializeToNode(settings, new System.Text.Json.JsonSerializerOptions(System.Text.Json.JsonSerializerDefaults.Web)),
            ["preprocessing"] = new JsonObject { ["scale"] = 1.0 },
        };
        var job = (await Service.Expect(await http.PostAsJsonAsync("/api/jobs", body), HttpStatusCode.Accepted))["id"]!.GetValue<Guid>();
        var clock = Stopwatch.StartNew();
        var peak = idle;
        string state;
        do
        {
            await Task.Delay(200);
            peak = Math.Max(peak, Rss(worker.Id));
            state = JsonNode.Parse(await http.GetStringAsync($"/api/jobs/{job}"))!["state"]!.GetValue<string>();
            if (worker.HasExited) throw new InvalidOperationException($"the Worker exited; see {worker.LogPath}");
        }
        while (state.ToLowerInvariant() is not ("succeeded" or "failed" or "cancelled"));
        var wall = clock.Elapsed.TotalSeconds;
        await Task.Delay(3000);
        var after = Rss(worker.Id);
        if (Int("linger", 0) is > 0 and var linger)
        {
            Console.WriteLine($"the Api (pid {api.Id}) and the Worker (pid {worker.Id}) stay up for {linger} s");
            await Task.Delay(TimeSpan.FromSeconds(linger));
        }
        var line = worker.Output.Split('\n').LastOrDefault(l => l.Contains("after its last iteration", StringComparison.Ordinal))?.Trim();
        const double MiB = 1 << 20;
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"""
            api memory (model upload)   {apiBefore / MiB:F0} MB before, {apiPeak / MiB:F0} MB peak (sampled every 0.1 s), {apiAfter / MiB:F0} MB after
            job                         {state} in {wall:F1} s (submit to the state seen)
            worker's account            {line ?? "(no line: see " + worker.LogPath + ")"}
            worker memory               {idle / MiB:F0} MB idle before the job, {peak / MiB:F0} MB peak (sampled every 0.2 s), {after / MiB:F0} MB 3 s after
            """));
        return state.Equals("succeeded", StringComparison.OrdinalIgnoreCase) ? 0 : 1;
    }

    private static async Task<Guid> Upload(HttpClient http, string path, string file)
    {
        using var form = new MultipartFormDataContent();
        var content = new StreamContent(File.OpenRead(file));
        content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
        form.Add(content, "file", Path.GetFileName(file));
        return (await Service.Expect(await http.PostAsync(path, form), HttpStatusCode.Created))["id"]!.GetValue<Guid>();
    }

    private static long Rss(int pid)
    {
        var line = File.ReadLines($"/proc/{pid}/status").First(l => l.StartsWith("VmRSS:", StringComparison.Ordinal));
        return long.Parse(line[6..].Trim().Split(' ')[0], CultureInfo.InvariantCulture) * 1024;
    }
}
