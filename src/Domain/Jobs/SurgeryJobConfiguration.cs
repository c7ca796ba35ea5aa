using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace SurgeryService.Domain.Jobs;

internal sealed class SurgeryJobConfiguration : IEntityTypeConfiguration<SurgeryJob>
{
    public void Configure(EntityTypeBuilder<SurgeryJob> job)
    {
        job.ToTable("jobs");
        job.Property(j => j.State).HasConversion<string>().HasMaxLength(16);
        job.Property(j => j.Error).HasMaxLength(4000);
        job.HasIndex(j => new { j.State, j.CreatedAt });
    }
}
