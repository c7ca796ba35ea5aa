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
        // Chunks are already compressed or incompressible (weights, images): skip TOAST's compression attempt.
        chunk.Property(c => c.Data).HasColumnType("bytea");
    }
}
