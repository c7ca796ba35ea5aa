using System.Runtime.CompilerServices;

// Tests seed LibTorch's process-wide generator to build their models and data; test classes running at the same time
// on other threads would reseed it under each other. Tests run one at a time.
[assembly: CollectionBehavior(DisableTestParallelization = true)]

namespace SurgeryService.Domain.Tests;

internal static class TestSetup
{
    /// <summary>
    /// Api.Tests and its Worker processes train at the same time as this assembly: one intra-op thread per process avoids the oversubscription that makes OpenMP's spinning threads crawl on a small machine.
    /// </summary>
    [ModuleInitializer]
    internal static void UseOneTorchThread() => TorchSharp.torch.set_num_threads(1);
}
