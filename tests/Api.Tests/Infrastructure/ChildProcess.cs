using System.Diagnostics;
using System.Text;

namespace SurgeryService.Api.Tests.Infrastructure;

/// <summary>
/// A service executable of this solution (its build output) run as a child process against a test database, its
/// output kept for failure messages: the Api (<see cref="ApiProcess"/>) or the Worker (<see cref="WorkerProcess"/>).
/// </summary>
public abstract class ChildProcess : IDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _output = new();

    protected ChildProcess(Process process)
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

    /// <summary>Starts <paramref name="assembly"/> of <paramref name="project"/> in Development with the connection string and settings.</summary>
    protected static Process Launch(string project, string assembly, string connectionString, IReadOnlyDictionary<string, string> environment)
    {
        var path = BuildOutput.Path(project, assembly);
        var info = new ProcessStartInfo("dotnet", [path])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = Path.GetDirectoryName(path)!,
        };
        info.Environment["ConnectionStrings__Surgery"] = connectionString;
        info.Environment["DOTNET_ENVIRONMENT"] = "Development";
        foreach (var (key, value) in environment) info.Environment[key] = value;
        return Process.Start(info) ?? throw new InvalidOperationException($"could not start the {project}");
    }

    /// <summary>Kills the process at once, as a crash, the OOM killer or a lost machine would: no graceful shutdown.</summary>
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
        GC.SuppressFinalize(this);
    }

    private void Append(string? line)
    {
        if (line is null) return;
        lock (_output) { _output.AppendLine(line); }
    }
}

/// <summary>Where the build output of a project of this solution lies, next to this test assembly's.</summary>
public static class BuildOutput
{
    public static string Path(string project, string assembly)
    {
        // tests/Api.Tests/bin/<Configuration>/net10.0/ -> src/<project>/bin/<Configuration>/net10.0/
        var testBin = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(System.IO.Path.DirectorySeparatorChar));
        var path = System.IO.Path.Combine(RepositoryRoot(), "src", project, "bin", testBin.Parent!.Name, testBin.Name, assembly);
        return File.Exists(path) ? path : throw new FileNotFoundException($"Build {project} first", path);
    }

    public static string RepositoryRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(System.IO.Path.Combine(dir.FullName, "SurgeryService.sln"))) dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("SurgeryService.sln not found above " + AppContext.BaseDirectory);
    }
}
