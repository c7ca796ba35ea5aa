using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace SurgeryService.Infrastructure.Persistence.Migrations
{
    /// <inheritdoc />
    public partial class ChunkCompression : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            // LZ4 where the server has it; a server built without LZ4 stores chunks uncompressed rather than with pglz,
            // whose attempts on incompressible weights cost ten times the write. Rows already stored keep their form.
            migrationBuilder.Sql(
                """
                DO $$
                BEGIN
                    ALTER TABLE artifact_chunks ALTER COLUMN "Data" SET COMPRESSION lz4;
                EXCEPTION WHEN feature_not_supported THEN
                    ALTER TABLE artifact_chunks ALTER COLUMN "Data" SET STORAGE EXTERNAL;
                END
                $$;
                """);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.Sql(
                """
                ALTER TABLE artifact_chunks ALTER COLUMN "Data" SET COMPRESSION default;
                ALTER TABLE artifact_chunks ALTER COLUMN "Data" SET STORAGE EXTENDED;
                """);
        }
    }
}
