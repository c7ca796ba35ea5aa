using Microsoft.EntityFrameworkCore;
using SurgeryService.Domain.Artifacts;
using SurgeryService.Domain.Jobs;
using SurgeryService.Domain.Models;
using SurgeryService.Domain.Surgery;
using SurgeryService.Infrastructure.Persistence;

namespace SurgeryService.Api.Jobs;

/// <summary>The report of a succeeded job: per-layer table, totals, accuracy before and after, and its files.</summary>
public static class JobReportBuilder
{
    public static async Task<JobReport> BuildAsync(SurgeryDbContext db, SurgeryJob job, CancellationToken cancellationToken)
    {
        var layers = await db.JobLayerResults.AsNoTracking().Where(l => l.JobId == job.Id).OrderBy(l => l.Order).ToListAsync(cancellationToken);
        var before = layers.Sum(l => l.Total);
        var after = layers.Sum(l => l.Kept);
        var formats = new[] { ResultFormat.Onnx, ResultFormat.OnnxSparse, ResultFormat.TorchSharp, ResultFormat.OnnxInt8 }
            .Where(f => ResultStorage.ArtifactOf(job, f) is not null).ToDictionary(f => ResultStorage.ArtifactOf(job, f)!.Value);
        var artifactIds = formats.Keys.ToList();
        var model = await db.Models.AsNoTracking().SingleOrDefaultAsync(m => m.Id == job.ModelId, cancellationToken);
        if (model is not null) artifactIds.Insert(0, model.ArtifactId);
        var files = await db.Artifacts.AsNoTracking().Where(a => artifactIds.Contains(a.Id)).ToListAsync(cancellationToken);
        var dense = files.FirstOrDefault(f => f.Id == job.ResultOnnxArtifactId);
        string Role(Guid artifactId) => formats.TryGetValue(artifactId, out var format) ? format.Name() : "original";
        string Storage(Artifact file) => formats.TryGetValue(file.Id, out var format) ? ResultStorage.Of(format, file, dense) : "uploaded";
        return new JobReport(
            job.Id,
            job.Settings.Method.Name(),
            job.Iteration,
            layers.Select(l => new ReportLayer(l.Layer, KindName(l.Kind),
                l.Total, l.Kept, l.Total == 0 ? 100 : Math.Round(100.0 * l.Kept / l.Total, 3), l.PrunedTotal, l.SplicedTotal)).ToList(),
            new ReportTotals(before, after, before == 0 ? 100 : Math.Round(100.0 * after / before, 3),
                after == 0 ? 0 : Math.Round((double)before / after, 2)),
            new ReportAccuracy(job.TestTop1Before, job.TestTop1After, 1 - job.TestTop1Before, 1 - job.TestTop1After, job.TestSplit, job.TestSamples),
            files.OrderBy(f => artifactIds.IndexOf(f.Id)).Select(f => new ReportFile(Role(f.Id), f.FileName, f.Size, f.Sha256.Trim(), Storage(f))).ToList(),
            job.Attempts,
            job.ResumedFromIteration,
            job.StartedAt is { } s && job.FinishedAt is { } e ? (e - s).TotalSeconds : null,
            JobResponse.ModeOf(job.Settings),
            job.Search,
            await LogAsync(db, job.Id, cancellationToken),
            job.Output,
            job.Deployment);
    }

    /// <summary>How the Api names a layer kind.</summary>
    public static string KindName(LayerKind kind) => kind == LayerKind.Convolution ? "convolution" : "fullyConnected";

    public static async Task<IReadOnlyList<JobLogEntry>> LogAsync(SurgeryDbContext db, Guid jobId, CancellationToken cancellationToken) =>
        await db.JobEvents.AsNoTracking().Where(e => e.JobId == jobId).OrderBy(e => e.Sequence)
            .Select(e => new JobLogEntry(e.Sequence, e.Iteration, e.Kind, e.Message, e.CreatedAt))
            .ToListAsync(cancellationToken);
}
