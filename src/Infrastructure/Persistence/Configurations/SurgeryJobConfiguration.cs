using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;
using SurgeryService.Domain;
using SurgeryService.Domain.Artifacts;
using SurgeryService.Domain.Datasets;
using SurgeryService.Domain.Jobs;
using SurgeryService.Domain.Models;

namespace SurgeryService.Infrastructure.Persistence.Configurations;

internal sealed class SurgeryJobConfiguration : IEntityTypeConfiguration<SurgeryJob>
{
    public void Configure(EntityTypeBuilder<SurgeryJob> job)
    {
        job.ToTable("jobs");
        job.Property(j => j.TenantId).HasMaxLength(ColumnLimits.TenantId);
        job.Property(j => j.State).HasConversion<string>().HasMaxLength(16);
        job.Property(j => j.Queue).HasMaxLength(32);
        job.Property(j => j.HangfireJobId).HasMaxLength(64);
        job.Property(j => j.Error).HasMaxLength(ColumnLimits.Message);
        job.Property(j => j.ExpectedBasis).HasMaxLength(ColumnLimits.Message);
        job.Property(j => j.Phase).HasConversion<string>().HasMaxLength(16);
        job.Property(j => j.ValidationSplit).HasConversion<string>().HasMaxLength(16);
        job.Property(j => j.TestSplit).HasConversion<string>().HasMaxLength(16);
        job.Property(j => j.Mode).HasMaxLength(16);
        job.Property(j => j.Settings).HasJsonConversion();
        job.Property(j => j.Preprocessing).HasJsonConversion();
        job.Property(j => j.Search!).HasJsonConversion();
        job.Property(j => j.Output).HasJsonConversion();
        job.Property(j => j.Deployment!).HasJsonConversion();
        job.Ignore(j => j.IsFinished);
        // PostgreSQL's xmin system column (the transaction that last wrote the row) as a concurrency token: a
        // transition saved over a row that the Api, the runner or the progress writer changed since it was read fails
        // with DbUpdateConcurrencyException, and the writer reloads and decides again (no last-write-wins).
        job.Property<uint>(SurgeryDbContext.RowVersion).IsRowVersion();
        job.HasOne<ModelEntry>().WithMany().HasForeignKey(j => j.ModelId).OnDelete(DeleteBehavior.SetNull);
        job.HasOne<DatasetEntry>().WithMany().HasForeignKey(j => j.DatasetId).OnDelete(DeleteBehavior.SetNull);
        foreach (var artifact in new[]
                 {
                     nameof(SurgeryJob.CheckpointArtifactId), nameof(SurgeryJob.ResultOnnxArtifactId),
                     nameof(SurgeryJob.ResultOnnxSparseArtifactId), nameof(SurgeryJob.ResultTorchSharpArtifactId),
                     nameof(SurgeryJob.ResultOnnxInt8ArtifactId),
                 })
        {
            job.HasOne<Artifact>().WithMany().HasForeignKey(artifact).OnDelete(DeleteBehavior.SetNull);
        }
        job.HasIndex(j => new { j.TenantId, j.CreatedAt });
        job.HasIndex(j => new { j.TenantId, j.State, j.CreatedAt });
    }
}

internal sealed class JobMetricConfiguration : IEntityTypeConfiguration<JobMetric>
{
    public void Configure(EntityTypeBuilder<JobMetric> metric)
    {
        metric.ToTable("job_metrics");
        metric.HasKey(m => new { m.JobId, m.Iteration });
        metric.HasOne<SurgeryJob>().WithMany().HasForeignKey(m => m.JobId).OnDelete(DeleteBehavior.Cascade);
    }
}

internal sealed class JobEventConfiguration : IEntityTypeConfiguration<JobEvent>
{
    public void Configure(EntityTypeBuilder<JobEvent> jobEvent)
    {
        jobEvent.ToTable("job_events");
        jobEvent.HasKey(e => new { e.JobId, e.Sequence });
        jobEvent.Property(e => e.Kind).HasMaxLength(16);
        jobEvent.Property(e => e.Message).HasMaxLength(ColumnLimits.Message);
        jobEvent.HasOne<SurgeryJob>().WithMany().HasForeignKey(e => e.JobId).OnDelete(DeleteBehavior.Cascade);
    }
}

internal sealed class JobEvaluationConfiguration : IEntityTypeConfiguration<JobEvaluation>
{
    public void Configure(EntityTypeBuilder<JobEvaluation> evaluation)
    {
        evaluation.ToTable("job_evaluations");
        evaluation.HasKey(e => new { e.JobId, e.Iteration });
        evaluation.HasOne<SurgeryJob>().WithMany().HasForeignKey(e => e.JobId).OnDelete(DeleteBehavior.Cascade);
    }
}

internal sealed class JobLayerResultConfiguration : IEntityTypeConfiguration<JobLayerResult>
{
    public void Configure(EntityTypeBuilder<JobLayerResult> layer)
    {
        layer.ToTable("job_layer_results");
        layer.HasKey(l => new { l.JobId, l.Layer });
        layer.Property(l => l.Layer).HasMaxLength(ColumnLimits.Name);
        layer.Property(l => l.Kind).HasConversion<string>().HasMaxLength(32);
        layer.HasOne<SurgeryJob>().WithMany().HasForeignKey(l => l.JobId).OnDelete(DeleteBehavior.Cascade);
    }
}
