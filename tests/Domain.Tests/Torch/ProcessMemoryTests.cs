using SurgeryService.Domain.Torch;
using static TorchSharp.torch;

namespace SurgeryService.Domain.Tests.Torch;

public sealed class ProcessMemoryTests
{
    [Fact]
    public void OnGlibcFreedTensorMemoryIsKeptForReuseAndAReleaseStillGivesItBack()
    {
        if (!File.Exists("/lib/x86_64-linux-gnu/libc.so.6") && !File.Exists("/lib/aarch64-linux-gnu/libc.so.6")) return; // not glibc

        Assert.True(ProcessMemory.KeepFreedTensorMemory());

        // 64 tensors of 16 MB (each under the 32 MB reuse limit), freed: with nothing trimmed on the fly the memory stays,
        // and the explicit release after a job gives it back.
        var before = ProcessMemory.ResidentBytes()!.Value;
        var tensors = Enumerable.Range(0, 64).Select(_ => ones(4 << 20)).ToList();
        foreach (var t in tensors) t.Dispose();
        var kept = ProcessMemory.ResidentBytes()!.Value;
        ProcessMemory.Release();
        var released = ProcessMemory.ResidentBytes()!.Value;

        Assert.True(kept - before > 512L << 20, $"freed tensors kept: {(kept - before) >> 20} MB");
        Assert.True(kept - released > 512L << 20, $"given back by the release: {(kept - released) >> 20} MB");
    }
}
