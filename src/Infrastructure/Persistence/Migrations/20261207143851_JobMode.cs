using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace SurgeryService.Infrastructure.Persistence.Migrations
{
    /// <inheritdoc />
    public partial class JobMode : Migration
    {
        /// <inheritdoc />
        /// <remarks>
        /// Existing jobs get the mode their settings name, decided in SQL as <c>JobKind.Of</c> decides it: a sensitivity
        /// block makes a sensitivity analysis, a target makes budget mode, a c_rate anywhere (top level or a layer's)
        /// makes fixed thresholds, and none makes budget mode with the defaults.
        /// </remarks>
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.AddColumn<string>(
                name: "Mode",
                table: "jobs",
                type: "character varying(16)",
                maxLength: 16,
                nullable: false,
                defaultValue: "");

            migrationBuilder.Sql("""
                UPDATE jobs SET "Mode" = CASE
                    WHEN jsonb_typeof("Settings" -> 'sensitivity') = 'object' THEN 'sensitivity'
                    WHEN jsonb_typeof("Settings" -> 'target') = 'object' THEN 'budget'
                    WHEN jsonb_typeof("Settings" -> 'cRate') = 'number'
                         OR jsonb_path_exists("Settings", '$.layers[*].cRate ? (@.type() == "number")') THEN 'fixed'
                    ELSE 'budget'
                END;
                """);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropColumn(
                name: "Mode",
                table: "jobs");
        }
    }
}
