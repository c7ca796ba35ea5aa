using System.Diagnostics;
using System.Globalization;
using System.Reflection;
using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace SurgeryService.Domain.Torch;

/// <summary>
/// LibTorch runs float32 convolutions on the CPU through oneDNN's JIT kernels. On some processors (seen on an AMD
/// EPYC of family 26, "Zen 5", where oneDNN 3.7's AVX2 and AVX-512 kernels are selected) those kernels return wrong
/// results: a LeNet-5 forward pass was off by 0.037 on outputs of size 0.19, while ONNX Runtime and LibTorch in
/// float64 agreed to 1e-7. Training on such a convolution silently learns a different function than the one a user
/// deploys. Before the first convolution of the process this check compares a float32 convolution with its float64
/// counterpart (which never goes through oneDNN) and, when they disagree, switches LibTorch to its own convolution
/// kernels for the rest of the process. A process that calls <see cref="ChooseInstructionSet"/> first (the Worker, bench)
/// avoids that where it can: its oneDNN is capped at SSE4.1, which computes right on that processor and faster than
/// LibTorch's own kernels.
/// </summary>
public static class ConvolutionCheck
{
    private static readonly Lazy<ConvolutionCheckResult> Outcome = new(Run, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>oneDNN's cap on the instruction sets its kernels use, read once, at its first kernel.</summary>
    private const string IsaVariable = "DNNL_MAX_CPU_ISA";

    /// <summary>Set in the child process that <see cref="ChooseInstructionSet"/> asks.</summary>
    private const string ChildVariable = "SURGERY_CONVOLUTION_CHECK_CHILD";

    private const string ChildAnswer = "convolution-check-error";

    /// <summary>The cap this process set, or null.</summary>
    private static string? _cap;

    /// <summary>The check's outcome in words: which kernels convolutions run on in this process.</summary>
    public static string Describe(ConvolutionCheckResult result) => result.OneDnnDisabled
        ? $"oneDNN turned off (float32 error {result.Error:g2} of the output's scale; {result.ErrorAfter:g2} with LibTorch's own kernels)"
        : $"oneDNN{(_cap is null ? "" : $" capped at {IsaVariable}={_cap}")} (float32 error {result.Error:g2} of the output's scale)";

    /// <summary>
    /// The first call of a process's Main, before anything touches TorchSharp. oneDNN chooses its instruction set once,
    /// from <c>DNNL_MAX_CPU_ISA</c>, so whether the one it would choose computes right cannot be asked in this process
    /// without fixing the choice. A child process (this program again, which answers here and exits) runs the check;
    /// when it finds oneDNN wrong, this process caps oneDNN at SSE4.1 in its native environment (which oneDNN's getenv
    /// reads; .NET keeps its own copy, and child processes get that copy). Where the wide kernels were wrong, SSE4.1's
    /// were right, and ResNet-18 trained at 1.12 s per iteration against 1.47 s on LibTorch's own kernels
    /// (docs/operations.md#convolutions-and-onednn). <see cref="Ensure"/>
    /// still checks this process and turns oneDNN off should the capped kernels be wrong too. An operator's
    /// <c>DNNL_MAX_CPU_ISA</c> is left as it is. Returns what it did, for the log.
    /// </summary>
    public static string ChooseInstructionSet()
    {
        if (Environment.GetEnvironmentVariable(ChildVariable) == "1")
        {
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{ChildAnswer} {RelativeError():R}"));
            Environment.Exit(0);
        }
        if (Environment.GetEnvironmentVariable(IsaVariable) is { Length: > 0 } set) return $"{IsaVariable}={set}, set by the operator";
        if (OperatingSystem.IsWindows()) return "oneDNN's own choice (not asked on Windows)";
        var error = ErrorInChildProcess();
        if (error is null) return "oneDNN's own choice (the child process that checks it did not answer)";
        if (error <= Tolerance) return $"oneDNN's own choice (float32 error {error:g2} in a child process)";
        if (SetEnv(IsaVariable, "SSE41", 1) != 0) return $"oneDNN's own choice, wrong by {error:g2} (setenv failed)";
        _cap = "SSE41";
        return $"{IsaVariable}=SSE41: oneDNN's own choice was wrong by {error:g2} of the output's scale in a child process";
    }

    /// <summary>The check's error in a child process of this program, or null when it does not answer in a minute.</summary>
    private static double? ErrorInChildProcess()
    {
        if (Environment.ProcessPath is not { } path) return null;
        var info = new ProcessStartInfo(path) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        // Started as 'dotnet program.dll': the child needs the program's path too.
        if (Path.GetFileNameWithoutExtension(path) == "dotnet" && Assembly.GetEntryAssembly()?.Location is { Length: > 0 } entry)
        {
            info.ArgumentList.Add(entry);
        }
        info.Environment[ChildVariable] = "1";
        try
        {
            using var child = Process.Start(info)!;
            _ = child.StandardError.ReadToEndAsync(); // drained, so a chatty child never blocks on a full pipe
            var output = child.StandardOutput.ReadToEndAsync();
            if (!child.WaitForExit(60_000))
            {
                child.Kill(entireProcessTree: true);
                return null;
            }
            var answer = output.Result.Split('\n').FirstOrDefault(l => l.StartsWith(ChildAnswer + " ", StringComparison.Ordinal));
            return answer is not null && double.TryParse(answer[(ChildAnswer.Length + 1)..], NumberStyles.Float, CultureInfo.InvariantCulture, out var value)
                ? value
                : null;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return null;
        }
    }

    [DllImport("libc", EntryPoint = "setenv", CharSet = CharSet.Ansi, BestFitMapping = false, ThrowOnUnmappableChar = true)]
    private static extern int SetEnv(string name, string value, int overwrite);

    /// <summary>Runs the check once per process; later calls return the first result.</summary>
    public static ConvolutionCheckResult Ensure() => Outcome.Value;

    private static ConvolutionCheckResult Run()
    {
        // Capped, oneDNN is right (checked below), and NNPACK is as unable to start as it was without the cap.
        if (_cap is not null) TrySwitchOff(oneDnn: false);
        var error = RelativeError();
        if (error <= Tolerance) return new ConvolutionCheckResult(error, OneDnnDisabled: false, ErrorAfter: error);
        if (!TrySwitchOff(oneDnn: true))
        {
            throw new InvalidOperationException(
                $"LibTorch's float32 convolution is wrong on this CPU (relative error {error:g3}) and oneDNN cannot be " +
                "switched off on this platform; set DNNL_MAX_CPU_ISA=SSE41 in the environment before starting the process");
        }
        var after = RelativeError();
        if (after > Tolerance)
        {
            throw new InvalidOperationException(
                $"LibTorch's float32 convolution is wrong on this CPU (relative error {error:g3}, {after:g3} without oneDNN)");
        }
        return new ConvolutionCheckResult(error, OneDnnDisabled: true, ErrorAfter: after);
    }

    /// <summary>Float32 rounding in a 500-term sum stays near 1e-6 of the output's scale; a wrong kernel is far above.</summary>
    private const double Tolerance = 1e-4;

    /// <summary>The largest float32-vs-float64 difference over LeNet-like convolutions, relative to the output's scale.</summary>
    private static double RelativeError()
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        using var generator = new Generator(12345);
        double worst = 0;
        foreach (var (input, weight) in new (long[], long[])[] { ([4, 1, 28, 28], [20, 1, 5, 5]), ([4, 20, 12, 12], [50, 20, 5, 5]) })
        {
            var x = randn(input, generator: generator);
            var w = randn(weight, generator: generator);
            var b = randn(weight[0], generator: generator);
            var reference = nn.functional.conv2d(x.to(float64), w.to(float64), b.to(float64));
            var actual = nn.functional.conv2d(x, w, b).to(float64);
            var scale = reference.abs().max().item<double>();
            worst = Math.Max(worst, (actual - reference).abs().max().item<double>() / Math.Max(scale, 1e-12));
        }
        return worst;
    }

    /// <summary>
    /// <c>at::globalContext().setUserEnabledMkldnn(false)</c>, the switch behind PyTorch's
    /// <c>torch.backends.mkldnn.enabled = False</c>, and the same for NNPACK. TorchSharp 0.107 does not wrap it, so it is called through its
    /// exported Itanium-ABI symbols (Linux and macOS; the member function takes <c>this</c> as its first argument).
    /// </summary>
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate IntPtr GlobalContext();

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate void SetUserEnabled(IntPtr context, [MarshalAs(UnmanagedType.U1)] bool enabled);

    /// <summary>
    /// Switches NNPACK off, and oneDNN too when <paramref name="oneDnn"/>. Without oneDNN, or for a convolution oneDNN
    /// does not take, LibTorch next tries NNPACK, which cannot initialise on the processors where oneDNN was wrong and
    /// says so in a warning per attempt; its own kernels (im2col and GEMM) are what remains.
    /// </summary>
    private static bool TrySwitchOff(bool oneDnn)
    {
        if (OperatingSystem.IsWindows()) return false;
        foreach (var name in new[] { "libtorch_cpu.so", "libtorch_cpu.dylib" })
        {
            if (!NativeLibrary.TryLoad(name, typeof(ConvolutionCheck).Assembly, null, out var library)) continue;
            if (!NativeLibrary.TryGetExport(library, "_ZN2at13globalContextEv", out var globalContext)
                || !NativeLibrary.TryGetExport(library, "_ZN2at7Context20setUserEnabledMkldnnEb", out var setMkldnn))
            {
                return false;
            }
            var context = Marshal.GetDelegateForFunctionPointer<GlobalContext>(globalContext)();
            if (oneDnn) Marshal.GetDelegateForFunctionPointer<SetUserEnabled>(setMkldnn)(context, false);
            if (NativeLibrary.TryGetExport(library, "_ZN2at7Context20setUserEnabledNNPACKEb", out var setNnpack))
            {
                Marshal.GetDelegateForFunctionPointer<SetUserEnabled>(setNnpack)(context, false);
            }
            return true;
        }
        return false;
    }
}

/// <summary>What <see cref="ConvolutionCheck"/> found: the relative error before and after, and whether it turned oneDNN off.</summary>
public sealed record ConvolutionCheckResult(double Error, bool OneDnnDisabled, double ErrorAfter);
