using System.Runtime.InteropServices;

namespace SurgeryService.Domain.Surgery;

/// <summary>
/// LibTorch's OpenMP threads spin between parallel regions by default (OMP_WAIT_POLICY=ACTIVE behaviour). On a machine
/// shared with the Api, PostgreSQL or another job, a spinning thread takes the core the others need: on two busy
/// cores, two threads trained a 6k-weight model at 106 iterations/s waiting actively and 2,193 waiting passively
/// (bench -- threads, README). Passive waiting sleeps instead of spinning.
/// </summary>
public static class OpenMpWaitPolicy
{
    /// <summary>
    /// Sets OMP_WAIT_POLICY=PASSIVE unless the operator set a policy. Must run before the first torch call: OpenMP reads
    /// it once, when LibTorch loads. On Unix .NET keeps its own copy of the environment, so the native one is set with
    /// libc's setenv, which OpenMP's getenv reads.
    /// </summary>
    public static string PassiveUnlessSet()
    {
        if (Environment.GetEnvironmentVariable("OMP_WAIT_POLICY") is { Length: > 0 } set) return set + " (set by the operator)";
        if (OperatingSystem.IsWindows())
        {
            Environment.SetEnvironmentVariable("OMP_WAIT_POLICY", "PASSIVE");
        }
        else if (SetEnv("OMP_WAIT_POLICY", "PASSIVE", 0) != 0)
        {
            return "default (setenv failed)";
        }
        return "PASSIVE";
    }

    [DllImport("libc", EntryPoint = "setenv", CharSet = CharSet.Ansi, BestFitMapping = false, ThrowOnUnmappableChar = true)]
    private static extern int SetEnv(string name, string value, int overwrite);
}
