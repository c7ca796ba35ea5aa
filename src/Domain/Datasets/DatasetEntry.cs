namespace SurgeryService.Domain.Datasets;

public enum DatasetFormat
{
    /// <summary>A zip of the four MNIST-style IDX files (train/test images and labels).</summary>
    Idx,

    /// <summary>A NumPy <c>.npz</c> with <c>x_train</c>, <c>y_train</c>, <c>x_test</c>, <c>y_test</c>.</summary>
    Npz,
}

/// <summary>An uploaded (or built-in) labelled data set: its file lives in an artifact, its shapes here.</summary>
public sealed class DatasetEntry
{
    public Guid Id { get; set; }

    /// <summary>The owner; <c>null</c> for a built-in data set every tenant sees.</summary>
    public string? TenantId { get; set; }

    public required string Name { get; set; }
    public DatasetFormat Format { get; set; }
    public bool BuiltIn { get; set; }
    public Guid ArtifactId { get; set; }
    public long Size { get; set; }
    public required string Sha256 { get; set; }

    /// <summary>Shape of one sample, without the leading count.</summary>
    public long[] SampleShape { get; set; } = [];

    /// <summary>Element type of the stored inputs (<c>uint8</c>, <c>float32</c>, ...).</summary>
    public required string InputType { get; set; }

    public int ClassCount { get; set; }
    public long TrainCount { get; set; }
    public long TestCount { get; set; }

    /// <summary>Samples of the data set's own validation split (0: it has none, and jobs hold validation samples out of training).</summary>
    public long ValidationCount { get; set; }
    public DateTimeOffset CreatedAt { get; set; }
}
