using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;
using SurgeryService.Domain;

namespace SurgeryService.Infrastructure.Persistence.Configurations;

internal sealed class IdempotencyRecordConfiguration : IEntityTypeConfiguration<IdempotencyRecord>
{
    public void Configure(EntityTypeBuilder<IdempotencyRecord> record)
    {
        record.ToTable("idempotency_keys");
        record.HasKey(r => new { r.TenantId, r.Key });
        record.Property(r => r.TenantId).HasMaxLength(ColumnLimits.TenantId);
        record.Property(r => r.Key).HasMaxLength(128);
        record.Property(r => r.Request).HasMaxLength(300);
        record.Property(r => r.BodySha256).HasMaxLength(ColumnLimits.Sha256Hex).IsFixedLength();
        record.Property(r => r.ContentType).HasMaxLength(ColumnLimits.ContentType);
        record.Property(r => r.Location).HasMaxLength(300);
        record.HasIndex(r => r.CreatedAt); // expiry sweeps
    }
}
