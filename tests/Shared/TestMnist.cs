using SurgeryService.Domain.Datasets;

namespace SurgeryService.Tests.Shared;

/// <summary>
/// Where the tests find MNIST's four IDX files: <c>$SURGERY_MNIST_DIR</c> (scripts/test.sh fetches MNIST and sets it),
/// else <c>.data/datasets/mnist</c> in a folder above the test binaries. Compiled into both test projects.
/// </summary>
internal static class TestMnist
{
    private static readonly Lazy<string> Located = new(Locate);

    public static string Directory => Located.Value;

    private static string Locate()
    {
        var fromEnvironment = Environment.GetEnvironmentVariable("SURGERY_MNIST_DIR");
        if (!string.IsNullOrEmpty(fromEnvironment)) return fromEnvironment;
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, ".data", "datasets", "mnist");
            if (Mnist.IsPresent(candidate)) return candidate;
        }
        throw new InvalidOperationException("MNIST not found: run the tests with ./scripts/test.sh, which fetches MNIST and sets SURGERY_MNIST_DIR");
    }
}
