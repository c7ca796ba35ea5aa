using System.Security.Cryptography;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Storage;
using Npgsql;
using NpgsqlTypes;
using SurgeryService.Domain;
using SurgeryService.Domain.Artifacts;
using SurgeryService.Infrastructure.Persistence;

namespace SurgeryService.Infrastructure.Artifacts;

/// <summary>
/// Streams files into and out of PostgreSQL in <see cref="ChunkSize"/> pieces, hashing on the way in. Writes join the
/// DbContext's current transaction when there is one, so an artifact and the row that points at it commit together.
/// </summary>
public sealed class ArtifactStore(SurgeryDbContext db)
{
    public const int ChunkSize = 1 << 20;

    /// <summary>
    /// Copies <paramref name="content"/> into a new artifact. Beyond <paramref name="maxBytes"/> it stops with a 413
    /// <see cref="SurgeryException"/> and nothing is kept.
    /// </summary>
    public async Task<Artifact> SaveAsync(
        string? tenantId, ArtifactKind kind, string fileName, string contentType, Stream content,
        long maxBytes = long.MaxValue, CancellationToken cancellationToken = default)
    {
        var artifact = New(tenantId, kind, fileName, contentType);
        await db.Database.OpenConnectionAsync(cancellationToken);
        var ownTransaction = db.Database.CurrentTransaction is null
            ? await db.Database.BeginTransactionAsync(cancellationToken)
            : null;
        try
        {
            await WriteAsync((NpgsqlConnection)db.Database.GetDbConnection(),
                (NpgsqlTransaction)db.Database.CurrentTransaction!.GetDbTransaction(), artifact, content, maxBytes, cancellationToken);
            if (ownTransaction is not null) await ownTransaction.CommitAsync(cancellationToken);
            return artifact;
        }
        finally
        {
            if (ownTransaction is not null) await ownTransaction.DisposeAsync();
            await db.Database.CloseConnectionAsync();
        }
    }

    /// <summary>A new artifact's row and chunks on a connection the caller holds, inside the caller's transaction.</summary>
    public static async Task<Artifact> SaveAsync(
        NpgsqlConnection connection, NpgsqlTransaction transaction, string? tenantId, ArtifactKind kind, string fileName,
        string contentType, Stream content, CancellationToken cancellationToken = default)
    {
        var artifact = New(tenantId, kind, fileName, contentType);
        await WriteAsync(connection, transaction, artifact, content, long.MaxValue, cancellationToken);
        return artifact;
    }

    private static Artifact New(string? tenantId, ArtifactKind kind, string fileName, string contentType) => new()
    {
        Id = Guid.CreateVersion7(),
        TenantId = tenantId,
        Kind = kind,
        FileName = StoredText.Truncate(fileName, ColumnLimits.Name),
        ContentType = contentType,
        Sha256 = new string('0', 64),
        CreatedAt = DateTimeOffset.UtcNow,
    };

    private static async Task WriteAsync(
        NpgsqlConnection connection, NpgsqlTransaction transaction, Artifact artifact, Stream content, long maxBytes,
        CancellationToken cancellationToken)
    {
        await using (var insert = new NpgsqlCommand(
            """
            INSERT INTO artifacts ("Id", "TenantId", "Kind", "FileName", "ContentType", "Size", "Sha256", "ChunkCount", "CreatedAt")
            VALUES (@id, @tenant, @kind, @name, @type, 0, @sha, 0, @created)
            """, connection, transaction))
        {
            insert.Parameters.AddWithValue("id", artifact.Id);
            insert.Parameters.AddWithValue("tenant", (object?)artifact.TenantId ?? DBNull.Value);
            insert.Parameters.AddWithValue("kind", artifact.Kind.ToString());
            insert.Parameters.AddWithValue("name", artifact.FileName);
            insert.Parameters.AddWithValue("type", artifact.ContentType);
            insert.Parameters.AddWithValue("sha", artifact.Sha256);
            insert.Parameters.AddWithValue("created", artifact.CreatedAt);
            await insert.ExecuteNonQueryAsync(cancellationToken);
        }

        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        await using var chunkInsert = new NpgsqlCommand(
            """INSERT INTO artifact_chunks ("ArtifactId", "Index", "Data") VALUES (@id, @index, @data)""",
            connection, transaction);
        chunkInsert.Parameters.AddWithValue("id", artifact.Id);
        var indexParameter = chunkInsert.Parameters.Add("index", NpgsqlDbType.Integer);
        var dataParameter = chunkInsert.Parameters.Add("data", NpgsqlDbType.Bytea);
        var buffer = new byte[ChunkSize];
        while (true)
        {
            var filled = await content.ReadAtLeastAsync(buffer, buffer.Length, throwOnEndOfStream: false, cancellationToken);
            if (filled == 0) break;
            artifact.Size += filled;
            if (artifact.Size > maxBytes)
            {
                throw new SurgeryException("Upload too large",
                    $"the file is larger than the limit of {maxBytes} bytes (setting Api:MaxUploadBytes)", ErrorKind.TooLarge);
            }
            hash.AppendData(buffer, 0, filled);
            indexParameter.Value = artifact.ChunkCount++;
            dataParameter.Value = new ArraySegment<byte>(buffer, 0, filled);
            await chunkInsert.ExecuteNonQueryAsync(cancellationToken);
            if (filled < buffer.Length) break;
        }

        artifact.Sha256 = Convert.ToHexStringLower(hash.GetHashAndReset());
        await using var update = new NpgsqlCommand(
            """UPDATE artifacts SET "Size" = @size, "Sha256" = @sha, "ChunkCount" = @chunks WHERE "Id" = @id""",
            connection, transaction);
        update.Parameters.AddWithValue("id", artifact.Id);
        update.Parameters.AddWithValue("size", artifact.Size);
        update.Parameters.AddWithValue("sha", artifact.Sha256);
        update.Parameters.AddWithValue("chunks", artifact.ChunkCount);
        await update.ExecuteNonQueryAsync(cancellationToken);
    }

    /// <summary>A stream over the artifact's content on a connection of its own; dispose it to release the connection.</summary>
    public async Task<Stream> OpenReadAsync(Guid artifactId, CancellationToken cancellationToken = default)
    {
        var artifact = await db.Set<Artifact>().AsNoTracking().SingleOrDefaultAsync(a => a.Id == artifactId, cancellationToken)
            ?? throw new SurgeryException("Artifact missing", $"stored file {artifactId} no longer exists", ErrorKind.NotFound);
        var connection = new NpgsqlConnection(db.Database.GetConnectionString());
        await connection.OpenAsync(cancellationToken);
        return new ChunkStream(connection, artifact);
    }

    /// <summary>The whole content in memory, for files that are parsed as a whole (ONNX protobuf, checkpoints).</summary>
    public async Task<byte[]> ReadAllBytesAsync(Guid artifactId, CancellationToken cancellationToken = default)
    {
        await using var stream = await OpenReadAsync(artifactId, cancellationToken);
        var bytes = new byte[stream.Length];
        await stream.ReadExactlyAsync(bytes, cancellationToken);
        return bytes;
    }

    public Task DeleteAsync(Guid artifactId, CancellationToken cancellationToken = default) =>
        db.Set<Artifact>().Where(a => a.Id == artifactId).ExecuteDeleteAsync(cancellationToken);

    /// <summary>
    /// Runs <paramref name="register"/>, which saves the row that points at a freshly stored file; when it fails (the file
    /// is unreadable, the row cannot be saved) the file is deleted, so no artifact is left that nothing points at.
    /// </summary>
    public async Task<T> RegisterOrDeleteAsync<T>(Guid artifactId, Func<Task<T>> register)
    {
        try
        {
            return await register();
        }
        catch
        {
            await DeleteAsync(artifactId, CancellationToken.None);
            throw;
        }
    }

    /// <summary>Reads one chunk per round trip, in order; seeking is supported for readers that need it.</summary>
    private sealed class ChunkStream(NpgsqlConnection connection, Artifact artifact) : Stream
    {
        private byte[] _chunk = [];
        private int _chunkIndex = -1;
        private long _position;

        public override bool CanRead => true;
        public override bool CanSeek => true;
        public override bool CanWrite => false;
        public override long Length => artifact.Size;

        public override long Position
        {
            get => _position;
            set => _position = Math.Clamp(value, 0, artifact.Size);
        }

        public override int Read(byte[] buffer, int offset, int count) =>
            ReadCore(buffer.AsMemory(offset, count), async: false, CancellationToken.None).GetAwaiter().GetResult();

        public override int Read(Span<byte> buffer)
        {
            // One read returns at most the rest of a chunk: a larger array would be garbage of the caller's whole span.
            var array = new byte[Math.Min(buffer.Length, ChunkSize)];
            var read = Read(array, 0, array.Length);
            array.AsSpan(0, read).CopyTo(buffer);
            return read;
        }

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) =>
            ReadCore(buffer, async: true, cancellationToken);

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            ReadCore(buffer.AsMemory(offset, count), async: true, cancellationToken).AsTask();

        private async ValueTask<int> ReadCore(Memory<byte> buffer, bool async, CancellationToken cancellationToken)
        {
            if (_position >= artifact.Size || buffer.Length == 0) return 0;
            var index = (int)(_position / ChunkSize);
            if (index != _chunkIndex)
            {
                await using var select = new NpgsqlCommand(
                    """SELECT "Data" FROM artifact_chunks WHERE "ArtifactId" = @id AND "Index" = @index""", connection);
                select.Parameters.AddWithValue("id", artifact.Id);
                select.Parameters.AddWithValue("index", index);
                var value = async ? await select.ExecuteScalarAsync(cancellationToken) : select.ExecuteScalar();
                _chunk = value as byte[] ?? throw new InvalidDataException($"artifact {artifact.Id} lacks chunk {index}");
                _chunkIndex = index;
            }
            var inChunk = (int)(_position - (long)index * ChunkSize);
            var count = Math.Min(buffer.Length, _chunk.Length - inChunk);
            _chunk.AsMemory(inChunk, count).CopyTo(buffer);
            _position += count;
            return count;
        }

        public override long Seek(long offset, SeekOrigin origin) => Position = origin switch
        {
            SeekOrigin.Begin => offset,
            SeekOrigin.Current => _position + offset,
            _ => artifact.Size + offset,
        };

        public override void Flush() { }
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing) connection.Dispose();
            base.Dispose(disposing);
        }

        public override async ValueTask DisposeAsync()
        {
            await connection.DisposeAsync();
            await base.DisposeAsync();
        }
    }
}
