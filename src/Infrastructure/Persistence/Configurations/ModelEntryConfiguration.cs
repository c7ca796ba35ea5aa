using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;
using SurgeryService.Domain;
using SurgeryService.Domain.Artifacts;
using SurgeryService.Domain.Models;

namespace SurgeryService.Infrastructure.Persistence.Configurations;

internal sealed class ModelEntryConfiguration : IEntityTypeConfiguration<ModelEntry>
{
    public void Configure(EntityTypeBuilder<ModelEntry> model)
    {
        model.ToTable("models");
        model.Property(m => m.TenantId).HasMaxLength(ColumnLimits.TenantId);
        model.Property(m => m.Name).HasMaxLength(ColumnLimits.Name);
        model.Property(m => m.Format).HasConversion<string>().HasMaxLength(16);
        model.Property(m => m.Architecture).HasMaxLength(64);
        model.Property(m => m.Sha256).HasMaxLength(ColumnLimits.Sha256Hex).IsFixedLength();
        model.Property(m => m.Layers).HasJsonConversion();
        model.HasOne<Artifact>().WithMany().HasForeignKey(m => m.ArtifactId).OnDelete(DeleteBehavior.Restrict);
        model.HasIndex(m => new { m.TenantId, m.CreatedAt });
    }
}
