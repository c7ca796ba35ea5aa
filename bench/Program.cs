using SurgeryService.Bench;

// Before anything touches TorchSharp, as the Worker does (the child process it starts answers and exits here).
var convolutions = SurgeryService.Domain.Torch.ConvolutionCheck.ChooseInstructionSet();

// Benchmarks that print figures; never run by the test suite. The engine runs with the Worker's allocator settings
// unless --glibc-default asks for glibc's own (to measure what the settings change).
if (args.Contains("--glibc-default")) Console.WriteLine("allocator: glibc's defaults");
else Console.WriteLine($"allocator: freed tensor memory kept for reuse: {SurgeryService.Domain.Torch.ProcessMemory.KeepFreedTensorMemory()}");
Console.WriteLine($"oneDNN's instruction set: {convolutions}");
return args switch
{
    ["reproduce", var architecture, .. var rest] => Reproduce.Run(architecture, rest),
    ["threads", .. var rest] => Threads.Run(rest),
    ["service", .. var rest] => await Service.Run(rest),
    ["service-large", .. var rest] => await ServiceLarge.Run(rest),
    ["threads-child", .. var rest] => Threads.Child(rest),
    ["target", var architecture, .. var rest] => Target.Run(architecture, rest),
    ["upload-memory", .. var rest] => UploadMemory.Run(rest),
    ["int8", var architecture, .. var rest] => Int8.Run(architecture, rest),
    ["large", .. var rest] => Large.Run(rest),
    ["pace", var model, .. var rest] => Pace.Run(model, rest),
    ["evaluation-batch", .. var rest] => EvaluationBatch.Run(rest),
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
        usage: dotnet run -c Release --project bench -- target <lenet-300-100|lenet-5|MODEL.onnx> [options]
          MODEL.onnx                 a model file with its sidecar MODEL.json (bench/models/make_mnist_models.py), sent
                                     with no settings but the budget (learning rate probed, the service's own split)
          --max-drop P               validation top-1 points the search may lose (default 0.1)
          --seeds N, --first-seed S  seeds S..S+N-1 (default 3 seeds from 1)
          --max-iterations N         iterations of the whole search (default: the recipe's)
          --max-minutes M            the search's time budget (target.maxMinutes; default none)
          --method dns|magnitude     surgery method (default dns)
          --optimizer sgd|adam       the optimizer (default: the recipe's, or the service's default for a model file)
          --bias-lr-mult X           biases learn at X times the rate (Caffe's lr_mult; default 1)
          --dense-on-all             start from a dense reference trained on every training image, validation ones included
          --json FILE, --threads N, --mnist DIR   as for reproduce
               dotnet run -c Release --project bench -- threads [--seconds S] [--model NAME] [--evaluate]
          iterations/s for 1 vs 2 LibTorch threads and passive vs active OpenMP waiting, per model size,
          alone and beside a second training process; --evaluate: evaluations/s of 6000 samples instead
               dotnet run -c Release --project bench -- service [options]
          the real Api and Worker on a private PostgreSQL, driven over HTTP on 127.0.0.1 (LeNet-300-100 DNS recipe)
          --iterations N             iterations of the compared job (default 100000, the recipe's)
          --window S                 seconds per quiet or loaded window (default 15; four windows)
          --rate R                   requests/s of the load generator (default 200)
          --sse-clients N, --sse-cycles N   (defaults 50 and 100)
          --threads N                fix LibTorch threads in the engine and the Worker (default: measured per job)
          --no-build                 use the existing Release builds of src/Api and src/Worker
          --json FILE                also write the figures as JSON
        usage: dotnet run -c Release --project bench -- service-large [--model resnet18|vgg11_bn] [--size 64] [--batch 64] [--iterations 20] [--threads N] [--linger S] [--no-build]
          ResNet-18 (42.6 MB ONNX; VGG11-BN: 515 MB, size 224 and batch 8 by default) and random images through the real
          Api and Worker on a private PostgreSQL: the Api's memory during the upload, the Worker's account of the time
          from the last iteration to the stored results, and its memory before, at peak and after; --linger keeps both up
          S seconds after the job, to inspect them
        usage: dotnet run -c Release --project bench -- large [--model resnet18|vgg11_bn] [--size 64] [--batch 64] [--threads N] [--iterations 10]
          (VGG11-BN needs --size 224: PyTorch exports its 7x7 average pool only from 7x7 features)
          ResNet-18 or VGG11-BN from PyTorch (Debian's /usr/bin/python3 with python3-torch) through the engine in this process: peak
          memory against the weight bytes, memory after release, time after the last iteration, s/iteration vs PyTorch
        usage: dotnet run -c Release --project bench -- pace MODEL.onnx [--batch 64] [--threads N] [--iterations 50] [--rounds 3]
          seconds per training iteration of a bench/models file in the engine vs PyTorch's loop on the same architecture
          (make_mnist_models.py --pace), same threads and batch, alternating rounds in one run; prints each ratio
        usage: dotnet run -c Release --project bench -- evaluation-batch [lenet-300-100|lenet-5|MODEL.onnx ...] [--threads N]
          seconds per evaluation of 6000 test images at batches of 1000, 256, 128, 64 and 32, and the trainer's own
          --glibc-default (any command)   leave glibc's malloc settings as they are instead of the Worker's
        usage: dotnet run -c Release --project bench -- upload-memory --url URL --key KEY --pid PID [--model-mb 300]
          (run by bench/upload-memory.sh: the Api's peak RSS while refusing bombs and accepting a large model)
        usage: dotnet run -c Release --project bench -- int8 <lenet-300-100|lenet-5|MODEL.onnx> [options]
          the dense reference as an ONNX upload, a DNS surgery on it, int8 QDQ quantization, all measured in ONNX Runtime;
          a MODEL.onnx (bench/models, inputs scaled as its sidecar JSON says) goes through budget mode instead
          --iterations N             surgery iterations (default 3000; the recipe's schedule is scaled to them)
          --max-drop P, --max-minutes M   a model file's budget (default 0.5 points) and time budget (default none)
          --dense-iterations N       iterations of the dense reference (default 3000, cached in .data/bench)
          --calibration N            training samples for min/max calibration (default 1000)
          --activations int8|uint8   activation type (default int8: S8S8)
          --ort-threads N            ONNX Runtime intra-op threads (default 1)
          --runs N, --warmup N       latency runs per batch size after warm-up (default 200, 20)
          --save DIR                 also write the five ONNX files there
          --json FILE, --threads N, --mnist DIR   as for reproduce
        """);
    return 2;
}
