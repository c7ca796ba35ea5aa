using System.Runtime;
using System.Runtime.InteropServices;

namespace SurgeryService.Domain.Torch;

/// <summary>
/// Gives memory back to the operating system after a large piece of work (a job, a model upload), so that an idle
/// process returns near its baseline instead of keeping its peak: a compacting collection of every generation and the
/// large object heap, the finalizers of TorchSharp tensors nobody disposed, and on glibc <c>malloc_trim(0)</c>. LibTorch's
/// CPU allocator uses malloc; glibc keeps freed blocks in its arenas (and raises its mmap threshold after each large
/// free, so later large tensors land in the arenas too), and only a trim returns the free pages in them.
/// </summary>
public static class ProcessMemory
{
    private delegate int MallocTrim(nuint pad);

    private static readonly Lazy<MallocTrim?> Trim = new(FindMallocTrim);

    /// <summary>Collects, compacts and trims. Blocks the calling thread for a collection of the whole heap (tens of ms).</summary>
    public static void Release()
    {
        GCSettings.LargeObjectHeapCompactionMode = GCLargeObjectHeapCompactionMode.CompactOnce;
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true, compacting: true);
        GC.WaitForPendingFinalizers();
        // Aggressive also decommits the GC's free regions instead of keeping them for the next allocation.
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        Trim.Value?.Invoke(0);
    }

    /// <summary>The process's resident set (VmRSS) in bytes; null where /proc is not available.</summary>
    public static long? ResidentBytes() => StatusKilobytes("VmRSS:") * 1024;

    /// <summary>The process's peak resident set so far (VmHWM) in bytes; null where /proc is not available.</summary>
    public static long? PeakResidentBytes() => StatusKilobytes("VmHWM:") * 1024;

    private static long? StatusKilobytes(string field)
    {
        if (!OperatingSystem.IsLinux()) return null;
        var line = File.ReadLines("/proc/self/status").FirstOrDefault(l => l.StartsWith(field, StringComparison.Ordinal));
        return line is null ? null : long.Parse(line[field.Length..].Trim().Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture);
    }

    // glibc only: musl (Alpine), macOS and Windows have no malloc_trim, and their allocators return memory themselves.
    private static MallocTrim? FindMallocTrim() =>
        OperatingSystem.IsLinux() && NativeLibrary.TryLoad("libc.so.6", out var libc) && NativeLibrary.TryGetExport(libc, "malloc_trim", out var trim)
            ? Marshal.GetDelegateForFunctionPointer<MallocTrim>(trim)
            : null;
}
