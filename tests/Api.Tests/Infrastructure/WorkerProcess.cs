using System.Diagnostics;
using System.Text;

namespace SurgeryService.Api.Tests.Infrastructure;

/// <summary>The real Worker executable (src/Worker's build output) started as a child process.</summary>
public sealed class WorkerProcess : IDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _output = new();

    private WorkerProcess(Process process)
    {
        _process = process;
        process.OutputDataReceived += (_, e) => Append(e.Data);
        process.ErrorDataReceived += (_, e) => Append(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
    }

    public int Id => _process.Id;
    public bool HasExited => _process.HasExited;

    public string Output
    {
        get { lock (_output) { return _output.ToString(); } }
    }

    public static WorkerProcess Start(string connectionString, IReadOnlyDictionary<string, string>? environment = null)
    {
        var info = new ProcessStartInfo("dotnet", [WorkerAssemblyPath()])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = Path.GetDirectoryName(WorkerAssemblyPath())!,
        };
        info.Environment["ConnectionStrings__Surgery"] = connectionString;
        info.Environment["DOTNET_ENVIRONMENT"] = "Development";
        foreach (var (key, value) in environment ?? new Dictionary<string, string>())
        {
            info.Environment[key] = value;
        }
        return new WorkerProcess(Process.Start(info) ?? throw new InvalidOperationException("could not start the Worker"));
    }

    /// <summary>Kills the process at once, as a lost machine would: no graceful shutdown.</summary>
    public void Kill()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            _process.WaitForExit();
        }
    }

    /// <summary>Asks the process to stop (SIGTERM, as a deploy or <c>docker stop</c> would) and waits for it to exit.</summary>
    public bool Stop(TimeSpan timeout)
    {
        if (_process.HasExited) return true;
        using (var kill = Process.Start("kill", ["-TERM", _process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]))
        {
            kill?.WaitForExit();
        }
        return _process.WaitForExit(timeout);
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

    private static string WorkerAssemblyPath()
    {
        // tests/Api.Tests/bin/<Configuration>/net10.0/ -> src/Worker/bin/<Configuration>/net10.0/
        var testBin = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar));
        var configuration = testBin.Parent!.Name;
        var root = testBin;
        while (root is not null && !File.Exists(Path.Combine(root.FullName, "SurgeryService.sln")))
        {
            root = root.Parent;
        }
        if (root is null) throw new InvalidOperationException("SurgeryService.sln not found above " + AppContext.BaseDirectory);
        var path = Path.Combine(root.FullName, "src", "Worker", "bin", configuration, testBin.Name, "SurgeryService.Worker.dll");
        return File.Exists(path) ? path : throw new FileNotFoundException("Build the Worker first", path);
    }
}
