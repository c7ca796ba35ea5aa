using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Text.Json;
using System.Text.Json.Nodes;
using SurgeryService.Domain.Datasets;
using SurgeryService.Domain.Models;
using SurgeryService.Domain.Surgery;
using static TorchSharp.torch;

namespace SurgeryService.Bench;

/// <summary>
/// The service under load, measured in one run: starts a private PostgreSQL (scripts/lib/provision.sh), the real Api
/// and Worker processes from their Release builds, and drives them over HTTP on the loopback interface only.
/// <list type="number">
/// <item>The LeNet-300-100 DNS recipe of <c>reproduce</c> (fewer iterations with <c>--iterations</c>): the engine in this
/// process, then the same job through the service; wall times side by side.</item>
/// <item>A long job's iterations/s in alternating windows, quiet and with a bounded open-loop load generator polling
/// its status and recent metrics at <c>--rate</c> requests/s; the Api's latency percentiles under that load.</item>
/// <item>50 SSE clients on one job at once, then 100 connect-disconnect cycles: the Api's threads and memory before
/// and after.</item>
/// </list>
/// </summary>
internal static class Service
{
    internal const string ApiKey = "bench-key-0123456789abcdef";
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web) { WriteIndented = true };

    public static async Task<int> Run(string[] args)
    {
        var waitPolicy = OpenMpWaitPolicy.PassiveUnlessSet(); // as the Worker does, before LibTorch loads
        var options = Options.Parse(args);
        var iterations = int.Parse(options.Get("iterations", "100000"), CultureInfo.InvariantCulture);
        var window = TimeSpan.FromSeconds(double.Parse(options.Get("window", "15"), CultureInfo.InvariantCulture));
        var rate = int.Parse(options.Get("rate", "200"), CultureInfo.InvariantCulture);
        var sseClients = int.Parse(options.Get("sse-clients", "50"), CultureInfo.InvariantCulture);
        var sseCycles = int.Parse(options.Get("sse-cycles", "100"), CultureInfo.InvariantCulture);
        var threads = int.Parse(options.Get("threads", "0"), CultureInfo.InvariantCulture);
        var root = FindRoot();
        Directory.SetCurrentDirectory(root);
        var mnistDir = Path.GetFullPath(options.Get("mnist",
            Environment.GetEnvironmentVariable("SURGERY_MNIST_DIR") ?? Path.Combine(".data", "datasets", "mnist")));
        var logs = Path.Combine(root, ".data", "bench", "service-logs");
        Directory.CreateDirectory(logs);
        Console.WriteLine($"cores: {Environment.ProcessorCount}, load average before: {LoadAverage()}, OpenMP wait policy: {waitPolicy}");

        if (!options.Has("no-build"))
        {
            foreach (var project in new[] { "src/Api/Api.csproj", "src/Worker/Worker.csproj" })
            {
                Check(await RunToEnd("dotnet", ["build", project, "-c", "Release", "-nologo", "-v", "q"]), "dotnet build " + project);
            }
        }

        // 1a. The engine alone, in this process: before any service process runs, and again after the service's run
        // (with the Api and Worker idle), so that a change in the machine's load between the two shows.
        var settings = Reproduce.Recipe(Architectures.LeNet300100, SurgeryMethod.Dns) with { Iterations = iterations };
        var (rawTrain, rawTest) = Mnist.Load(mnistDir);
        using var train = Reproduce.Scaled(rawTrain);
        using var test = Reproduce.Scaled(rawTest);
        string denseFile;
        using (Reproduce.DenseReference(Architectures.LeNet300100, Reproduce.DefaultDenseIterations(Architectures.LeNet300100),
                   train, test, "", out var cache))
        {
            denseFile = Path.GetFullPath(cache);
        }
        async Task<(double Seconds, string Threads)> Engine()
        {
            using var model = Architectures.Create(Architectures.LeNet300100);
            model.load(denseFile);
            var chosen = "";
            var clock = Stopwatch.StartNew();
            await Task.Factory.StartNew(() =>
            {
                var observer = TrainingThreads.For(threads).Observe(new Quiet(), iterations, (n, why) => chosen = $"{n} ({why})");
                using var trainer = new SurgeryTrainer(model, PrunableLayers.Discover(model), settings);
                trainer.Run(train, test, observer);
            }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
            var seconds = clock.Elapsed.TotalSeconds;
            Console.WriteLine($"engine: {iterations} iterations in {seconds:F1} s ({iterations / seconds:F0}/s); threads {chosen}");
            return (seconds, chosen);
        }
        var engineBefore = await Engine();

        await using var postgres = await Postgres.StartAsync(root, logs);
        var apiPort = FreePort();
        var apiUrl = $"http://127.0.0.1:{apiPort}";
        var common = new Dictionary<string, string>
        {
            ["ConnectionStrings__Surgery"] = postgres.ConnectionString,
            ["DOTNET_ENVIRONMENT"] = "Production",
        };
        using var api = Child.Start(Path.Combine(root, "src/Api/bin/Release/net10.0/SurgeryService.Api.dll"), Path.Combine(logs, "api.log"),
            new Dictionary<string, string>(common)
            {
                ["ASPNETCORE_URLS"] = apiUrl,
                ["Tenants__bench__ApiKeys__0"] = ApiKey,
                ["Datasets__MnistDirectory"] = mnistDir,
            });
        using var http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = 256, PooledConnectionLifetime = TimeSpan.FromMinutes(5) })
        {
            BaseAddress = new Uri(apiUrl),
            Timeout = TimeSpan.FromSeconds(30),
        };
        if (!http.BaseAddress.IsLoopback) throw new InvalidOperationException("load goes to the loopback interface only");
        http.DefaultRequestHeaders.Add("X-Api-Key", ApiKey);
        await WaitUntil(async () => (await TryGet(http, "/health/ready"))?.IsSuccessStatusCode == true, TimeSpan.FromSeconds(120), api, "the Api to be ready");
        var workerSettings = new Dictionary<string, string>(common);
        if (threads > 0) workerSettings["Worker__TorchThreads"] = threads.ToString(CultureInfo.InvariantCulture);
        using var worker = Child.Start(Path.Combine(root, "src/Worker/bin/Release/net10.0/SurgeryService.Worker.dll"), Path.Combine(logs, "worker.log"), workerSettings);
        // Submitted before the Worker polls, the job would also time the Worker's start.
        await WaitUntil(() => Task.FromResult(worker.Output.Contains("successfully announced", StringComparison.Ordinal)),
            TimeSpan.FromSeconds(120), worker, "the Worker's Hangfire server");

        // The dense model and the built-in MNIST, as a user would.
        Guid modelId;
        using (var form = new MultipartFormDataContent())
        {
            var file = new ByteArrayContent(await File.ReadAllBytesAsync(denseFile));
            file.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
            form.Add(file, "file", Path.GetFileName(denseFile));
            form.Add(new StringContent(Architectures.LeNet300100), "architecture");
            var created = await Expect(await http.PostAsync("/api/models", form), HttpStatusCode.Created);
            modelId = created["id"]!.GetValue<Guid>();
        }
        Guid datasetId = default;
        await WaitUntil(async () =>
        {
            var list = JsonNode.Parse(await http.GetStringAsync("/api/datasets"))!["items"]!.AsArray();
            var mnist = list.FirstOrDefault(d => d!["name"]!.GetValue<string>() == "mnist");
            if (mnist is not null) datasetId = mnist["id"]!.GetValue<Guid>();
            return mnist is not null;
        }, TimeSpan.FromSeconds(120), api, "the built-in mnist dataset");

        // 1b. The same run through the service: submit to seen Succeeded, polling once a second.
        var submitted = Stopwatch.StartNew();
        var job = await Submit(http, modelId, datasetId, settings);
        JsonNode status;
        while (true)
        {
            status = JsonNode.Parse(await http.GetStringAsync($"/api/jobs/{job}"))!;
            var state = status["state"]!.GetValue<string>();
            if (state is "Failed" or "Cancelled") throw new InvalidOperationException($"the job ended {state}: {status["error"]}");
            if (state == "Succeeded") break;
            if (worker.HasExited) throw new InvalidOperationException("the Worker exited; see " + worker.LogPath);
            await Task.Delay(TimeSpan.FromSeconds(1));
        }
        var serviceSeconds = submitted.Elapsed.TotalSeconds;
        var created0 = status["createdAt"]!.GetValue<DateTimeOffset>();
        var started0 = status["startedAt"]!.GetValue<DateTimeOffset>();
        var finished0 = status["finishedAt"]!.GetValue<DateTimeOffset>();
        var queued = (started0 - created0).TotalSeconds;
        var running = (finished0 - started0).TotalSeconds;
        var workerThreads = worker.Output.Split('\n').LastOrDefault(l => l.Contains("LibTorch threads", StringComparison.Ordinal))?.Trim() ?? "?";
        Console.WriteLine($"service: submit to seen Succeeded {serviceSeconds:F1} s (queued {queued:F1} s, ran {running:F1} s); worker: {workerThreads}");
        var engineAfter = await Engine();
        var engineSeconds = (engineBefore.Seconds + engineAfter.Seconds) / 2;
        Console.WriteLine($"service against the engine's mean {engineSeconds:F1} s: {serviceSeconds / engineSeconds:F3}x submit to seen Succeeded, " +
            $"{running / engineSeconds:F3}x the job's own run");

        // 2. A long job's pace, quiet and loaded in alternating windows.
        var longJob = await Submit(http, modelId, datasetId, settings with { Iterations = 10_000_000, EvalInterval = 10_000_000 });
        await WaitUntil(async () => (await Iteration(http, longJob)) > 300, TimeSpan.FromSeconds(120), worker, "the long job to run");
        var windows = new List<Window>();
        foreach (var loaded in new[] { false, true, false, true })
        {
            var (from, t0) = (await Iteration(http, longJob), Stopwatch.GetTimestamp());
            Load? load = loaded ? await Load.RunAsync(http, longJob, rate, window) : null;
            if (!loaded) await Task.Delay(window);
            var (to, t1) = (await Iteration(http, longJob), Stopwatch.GetTimestamp());
            var w = new Window(loaded, (to - from) / Stopwatch.GetElapsedTime(t0, t1).TotalSeconds, load);
            windows.Add(w);
            Console.WriteLine(loaded
                ? $"  loaded: {w.IterationsPerSecond:F0} iterations/s; {load!.Sent} requests in {window.TotalSeconds:F0} s ({load.Sent / window.TotalSeconds:F0}/s), " +
                  $"{load.Failed} not 2xx, {load.Skipped} skipped (64 in flight); p50 {load.P50:F1} ms, p99 {load.P99:F1} ms, max {load.Max:F1} ms"
                : $"  quiet:  {w.IterationsPerSecond:F0} iterations/s");
        }
        var quiet = windows.Where(w => !w.Loaded).Average(w => w.IterationsPerSecond);
        var underLoad = windows.Where(w => w.Loaded).Average(w => w.IterationsPerSecond);
        Console.WriteLine($"pace under {rate} requests/s: {underLoad:F0} / {quiet:F0} iterations/s = {underLoad / quiet:F2}x of quiet");

        // 3. SSE: many clients at once, then connect-disconnect cycles.
        var before = ProcessFigures.Of(api.Id);
        var sse = await ServerSentEvents.RunAsync(http, longJob, sseClients, sseCycles, api.Id);
        await Task.Delay(TimeSpan.FromSeconds(3)); // let closed connections' handlers finish
        var after = ProcessFigures.Of(api.Id);
        Console.WriteLine($"SSE: {sseClients} clients at once got {sse.EventsPerClientMin}-{sse.EventsPerClientMax} events each " +
            $"in {sse.HoldSeconds:F0} s; {sseCycles} connect-disconnect cycles, {sse.CycleFailures} failed");
        Console.WriteLine($"Api threads {before.Threads} before, {sse.During.Threads} with {sseClients} clients, {after.Threads} after; " +
            $"RSS {before.RssMb:F0} MB, {sse.During.RssMb:F0} MB, {after.RssMb:F0} MB");

        await http.PostAsync($"/api/jobs/{longJob}/cancel", null);
        worker.Stop(TimeSpan.FromSeconds(40));
        api.Stop(TimeSpan.FromSeconds(20));
        Console.WriteLine($"load average after: {LoadAverage()}; logs in {logs}");

        if (options.Has("json"))
        {
            var report = new
            {
                cores = Environment.ProcessorCount,
                iterations,
                engine = new { seconds = engineSeconds, before = engineBefore.Seconds, after = engineAfter.Seconds, threads = new[] { engineBefore.Threads, engineAfter.Threads } },
                service = new { seconds = serviceSeconds, ratio = serviceSeconds / engineSeconds, queuedSeconds = queued, runSeconds = running, workerThreads },
                pace = new { rate, windowSeconds = window.TotalSeconds, windows, quiet, underLoad, ratio = underLoad / quiet },
                sse = new { clients = sseClients, cycles = sseCycles, sse.EventsPerClientMin, sse.EventsPerClientMax, sse.CycleFailures, before, during = sse.During, after },
            };
            await File.WriteAllTextAsync(options.Get("json", ""), JsonSerializer.Serialize(report, Json));
        }
        return 0;
    }

    private static async Task<Guid> Submit(HttpClient http, Guid modelId, Guid datasetId, SurgerySettings settings)
    {
        var body = new JsonObject
        {
            ["modelId"] = modelId,
            ["datasetId"] = datasetId,
            ["settings"] = JsonSerializer.SerializeToNode(settings, Json),
        };
        var created = await Expect(await http.PostAsJsonAsync("/api/jobs", body), HttpStatusCode.Accepted);
        return created["id"]!.GetValue<Guid>();
    }

    private static async Task<int> Iteration(HttpClient http, Guid job) =>
        JsonNode.Parse(await http.GetStringAsync($"/api/jobs/{job}"))!["iteration"]!.GetValue<int>();

    internal static async Task<JsonNode> Expect(HttpResponseMessage response, HttpStatusCode status)
    {
        var text = await response.Content.ReadAsStringAsync();
        if (response.StatusCode != status) throw new InvalidOperationException($"{(int)response.StatusCode} from {response.RequestMessage?.RequestUri}: {text}");
        return JsonNode.Parse(text)!;
    }

    internal static async Task<HttpResponseMessage?> TryGet(HttpClient http, string path)
    {
        try
        {
            return await http.GetAsync(path);
        }
        catch (HttpRequestException)
        {
            return null;
        }
    }

    internal static async Task WaitUntil(Func<Task<bool>> condition, TimeSpan timeout, Child process, string what)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (!await condition())
        {
            if (process.HasExited) throw new InvalidOperationException($"waiting for {what}: the process exited; see {process.LogPath}");
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"waited {timeout.TotalSeconds} s for {what}; see {process.LogPath}");
            await Task.Delay(250);
        }
    }

    internal static string FindRoot()
    {
        for (var dir = new DirectoryInfo(Directory.GetCurrentDirectory()); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "SurgeryService.sln"))) return dir.FullName;
        }
        throw new InvalidOperationException("run bench from inside the repository (SurgeryService.sln not found above the current folder)");
    }

    internal static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    private static string LoadAverage() => File.Exists("/proc/loadavg") ? string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "?";

    internal static void Check(int exitCode, string what)
    {
        if (exitCode != 0) throw new InvalidOperationException($"{what} failed ({exitCode})");
    }

    internal static async Task<int> RunToEnd(string file, string[] args)
    {
        using var process = Process.Start(new ProcessStartInfo(file, args) { UseShellExecute = false })!;
        await process.WaitForExitAsync();
        return process.ExitCode;
    }

    private sealed record Window(bool Loaded, double IterationsPerSecond, Load? Load);

    /// <summary>An open-loop load generator: one request every 1/rate s for a bounded time, at most 64 in flight.</summary>
    private sealed record Load(int Sent, int Failed, int Skipped, double P50, double P99, double Max)
    {
        public static async Task<Load> RunAsync(HttpClient http, Guid job, int rate, TimeSpan duration)
        {
            var latencies = new List<double>();
            var failed = 0;
            var skipped = 0;
            var inFlight = new SemaphoreSlim(64);
            var tasks = new List<Task>();
            var latest = 0;
            var clock = Stopwatch.StartNew();
            var total = (int)(duration.TotalSeconds * rate);
            for (var i = 0; i < total; i++)
            {
                var due = TimeSpan.FromSeconds((double)i / rate) - clock.Elapsed;
                if (due > TimeSpan.Zero) await Task.Delay(due);
                if (!inFlight.Wait(0))
                {
                    skipped++;
                    continue;
                }
                var path = i % 2 == 0 ? $"/api/jobs/{job}" : $"/api/jobs/{job}/metrics?from={Math.Max(0, Volatile.Read(ref latest) - 100)}&limit=100";
                var even = i % 2 == 0;
                tasks.Add(Task.Run(async () =>
                {
                    var start = Stopwatch.GetTimestamp();
                    try
                    {
                        using var response = await http.GetAsync(path);
                        var body = await response.Content.ReadAsStringAsync();
                        var ms = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
                        lock (latencies) latencies.Add(ms);
                        if (!response.IsSuccessStatusCode) Interlocked.Increment(ref failed);
                        else if (even) Volatile.Write(ref latest, JsonNode.Parse(body)!["iteration"]!.GetValue<int>());
                    }
                    catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
                    {
                        Interlocked.Increment(ref failed);
                    }
                    finally
                    {
                        inFlight.Release();
                    }
                }));
            }
            await Task.WhenAll(tasks);
            var sorted = latencies.Order().ToList();
            double At(double q) => sorted.Count == 0 ? double.NaN : sorted[Math.Min(sorted.Count - 1, (int)Math.Ceiling(q * sorted.Count) - 1)];
            return new Load(tasks.Count, failed, skipped, At(0.50), At(0.99), sorted.Count == 0 ? double.NaN : sorted[^1]);
        }
    }

    private sealed record ProcessFigures(int Threads, double RssMb)
    {
        /// <summary>Threads and resident memory of a process, from /proc.</summary>
        public static ProcessFigures Of(int pid)
        {
            var lines = File.ReadAllLines($"/proc/{pid}/status");
            long Field(string name) => long.Parse(lines.Single(l => l.StartsWith(name + ":", StringComparison.Ordinal))
                .Split((char[])[' ', '\t'], StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture);
            return new ProcessFigures((int)Field("Threads"), Field("VmRSS") / 1024.0);
        }
    }

    private sealed record ServerSentEvents(int EventsPerClientMin, int EventsPerClientMax, double HoldSeconds, int CycleFailures, ProcessFigures During)
    {
        public static async Task<ServerSentEvents> RunAsync(HttpClient http, Guid job, int clients, int cycles, int apiPid)
        {
            var hold = TimeSpan.FromSeconds(10);
            using var stop = new CancellationTokenSource(hold);
            var counts = await Task.WhenAll(Enumerable.Range(0, clients).Select(_ => Read(http, job, int.MaxValue, stop.Token)));
            // Measured while the clients are connected: the last events arrive just before the hold ends.
            var during = ProcessFigures.Of(apiPid);
            var failures = 0;
            for (var i = 0; i < cycles; i++)
            {
                using var once = new CancellationTokenSource(TimeSpan.FromSeconds(10));
                if (await Read(http, job, 1, once.Token) < 1) failures++;
            }
            return new ServerSentEvents(counts.Min(), counts.Max(), hold.TotalSeconds, failures, during);
        }

        /// <summary>Reads events until <paramref name="max"/> arrived or the token fires, then disconnects.</summary>
        private static async Task<int> Read(HttpClient http, Guid job, int max, CancellationToken token)
        {
            var events = 0;
            try
            {
                using var response = await http.GetAsync($"/api/jobs/{job}/events", HttpCompletionOption.ResponseHeadersRead, token);
                response.EnsureSuccessStatusCode();
                using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(token));
                while (events < max && await reader.ReadLineAsync(token) is { } line)
                {
                    if (line.StartsWith("data:", StringComparison.Ordinal)) events++;
                }
            }
            catch (OperationCanceledException) when (token.IsCancellationRequested)
            {
            }
            return events;
        }
    }

    /// <summary>A service process (Api or Worker) from its build output, its output in a log file.</summary>
    internal sealed class Child : IDisposable
    {
        private readonly Process _process;
        private readonly StreamWriter _log;
        private readonly System.Text.StringBuilder _output = new();

        private Child(Process process, string logPath)
        {
            _process = process;
            LogPath = logPath;
            _log = new StreamWriter(logPath) { AutoFlush = true };
            process.OutputDataReceived += (_, e) => Append(e.Data);
            process.ErrorDataReceived += (_, e) => Append(e.Data);
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
        }

        public string LogPath { get; }
        public int Id => _process.Id;
        public bool HasExited => _process.HasExited;

        public string Output
        {
            get { lock (_output) return _output.ToString(); }
        }

        public static Child Start(string assembly, string logPath, IReadOnlyDictionary<string, string> environment)
        {
            var info = new ProcessStartInfo("dotnet", [assembly])
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
                WorkingDirectory = Path.GetDirectoryName(assembly)!,
            };
            foreach (var (key, value) in environment) info.Environment[key] = value;
            return new Child(Process.Start(info) ?? throw new InvalidOperationException("could not start " + assembly), logPath);
        }

        public void Stop(TimeSpan timeout)
        {
            if (_process.HasExited) return;
            using (var kill = Process.Start("kill", ["-TERM", _process.Id.ToString(CultureInfo.InvariantCulture)])) kill?.WaitForExit();
            if (!_process.WaitForExit(timeout)) _process.Kill(entireProcessTree: true);
        }

        public void Dispose()
        {
            if (!_process.HasExited) _process.Kill(entireProcessTree: true);
            _process.WaitForExit();
            _process.Dispose();
            lock (_output) _log.Dispose();
        }

        private void Append(string? line)
        {
            if (line is null) return;
            lock (_output)
            {
                _output.AppendLine(line);
                _log.WriteLine(line);
            }
        }
    }

    /// <summary>
    /// A private cluster started by scripts/lib/provision.sh in a bash child that lives as long as its standard input:
    /// closing it (or this process dying) stops PostgreSQL. The database <c>surgery_bench</c> is made afresh.
    /// </summary>
    internal sealed class Postgres : IAsyncDisposable
    {
        private const string Script = """
            set -euo pipefail
            source scripts/lib/provision.sh
            ensure_postgres_binaries
            trap stop_postgres EXIT
            start_postgres "$(postgres_dir postgres-bench)"
            "${PG_AS[@]}" "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -q \
              -c 'DROP DATABASE IF EXISTS surgery_bench WITH (FORCE)' -c 'CREATE DATABASE surgery_bench' >&2
            echo "Host=127.0.0.1;Port=$PG_PORT;Username=postgres;Database=surgery_bench"
            cat >/dev/null
            """;

        private readonly Process _process;

        private Postgres(Process process, string connectionString)
        {
            _process = process;
            ConnectionString = connectionString;
        }

        public string ConnectionString { get; }

        public static async Task<Postgres> StartAsync(string root, string logs)
        {
            var info = new ProcessStartInfo("bash", ["-c", Script])
            {
                RedirectStandardInput = true,
                RedirectStandardOutput = true,
                UseShellExecute = false,
                WorkingDirectory = root,
            };
            var process = Process.Start(info)!;
            var line = await process.StandardOutput.ReadLineAsync()
                ?? throw new InvalidOperationException("PostgreSQL did not start (see the messages above)");
            return new Postgres(process, line);
        }

        public async ValueTask DisposeAsync()
        {
            _process.StandardInput.Close();
            await _process.WaitForExitAsync();
            _process.Dispose();
        }
    }

    private sealed class Quiet : ISurgeryObserver
    {
        public void OnIteration(IterationMetrics metrics) { }
        public void OnEvaluation(EvaluationMetrics metrics) { }
        public void OnCheckpointDue(ICheckpointSource source) { }
    }
}
