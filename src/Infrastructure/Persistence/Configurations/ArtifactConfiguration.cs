using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;
using SurgeryService.Domain;
using SurgeryService.Domain.Artifacts;

namespace SurgeryService.Infrastructure.Persistence.Configurations;

internal sealed class ArtifactConfiguration : IEntityTypeConfiguration<Artifact>
{
    public void Configure(EntityTypeBuilder<Artifact> artifact)
    {
        artifact.ToTable("artifacts");
        artifact.Property(a => a.TenantId).HasMaxLength(ColumnLimits.TenantId);
        artifact.Property(a => a.Kind).HasConversion<string>().HasMaxLength(32);
        artifact.Property(a => a.FileName).HasMaxLength(ColumnLimits.Name);
        artifact.Property(a => a.ContentType).HasMaxLength(ColumnLimits.ContentType);
        artifact.Property(a => a.Sha256).HasMaxLength(ColumnLimits.Sha256Hex).IsFixedLength();
        artifact.HasMany<ArtifactChunk>().WithOne().HasForeignKey(c => c.ArtifactId).OnDelete(DeleteBehavior.Cascade);
    }
}

internal sealed class ArtifactChunkConfiguration : IEntityTypeConfiguration<ArtifactChunk>
{
    public void Configure(EntityTypeBuilder<ArtifactChunk> chunk)
    {
        chunk.ToTable("artifact_chunks");
        chunk.HasKey(c => new { c.ArtifactId, c.Index });
        // TOAST compresses each chunk. PostgreSQL's default, pglz, spends about 50 ms per MB on float weights it cannot
        // shrink (4.2 s for a 45 MB model's two result files); LZ4 takes a tenth of that and still shrinks a pruned
        // model's zeros (docs/benchmarks.md#storing-results). The migration falls back to no compression on a server built
        // without LZ4.
        chunk.Property(c => c.Data).HasColumnType("bytea").UseCompressionMethod("lz4");
    }
}
