using System;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace SurgeryService.Infrastructure.Persistence.Migrations
{
    /// <inheritdoc />
    public partial class Int8Output : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.AddColumn<string>(
                name: "Deployment",
                table: "jobs",
                type: "jsonb",
                nullable: true);

            migrationBuilder.AddColumn<string>(
                name: "Output",
                table: "jobs",
                type: "jsonb",
                nullable: false,
                defaultValue: "{}");

            migrationBuilder.AddColumn<Guid>(
                name: "ResultOnnxInt8ArtifactId",
                table: "jobs",
                type: "uuid",
                nullable: true);

            migrationBuilder.CreateIndex(
                name: "IX_jobs_ResultOnnxInt8ArtifactId",
                table: "jobs",
                column: "ResultOnnxInt8ArtifactId");

            migrationBuilder.AddForeignKey(
                name: "FK_jobs_artifacts_ResultOnnxInt8ArtifactId",
                table: "jobs",
                column: "ResultOnnxInt8ArtifactId",
                principalTable: "artifacts",
                principalColumn: "Id",
                onDelete: ReferentialAction.SetNull);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropForeignKey(
                name: "FK_jobs_artifacts_ResultOnnxInt8ArtifactId",
                table: "jobs");

            migrationBuilder.DropIndex(
                name: "IX_jobs_ResultOnnxInt8ArtifactId",
                table: "jobs");

            migrationBuilder.DropColumn(
                name: "Deployment",
                table: "jobs");

            migrationBuilder.DropColumn(
                name: "Output",
                table: "jobs");

            migrationBuilder.DropColumn(
                name: "ResultOnnxInt8ArtifactId",
                table: "jobs");
        }
    }
}
