using System.Security.Cryptography;
using Microsoft.EntityFrameworkCore;
using SurgeryService.Api.Tests.Infrastructure;
using SurgeryService.Domain.Artifacts;
using SurgeryService.Infrastructure.Artifacts;
using SurgeryService.Infrastructure.Persistence;
using SurgeryService.Infrastructure.Tenants;

namespace SurgeryService.Api.Tests.Persistence;

/// <summary>The artifact store on the real PostgreSQL, migrated as the Api migrates it.</summary>
public sealed class ArtifactStoreTests
{
    [Fact]
    public async Task ChunksAreStoredWithLz4AndReadBackExactly()
    {
        await using var database = await TestDatabase.CreateAsync("chunks");
        await using var db = new SurgeryDbContext(
            new DbContextOptionsBuilder<SurgeryDbContext>().UseNpgsql(database.ConnectionString).Options, SystemTenant.Instance);
        await db.Database.MigrateAsync();

        // Two and a half chunks of a pruned layer's floats: nine in ten are zero, the rest random.
        var random = new Random(7);
        var floats = new float[(ArtifactStore.ChunkSize * 5 / 2) / sizeof(float)];
        for (var i = 0; i < floats.Length; i++) floats[i] = random.Next(10) == 0 ? random.NextSingle() - 0.5f : 0f;
        var content = new byte[floats.Length * sizeof(float)];
        Buffer.BlockCopy(floats, 0, content, 0, content.Length);

        var store = new ArtifactStore(db);
        var artifact = await store.SaveAsync(null, ArtifactKind.Result, "pruned.onnx", "application/onnx", new MemoryStream(content));

        Assert.Equal(3, artifact.ChunkCount);
        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(content)), artifact.Sha256);
        Assert.Equal(content, await store.ReadAllBytesAsync(artifact.Id));
        // The column's compression method: 'l' is LZ4 (Debian's PostgreSQL is built with it).
        Assert.Equal("l", await database.ScalarAsync<string>(
            "SELECT attcompression::text FROM pg_attribute WHERE attrelid = 'artifact_chunks'::regclass AND attname = 'Data'"));
        Assert.Equal(3, await database.ScalarAsync<long>(
            $"SELECT count(*) FROM artifact_chunks WHERE \"ArtifactId\" = '{artifact.Id}' AND pg_column_compression(\"Data\") = 'lz4'"));
        var stored = await database.ScalarAsync<long>($"SELECT sum(pg_column_size(\"Data\")) FROM artifact_chunks WHERE \"ArtifactId\" = '{artifact.Id}'");
        Assert.True(stored < content.Length / 2, $"{content.Length} bytes took {stored} bytes stored");
    }
}
