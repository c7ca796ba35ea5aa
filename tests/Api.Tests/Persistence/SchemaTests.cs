using System.Text.RegularExpressions;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Metadata;
using SurgeryService.Domain;
using SurgeryService.Domain.Jobs;
using SurgeryService.Infrastructure.Jobs;
using SurgeryService.Infrastructure.Persistence;
using SurgeryService.Infrastructure.Tenants;

namespace SurgeryService.Api.Tests.Persistence;

/// <summary>The SQL written past EF against the schema EF defines (no database needed: the model is built in memory).</summary>
public sealed class SchemaTests
{
    private static readonly IModel Model = DesignTimeModel();

    private static IModel DesignTimeModel()
    {
        using var db = new SurgeryDbContext(
            new DbContextOptionsBuilder<SurgeryDbContext>().UseNpgsql("Host=unused").Options, SystemTenant.Instance);
        return db.GetService<IDesignTimeModel>().Model;
    }

    private static HashSet<string> Columns(string table)
    {
        var entity = Model.GetEntityTypes().Single(e => e.GetTableName() == table);
        var store = StoreObjectIdentifier.Table(table, entity.GetSchema());
        return entity.GetProperties().Select(p => p.GetColumnName(store)).OfType<string>().ToHashSet();
    }

    [Fact]
    public void ProgressWriterNamesOnlyColumnsOfTheEfModelAndEveryColumnWhereItWritesWholeRows()
    {
        Assert.Contains(JobProgressWriter.Statements, s => s.Sql.Contains("COPY", StringComparison.Ordinal));
        foreach (var (table, sql, wholeRows) in JobProgressWriter.Statements)
        {
            var columns = Columns(table);
            var named = Regex.Matches(sql, "\"([^\"]+)\"").Select(m => m.Groups[1].Value).ToHashSet();
            Assert.NotEmpty(named);
            Assert.True(named.IsSubsetOf(columns),
                $"{table}: the writer names {string.Join(", ", named.Except(columns))}, which the EF model does not have");
            if (wholeRows)
            {
                Assert.True(columns.SetEquals(named),
                    $"{table}: the EF model has {string.Join(", ", columns.Except(named))} too, which the writer leaves out");
            }
        }
    }

    [Theory]
    [InlineData("models", "Name", ColumnLimits.Name)]
    [InlineData("datasets", "Name", ColumnLimits.Name)]
    [InlineData("artifacts", "FileName", ColumnLimits.Name)]
    [InlineData("artifacts", "ContentType", ColumnLimits.ContentType)]
    [InlineData("job_layer_results", "Layer", ColumnLimits.Name)]
    [InlineData("job_events", "Message", ColumnLimits.Message)]
    [InlineData("jobs", "Error", ColumnLimits.Message)]
    [InlineData("jobs", "TenantId", ColumnLimits.TenantId)]
    public void TextColumnsHaveTheSharedLimits(string table, string column, int limit)
    {
        var entity = Model.GetEntityTypes().Single(e => e.GetTableName() == table);
        var store = StoreObjectIdentifier.Table(table, entity.GetSchema());
        Assert.Equal(limit, entity.GetProperties().Single(p => p.GetColumnName(store) == column).GetMaxLength());
    }

    [Fact]
    public void AJobCutsItsErrorToTheLengthOfItsColumn() => Assert.Equal(ColumnLimits.Message, SurgeryJob.MaxErrorLength);
}
