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
    private delegate int Mallopt(int parameter, int value);

    private static readonly Lazy<MallocTrim?> Trim = new(FindMallocTrim);

    /// <summary>glibc's <c>M_TRIM_THRESHOLD</c> and <c>M_MMAP_THRESHOLD</c> (malloc.h).</summary>
    private const int TrimThreshold = -1, MmapThreshold = -3;

    /// <summary>Blocks up to this size come from malloc's arenas and are reused; larger ones are mapped for each tensor.</summary>
    public const int ReusedBlockBytes = 32 << 20;

    /// <summary>
    /// Makes glibc keep freed tensor memory for the next tensor instead of handing it back to the kernel and faulting it
    /// in again, zeroed, at the next allocation, for a process that trains (the Worker, the benches). By default glibc
    /// maps every block over its mmap threshold for that block alone and trims an arena's free top above its trim
    /// threshold; its dynamic threshold adjusts only sometimes, so the same evaluation of a residual CNN took 1.7 s or
    /// 18 s (docs/benchmarks.md#evaluation-batch). Here blocks up to <see cref="ReusedBlockBytes"/> stay in the arenas and
    /// nothing is trimmed on the fly: <see cref="Release"/> trims explicitly after each job. Returns whether glibc took
    /// both settings (false elsewhere: musl, macOS and Windows have their own allocators).
    /// </summary>
    public static bool KeepFreedTensorMemory()
    {
        if (GlibcFunction<Mallopt>("mallopt") is not { } mallopt) return false;
        return mallopt(MmapThreshold, ReusedBlockBytes) == 1 & mallopt(TrimThreshold, int.MaxValue) == 1;
    }

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

    /// <summary>
    /// Where the process's memory is, for the log after a job: the .NET heap's committed bytes, and glibc malloc's bytes
    /// in use, free in its arenas and mapped for large blocks (<c>mallinfo2</c>; zeros elsewhere).
    /// </summary>
    public static string Account()
    {
        var managed = GC.GetGCMemoryInfo().TotalCommittedBytes;
        var live = GC.GetTotalMemory(forceFullCollection: false);
        var native = Info.Value?.Invoke() ?? default;
        return FormattableString.Invariant(
            $"managed heap {managed >> 20} MB committed, {live >> 20} MB live; malloc {(long)native.InUse >> 20} MB in use, {(long)native.Free >> 20} MB free in arenas, {(long)native.Mapped >> 20} MB mapped");
    }

    private static readonly Lazy<MallInfo2?> Info = new(() => GlibcFunction<MallInfo2>("mallinfo2"));

    private delegate MallocStatistics MallInfo2();

    /// <summary>glibc's <c>struct mallinfo2</c> (malloc.h), every field a size_t.</summary>
    [StructLayout(LayoutKind.Sequential)]
    private readonly struct MallocStatistics
    {
        public readonly nuint Arena, FreeChunks, FastBlocks, MappedRegions, Mapped, MaxTotal, FastFree, InUse, Free, Keep;
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
    private static MallocTrim? FindMallocTrim() => GlibcFunction<MallocTrim>("malloc_trim");

    /// <summary>A function of glibc's libc.so.6 as a delegate; null on other systems and C libraries.</summary>
    private static T? GlibcFunction<T>(string name) where T : Delegate =>
        OperatingSystem.IsLinux() && NativeLibrary.TryLoad("libc.so.6", out var libc) && NativeLibrary.TryGetExport(libc, name, out var export)
            ? Marshal.GetDelegateForFunctionPointer<T>(export)
            : null;
}
