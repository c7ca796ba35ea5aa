namespace SurgeryService.Domain.Artifacts;

public enum ArtifactKind
{
    ModelUpload,
    DatasetUpload,
    Checkpoint,
    Result,
}

/// <summary>
/// A file kept in PostgreSQL as a row of metadata plus <see cref="ArtifactChunk"/> rows of bytea, so every worker machine
/// needs only the connection string. Written and read as a stream through <c>ArtifactStore</c> (in Infrastructure).
/// </summary>
public sealed class Artifact
{
    public Guid Id { get; set; }

    /// <summary>The owner; <c>null</c> for built-in content every tenant may read (the built-in MNIST).</summary>
    public string? TenantId { get; set; }

    public ArtifactKind Kind { get; set; }
    public required string FileName { get; set; }
    public required string ContentType { get; set; }
    public long Size { get; set; }

    /// <summary>Lower-case hex SHA-256 of the content.</summary>
    public required string Sha256 { get; set; }

    public int ChunkCount { get; set; }
    public DateTimeOffset CreatedAt { get; set; }
}

/// <summary>One piece of an artifact's content, in order of <see cref="Index"/>.</summary>
public sealed class ArtifactChunk
{
    public Guid ArtifactId { get; set; }
    public int Index { get; set; }
    public required byte[] Data { get; set; }
}
