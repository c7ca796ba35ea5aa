using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;
using SurgeryService.Domain;
using SurgeryService.Domain.Artifacts;
using SurgeryService.Domain.Datasets;

namespace SurgeryService.Infrastructure.Persistence.Configurations;

internal sealed class DatasetEntryConfiguration : IEntityTypeConfiguration<DatasetEntry>
{
    public void Configure(EntityTypeBuilder<DatasetEntry> dataset)
    {
        dataset.ToTable("datasets");
        dataset.Property(d => d.TenantId).HasMaxLength(ColumnLimits.TenantId);
        dataset.Property(d => d.Name).HasMaxLength(ColumnLimits.Name);
        dataset.Property(d => d.Format).HasConversion<string>().HasMaxLength(16);
        dataset.Property(d => d.Sha256).HasMaxLength(ColumnLimits.Sha256Hex).IsFixedLength();
        dataset.Property(d => d.InputType).HasMaxLength(16);
        dataset.HasOne<Artifact>().WithMany().HasForeignKey(d => d.ArtifactId).OnDelete(DeleteBehavior.Restrict);
        dataset.HasIndex(d => new { d.TenantId, d.CreatedAt });
        // At most one built-in data set of a name, whichever process registers it first.
        dataset.HasIndex(d => d.Name).IsUnique().HasFilter("\"BuiltIn\"");
    }
}
