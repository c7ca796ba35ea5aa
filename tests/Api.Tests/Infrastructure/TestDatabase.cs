using Npgsql;

namespace SurgeryService.Api.Tests.Infrastructure;

/// <summary>
/// A database of its own on the PostgreSQL that scripts/test.sh starts (ConnectionStrings__Surgery), dropped at the end.
/// </summary>
public sealed class TestDatabase : IAsyncDisposable
{
    private TestDatabase(string name, string connectionString, string adminConnectionString)
    {
        Name = name;
        ConnectionString = connectionString;
        _adminConnectionString = adminConnectionString;
    }

    private readonly string _adminConnectionString;

    public string Name { get; }
    public string ConnectionString { get; }

    public static async Task<TestDatabase> CreateAsync(string purpose)
    {
        var baseConnection = Environment.GetEnvironmentVariable("ConnectionStrings__Surgery")
            ?? throw new InvalidOperationException(
                "ConnectionStrings__Surgery is not set: run the tests with ./scripts/test.sh, which starts PostgreSQL.");
        var name = $"test_{purpose}_{Guid.NewGuid():N}"[..40].ToLowerInvariant();
        var admin = new NpgsqlConnectionStringBuilder(baseConnection) { Database = "postgres", Pooling = false }.ConnectionString;
        await using (var connection = new NpgsqlConnection(admin))
        {
            await connection.OpenAsync();
            await using var create = new NpgsqlCommand($"CREATE DATABASE \"{name}\"", connection);
            await create.ExecuteNonQueryAsync();
        }
        var own = new NpgsqlConnectionStringBuilder(baseConnection) { Database = name }.ConnectionString;
        return new TestDatabase(name, own, admin);
    }

    public async Task<T?> ScalarAsync<T>(string sql)
    {
        await using var connection = new NpgsqlConnection(ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        var value = await command.ExecuteScalarAsync();
        return value is null or DBNull ? default : (T)Convert.ChangeType(value, typeof(T));
    }

    public async ValueTask DisposeAsync()
    {
        NpgsqlConnection.ClearAllPools();
        await using var connection = new NpgsqlConnection(_adminConnectionString);
        await connection.OpenAsync();
        await using var drop = new NpgsqlCommand($"DROP DATABASE IF EXISTS \"{Name}\" WITH (FORCE)", connection);
        await drop.ExecuteNonQueryAsync();
    }
}
