using System;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace SurgeryService.Infrastructure.Persistence.Migrations
{
    /// <inheritdoc />
    public partial class JobPhasesAndSplits : Migration
    {
        /// <inheritdoc />
        /// <remarks>
        /// The old accuracy columns held test figures once a job had finished (the progress writer's validation figures
        /// were replaced at the end), so they become the test columns; validation columns start empty.
        /// </remarks>
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.RenameColumn(
                name: "Top1Before",
                table: "jobs",
                newName: "TestTop1Before");

            migrationBuilder.RenameColumn(
                name: "Top1After",
                table: "jobs",
                newName: "TestTop1After");

            migrationBuilder.RenameColumn(
                name: "LastTop5",
                table: "jobs",
                newName: "TestTop5");

            migrationBuilder.RenameColumn(
                name: "LastTop1",
                table: "jobs",
                newName: "TestTop1");

            migrationBuilder.AddColumn<double>(
                name: "BestCompression",
                table: "jobs",
                type: "double precision",
                nullable: true);

            migrationBuilder.AddColumn<DateTimeOffset>(
                name: "EstimatedFinishAt",
                table: "jobs",
                type: "timestamp with time zone",
                nullable: true);

            migrationBuilder.AddColumn<string>(
                name: "Phase",
                table: "jobs",
                type: "character varying(16)",
                maxLength: 16,
                nullable: true);

            migrationBuilder.AddColumn<int>(
                name: "PhaseStep",
                table: "jobs",
                type: "integer",
                nullable: false,
                defaultValue: 0);

            migrationBuilder.AddColumn<int>(
                name: "PhaseSteps",
                table: "jobs",
                type: "integer",
                nullable: false,
                defaultValue: 0);

            migrationBuilder.AddColumn<double>(
                name: "StageCompression",
                table: "jobs",
                type: "double precision",
                nullable: true);

            migrationBuilder.AddColumn<int>(
                name: "TestSamples",
                table: "jobs",
                type: "integer",
                nullable: true);

            migrationBuilder.AddColumn<string>(
                name: "TestSplit",
                table: "jobs",
                type: "character varying(16)",
                maxLength: 16,
                nullable: true);

            migrationBuilder.AddColumn<double>(
                name: "ValidationTop1",
                table: "jobs",
                type: "double precision",
                nullable: true);

            migrationBuilder.AddColumn<double>(
                name: "ValidationTop1Before",
                table: "jobs",
                type: "double precision",
                nullable: true);

            migrationBuilder.AddColumn<int>(
                name: "ValidationSamples",
                table: "jobs",
                type: "integer",
                nullable: true);

            migrationBuilder.AddColumn<string>(
                name: "ValidationSplit",
                table: "jobs",
                type: "character varying(16)",
                maxLength: 16,
                nullable: true);

            migrationBuilder.AddColumn<long>(
                name: "ValidationCount",
                table: "datasets",
                type: "bigint",
                nullable: false,
                defaultValue: 0L);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropColumn(
                name: "BestCompression",
                table: "jobs");

            migrationBuilder.DropColumn(
                name: "EstimatedFinishAt",
                table: "jobs");

            migrationBuilder.DropColumn(
                name: "Phase",
                table: "jobs");

            migrationBuilder.DropColumn(
                name: "PhaseStep",
                table: "jobs");

            migrationBuilder.DropColumn(
                name: "PhaseSteps",
                table: "jobs");

            migrationBuilder.DropColumn(
                name: "StageCompression",
                table: "jobs");

            migrationBuilder.DropColumn(
                name: "TestSamples",
                table: "jobs");

            migrationBuilder.DropColumn(
                name: "TestSplit",
                table: "jobs");

            migrationBuilder.DropColumn(
                name: "ValidationTop1Before",
                table: "jobs");

            migrationBuilder.DropColumn(
                name: "ValidationTop1",
                table: "jobs");

            migrationBuilder.DropColumn(
                name: "ValidationSamples",
                table: "jobs");

            migrationBuilder.DropColumn(
                name: "ValidationSplit",
                table: "jobs");

            migrationBuilder.DropColumn(
                name: "ValidationCount",
                table: "datasets");

            migrationBuilder.RenameColumn(
                name: "TestTop1Before",
                table: "jobs",
                newName: "Top1Before");

            migrationBuilder.RenameColumn(
                name: "TestTop1After",
                table: "jobs",
                newName: "Top1After");

            migrationBuilder.RenameColumn(
                name: "TestTop5",
                table: "jobs",
                newName: "LastTop5");

            migrationBuilder.RenameColumn(
                name: "TestTop1",
                table: "jobs",
                newName: "LastTop1");
        }
    }
}
