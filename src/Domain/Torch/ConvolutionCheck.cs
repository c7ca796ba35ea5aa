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
/// kernels for the rest of the process.
/// </summary>
public static class ConvolutionCheck
{
    private static readonly Lazy<ConvolutionCheckResult> Outcome = new(Run, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>The check's outcome in words: which kernels convolutions run on in this process.</summary>
    public static string Describe(ConvolutionCheckResult result) => result.OneDnnDisabled
        ? $"oneDNN turned off (float32 error {result.Error:g2} of the output's scale; {result.ErrorAfter:g2} with LibTorch's own kernels)"
        : $"oneDNN (float32 error {result.Error:g2} of the output's scale)";

    /// <summary>Runs the check once per process; later calls return the first result.</summary>
    public static ConvolutionCheckResult Ensure() => Outcome.Value;

    private static ConvolutionCheckResult Run()
    {
        var error = RelativeError();
        if (error <= Tolerance) return new ConvolutionCheckResult(error, OneDnnDisabled: false, ErrorAfter: error);
        if (!TryDisableOneDnn())
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

    private static bool TryDisableOneDnn()
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
            Marshal.GetDelegateForFunctionPointer<SetUserEnabled>(setMkldnn)(context, false);
            // Without oneDNN, LibTorch next tries NNPACK, which cannot initialise on such a CPU and says so on every
            // convolution; its own kernels (im2col and GEMM) are what remains.
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
