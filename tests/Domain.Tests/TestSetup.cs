using System.Runtime.CompilerServices;

namespace SurgeryService.Domain.Tests;

internal static class TestSetup
{
    /// <summary>
    /// xunit runs test classes in parallel, and other test processes may train at the same time: one intra-op thread
    /// per process avoids the oversubscription that makes OpenMP's spinning threads crawl on a small machine.
    /// </summary>
    [ModuleInitializer]
    internal static void UseOneTorchThread() => TorchSharp.torch.set_num_threads(1);
}
