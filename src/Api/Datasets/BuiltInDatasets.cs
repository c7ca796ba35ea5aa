using System.IO.Compression;
using Microsoft.EntityFrameworkCore;
using SurgeryService.Domain.Artifacts;
using SurgeryService.Domain.Datasets;
using SurgeryService.Infrastructure.Artifacts;
using SurgeryService.Infrastructure.Datasets;
using SurgeryService.Infrastructure.Persistence;

namespace SurgeryService.Api.Datasets;

/// <summary>Section <c>Datasets</c>.</summary>
public sealed class DatasetOptions
{
    public const string Section = "Datasets";

    /// <summary>Folder with MNIST's four IDX files; registered as the built-in <c>mnist</c> when present. Default: env SURGERY_MNIST_DIR.</summary>
    public string? MnistDirectory { get; set; } = Environment.GetEnvironmentVariable("SURGERY_MNIST_DIR");

    /// <summary>Largest inflated data of an uploaded data set, the four arrays together, as their headers announce it.</summary>
    [System.ComponentModel.DataAnnotations.Range(1, long.MaxValue)]
    public long MaxDataBytes { get; set; } = DatasetArchive.DefaultMaxDataBytes;
}

/// <summary>
/// Registers the built-in <c>mnist</c> dataset once per database at start, when its files are present: the IDX files
/// are stored as an artifact like any upload, so workers on other machines need only the connection string.
/// </summary>
public sealed class BuiltInDatasets(IServiceScopeFactory scopes, Microsoft.Extensions.Options.IOptions<DatasetOptions> options,
    ILogger<BuiltInDatasets> logger) : BackgroundService
{
    public const string MnistName = "mnist";

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var directory = options.Value.MnistDirectory;
        if (string.IsNullOrWhiteSpace(directory) || !Mnist.IsPresent(directory))
        {
            logger.LogInformation("Built-in MNIST not registered: no IDX files in '{Directory}' (Datasets:MnistDirectory)", directory);
            return;
        }
        for (var attempt = 1; attempt <= 10 && !stoppingToken.IsCancellationRequested; attempt++)
        {
            try
            {
                await RegisterMnistAsync(directory, stoppingToken);
                return;
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                // Typically the schema is not migrated yet (another process migrates): try again shortly.
                logger.LogWarning(e, "Registering the built-in MNIST failed (attempt {Attempt})", attempt);
                await Task.Delay(TimeSpan.FromSeconds(3 * attempt), stoppingToken);
            }
        }
    }

    private async Task RegisterMnistAsync(string directory, CancellationToken cancellationToken)
    {
        await using var scope = scopes.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<SurgeryDbContext>();
        if (await db.Datasets.AnyAsync(d => d.BuiltIn && d.Name == MnistName, cancellationToken)) return;

        var zipPath = Path.GetTempFileName();
        try
        {
            await using (var zip = new ZipArchive(File.Create(zipPath), ZipArchiveMode.Create))
            {
                foreach (var name in Mnist.FileNames)
                {
                    zip.CreateEntryFromFile(Path.Combine(directory, name), name, CompressionLevel.Fastest);
                }
            }
            var artifacts = scope.ServiceProvider.GetRequiredService<ArtifactStore>();
            await using var transaction = await db.Database.BeginTransactionAsync(cancellationToken);
            Artifact artifact;
            await using (var file = File.OpenRead(zipPath))
            {
                artifact = await artifacts.SaveAsync(null, ArtifactKind.DatasetUpload, "mnist.zip", "application/zip", file,
                    cancellationToken: cancellationToken);
            }
            DatasetSummary summary;
            await using (var file = File.OpenRead(zipPath))
            {
                summary = DatasetArchive.Inspect(file);
            }
            db.Datasets.Add(UploadDataset.Entry(summary, MnistName, null, artifact));
            try
            {
                await db.SaveChangesAsync(cancellationToken);
                await transaction.CommitAsync(cancellationToken);
                logger.LogInformation("Registered the built-in MNIST ({Train} train, {Test} test samples)", summary.TrainCount, summary.TestCount);
            }
            catch (DbUpdateException)
            {
                // Another Api instance may have won the race; then its copy is the one everybody uses.
                if (!await AnotherProcessRegisteredAsync(scopes, cancellationToken)) throw;
            }
        }
        finally
        {
            File.Delete(zipPath);
        }
    }

    private static async Task<bool> AnotherProcessRegisteredAsync(IServiceScopeFactory scopes, CancellationToken cancellationToken)
    {
        await using var scope = scopes.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<SurgeryDbContext>();
        return await db.Datasets.AnyAsync(d => d.BuiltIn && d.Name == MnistName, cancellationToken);
    }
}
