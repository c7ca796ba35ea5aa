using SurgeryService.Bench;

// Benchmarks that print figures; never run by the test suite.
return args switch
{
    ["reproduce", var architecture, .. var rest] => Reproduce.Run(architecture, rest),
    ["target", var architecture, .. var rest] => Target.Run(architecture, rest),
    _ => Usage(),
};

static int Usage()
{
    Console.Error.WriteLine("""
        usage: dotnet run -c Release --project bench -- reproduce <lenet-300-100|lenet-5> [options]
          --method dns|magnitude     surgery method (default dns)
          --iterations N             surgery iterations (default: the architecture's recipe)
          --settings FILE            surgery settings as JSON (SurgerySettings), replacing the recipe
          --dense-iterations N       iterations of the dense reference (cached in .data/bench; 10000, lenet-5 15000)
          --json FILE                also write the figures as JSON
          --no-cost                  skip the dense-vs-surgery iteration cost measurement
          --cost-only                measure the iteration cost only (no surgery run)
          --threads N                torch intra-op threads (default: LibTorch's, one per core)
          --mnist DIR                MNIST IDX folder (default .data/datasets/mnist or $SURGERY_MNIST_DIR)
        usage: dotnet run -c Release --project bench -- target <lenet-300-100|lenet-5> [options]
          --max-drop P               validation top-1 points the search may lose (default 0.1)
          --seeds N, --first-seed S  seeds S..S+N-1 (default 3 seeds from 1)
          --max-iterations N         iterations of the whole search (default: the recipe's)
          --method dns|magnitude     surgery method (default dns)
          --bias-lr-mult X           biases learn at X times the rate (Caffe's lr_mult; default 1)
          --json FILE, --threads N, --mnist DIR   as for reproduce
        """);
    return 2;
}
