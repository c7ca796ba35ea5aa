using System;
using System.Collections.Generic;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace SurgeryService.Infrastructure.Persistence.Migrations
{
    /// <inheritdoc />
    public partial class ServiceModel : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropIndex(
                name: "IX_jobs_State_CreatedAt",
                table: "jobs");

            migrationBuilder.AddColumn<int>(
                name: "Attempts",
                table: "jobs",
                type: "integer",
                nullable: false,
                defaultValue: 0);

            migrationBuilder.AddColumn<bool>(
                name: "CancelRequested",
                table: "jobs",
                type: "boolean",
                nullable: false,
                defaultValue: false);

            migrationBuilder.AddColumn<Guid>(
                name: "CheckpointArtifactId",
                table: "jobs",
                type: "uuid",
                nullable: true);

            migrationBuilder.AddColumn<int>(
                name: "CheckpointInterval",
                table: "jobs",
                type: "integer",
                nullable: false,
                defaultValue: 0);

            migrationBuilder.AddColumn<int>(
                name: "CheckpointIteration",
                table: "jobs",
                type: "integer",
                nullable: false,
                defaultValue: 0);

            migrationBuilder.AddColumn<Guid>(
                name: "DatasetId",
                table: "jobs",
                type: "uuid",
                nullable: true);

            migrationBuilder.AddColumn<string>(
                name: "HangfireJobId",
                table: "jobs",
                type: "character varying(64)",
                maxLength: 64,
                nullable: true);

            migrationBuilder.AddColumn<int>(
                name: "Iteration",
                table: "jobs",
                type: "integer",
                nullable: false,
                defaultValue: 0);

            migrationBuilder.AddColumn<long>(
                name: "Kept",
                table: "jobs",
                type: "bigint",
                nullable: true);

            migrationBuilder.AddColumn<double>(
                name: "LastTop1",
                table: "jobs",
                type: "double precision",
                nullable: true);

            migrationBuilder.AddColumn<double>(
                name: "LastTop5",
                table: "jobs",
                type: "double precision",
                nullable: true);

            migrationBuilder.AddColumn<List<string>>(
                name: "LayerNames",
                table: "jobs",
                type: "text[]",
                nullable: false);

            migrationBuilder.AddColumn<List<long>>(
                name: "LayerTotals",
                table: "jobs",
                type: "bigint[]",
                nullable: false);

            migrationBuilder.AddColumn<double>(
                name: "Loss",
                table: "jobs",
                type: "double precision",
                nullable: true);

            migrationBuilder.AddColumn<Guid>(
                name: "ModelId",
                table: "jobs",
                type: "uuid",
                nullable: true);

            migrationBuilder.AddColumn<string>(
                name: "Preprocessing",
                table: "jobs",
                type: "jsonb",
                nullable: false,
                defaultValue: "");

            migrationBuilder.AddColumn<string>(
                name: "Queue",
                table: "jobs",
                type: "character varying(32)",
                maxLength: 32,
                nullable: false,
                defaultValue: "");

            migrationBuilder.AddColumn<Guid>(
                name: "ResultOnnxArtifactId",
                table: "jobs",
                type: "uuid",
                nullable: true);

            migrationBuilder.AddColumn<Guid>(
                name: "ResultOnnxSparseArtifactId",
                table: "jobs",
                type: "uuid",
                nullable: true);

            migrationBuilder.AddColumn<Guid>(
                name: "ResultTorchSharpArtifactId",
                table: "jobs",
                type: "uuid",
                nullable: true);

            migrationBuilder.AddColumn<int>(
                name: "ResumedFromIteration",
                table: "jobs",
                type: "integer",
                nullable: true);

            migrationBuilder.AddColumn<string>(
                name: "Settings",
                table: "jobs",
                type: "jsonb",
                nullable: false,
                defaultValue: "");

            migrationBuilder.AddColumn<string>(
                name: "TenantId",
                table: "jobs",
                type: "character varying(64)",
                maxLength: 64,
                nullable: false,
                defaultValue: "");

            migrationBuilder.AddColumn<double>(
                name: "Top1After",
                table: "jobs",
                type: "double precision",
                nullable: true);

            migrationBuilder.AddColumn<double>(
                name: "Top1Before",
                table: "jobs",
                type: "double precision",
                nullable: true);

            migrationBuilder.AddColumn<long>(
                name: "Total",
                table: "jobs",
                type: "bigint",
                nullable: true);

            migrationBuilder.AddColumn<int>(
                name: "TotalIterations",
                table: "jobs",
                type: "integer",
                nullable: false,
                defaultValue: 0);

            migrationBuilder.AddColumn<DateTimeOffset>(
                name: "UpdatedAt",
                table: "jobs",
                type: "timestamp with time zone",
                nullable: false,
                defaultValue: new DateTimeOffset(new DateTime(1, 1, 1, 0, 0, 0, 0, DateTimeKind.Unspecified), new TimeSpan(0, 0, 0, 0, 0)));

            migrationBuilder.CreateTable(
                name: "artifacts",
                columns: table => new
                {
                    Id = table.Column<Guid>(type: "uuid", nullable: false),
                    TenantId = table.Column<string>(type: "character varying(64)", maxLength: 64, nullable: true),
                    Kind = table.Column<string>(type: "character varying(32)", maxLength: 32, nullable: false),
                    FileName = table.Column<string>(type: "character varying(256)", maxLength: 256, nullable: false),
                    ContentType = table.Column<string>(type: "character varying(128)", maxLength: 128, nullable: false),
                    Size = table.Column<long>(type: "bigint", nullable: false),
                    Sha256 = table.Column<string>(type: "character(64)", fixedLength: true, maxLength: 64, nullable: false),
                    ChunkCount = table.Column<int>(type: "integer", nullable: false),
                    CreatedAt = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_artifacts", x => x.Id);
                });

            migrationBuilder.CreateTable(
                name: "job_evaluations",
                columns: table => new
                {
                    JobId = table.Column<Guid>(type: "uuid", nullable: false),
                    Iteration = table.Column<int>(type: "integer", nullable: false),
                    Loss = table.Column<double>(type: "double precision", nullable: false),
                    Top1 = table.Column<double>(type: "double precision", nullable: false),
                    Top5 = table.Column<double>(type: "double precision", nullable: true)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_job_evaluations", x => new { x.JobId, x.Iteration });
                    table.ForeignKey(
                        name: "FK_job_evaluations_jobs_JobId",
                        column: x => x.JobId,
                        principalTable: "jobs",
                        principalColumn: "Id",
                        onDelete: ReferentialAction.Cascade);
                });

            migrationBuilder.CreateTable(
                name: "job_layer_results",
                columns: table => new
                {
                    JobId = table.Column<Guid>(type: "uuid", nullable: false),
                    Layer = table.Column<string>(type: "character varying(256)", maxLength: 256, nullable: false),
                    Order = table.Column<int>(type: "integer", nullable: false),
                    Kind = table.Column<string>(type: "character varying(32)", maxLength: 32, nullable: false),
                    Total = table.Column<long>(type: "bigint", nullable: false),
                    Kept = table.Column<long>(type: "bigint", nullable: false),
                    PrunedTotal = table.Column<long>(type: "bigint", nullable: false),
                    SplicedTotal = table.Column<long>(type: "bigint", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_job_layer_results", x => new { x.JobId, x.Layer });
                    table.ForeignKey(
                        name: "FK_job_layer_results_jobs_JobId",
                        column: x => x.JobId,
                        principalTable: "jobs",
                        principalColumn: "Id",
                        onDelete: ReferentialAction.Cascade);
                });

            migrationBuilder.CreateTable(
                name: "job_metrics",
                columns: table => new
                {
                    JobId = table.Column<Guid>(type: "uuid", nullable: false),
                    Iteration = table.Column<int>(type: "integer", nullable: false),
                    Loss = table.Column<double>(type: "double precision", nullable: false),
                    LearningRate = table.Column<double>(type: "double precision", nullable: false),
                    Kept = table.Column<long>(type: "bigint", nullable: false),
                    Total = table.Column<long>(type: "bigint", nullable: false),
                    LayerKept = table.Column<long[]>(type: "bigint[]", nullable: false),
                    LayerPruned = table.Column<long[]>(type: "bigint[]", nullable: false),
                    LayerSpliced = table.Column<long[]>(type: "bigint[]", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_job_metrics", x => new { x.JobId, x.Iteration });
                    table.ForeignKey(
                        name: "FK_job_metrics_jobs_JobId",
                        column: x => x.JobId,
                        principalTable: "jobs",
                        principalColumn: "Id",
                        onDelete: ReferentialAction.Cascade);
                });

            migrationBuilder.CreateTable(
                name: "artifact_chunks",
                columns: table => new
                {
                    ArtifactId = table.Column<Guid>(type: "uuid", nullable: false),
                    Index = table.Column<int>(type: "integer", nullable: false),
                    Data = table.Column<byte[]>(type: "bytea", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_artifact_chunks", x => new { x.ArtifactId, x.Index });
                    table.ForeignKey(
                        name: "FK_artifact_chunks_artifacts_ArtifactId",
                        column: x => x.ArtifactId,
                        principalTable: "artifacts",
                        principalColumn: "Id",
                        onDelete: ReferentialAction.Cascade);
                });

            migrationBuilder.CreateTable(
                name: "datasets",
                columns: table => new
                {
                    Id = table.Column<Guid>(type: "uuid", nullable: false),
                    TenantId = table.Column<string>(type: "character varying(64)", maxLength: 64, nullable: true),
                    Name = table.Column<string>(type: "character varying(256)", maxLength: 256, nullable: false),
                    Format = table.Column<string>(type: "character varying(16)", maxLength: 16, nullable: false),
                    BuiltIn = table.Column<bool>(type: "boolean", nullable: false),
                    ArtifactId = table.Column<Guid>(type: "uuid", nullable: false),
                    Size = table.Column<long>(type: "bigint", nullable: false),
                    Sha256 = table.Column<string>(type: "character(64)", fixedLength: true, maxLength: 64, nullable: false),
                    SampleShape = table.Column<long[]>(type: "bigint[]", nullable: false),
                    InputType = table.Column<string>(type: "character varying(16)", maxLength: 16, nullable: false),
                    ClassCount = table.Column<int>(type: "integer", nullable: false),
                    TrainCount = table.Column<long>(type: "bigint", nullable: false),
                    TestCount = table.Column<long>(type: "bigint", nullable: false),
                    CreatedAt = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_datasets", x => x.Id);
                    table.ForeignKey(
                        name: "FK_datasets_artifacts_ArtifactId",
                        column: x => x.ArtifactId,
                        principalTable: "artifacts",
                        principalColumn: "Id",
                        onDelete: ReferentialAction.Restrict);
                });

            migrationBuilder.CreateTable(
                name: "models",
                columns: table => new
                {
                    Id = table.Column<Guid>(type: "uuid", nullable: false),
                    TenantId = table.Column<string>(type: "character varying(64)", maxLength: 64, nullable: false),
                    Name = table.Column<string>(type: "character varying(256)", maxLength: 256, nullable: false),
                    Format = table.Column<string>(type: "character varying(16)", maxLength: 16, nullable: false),
                    Architecture = table.Column<string>(type: "character varying(64)", maxLength: 64, nullable: true),
                    ArtifactId = table.Column<Guid>(type: "uuid", nullable: false),
                    Size = table.Column<long>(type: "bigint", nullable: false),
                    Sha256 = table.Column<string>(type: "character(64)", fixedLength: true, maxLength: 64, nullable: false),
                    InputShape = table.Column<long[]>(type: "bigint[]", nullable: false),
                    Operators = table.Column<List<string>>(type: "text[]", nullable: false),
                    Layers = table.Column<string>(type: "jsonb", nullable: false),
                    ParameterCount = table.Column<long>(type: "bigint", nullable: false),
                    CreatedAt = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_models", x => x.Id);
                    table.ForeignKey(
                        name: "FK_models_artifacts_ArtifactId",
                        column: x => x.ArtifactId,
                        principalTable: "artifacts",
                        principalColumn: "Id",
                        onDelete: ReferentialAction.Restrict);
                });

            migrationBuilder.CreateIndex(
                name: "IX_jobs_CheckpointArtifactId",
                table: "jobs",
                column: "CheckpointArtifactId");

            migrationBuilder.CreateIndex(
                name: "IX_jobs_DatasetId",
                table: "jobs",
                column: "DatasetId");

            migrationBuilder.CreateIndex(
                name: "IX_jobs_ModelId",
                table: "jobs",
                column: "ModelId");

            migrationBuilder.CreateIndex(
                name: "IX_jobs_ResultOnnxArtifactId",
                table: "jobs",
                column: "ResultOnnxArtifactId");

            migrationBuilder.CreateIndex(
                name: "IX_jobs_ResultOnnxSparseArtifactId",
                table: "jobs",
                column: "ResultOnnxSparseArtifactId");

            migrationBuilder.CreateIndex(
                name: "IX_jobs_ResultTorchSharpArtifactId",
                table: "jobs",
                column: "ResultTorchSharpArtifactId");

            migrationBuilder.CreateIndex(
                name: "IX_jobs_TenantId_CreatedAt",
                table: "jobs",
                columns: new[] { "TenantId", "CreatedAt" });

            migrationBuilder.CreateIndex(
                name: "IX_jobs_TenantId_State_CreatedAt",
                table: "jobs",
                columns: new[] { "TenantId", "State", "CreatedAt" });

            migrationBuilder.CreateIndex(
                name: "IX_datasets_ArtifactId",
                table: "datasets",
                column: "ArtifactId");

            migrationBuilder.CreateIndex(
                name: "IX_datasets_Name",
                table: "datasets",
                column: "Name",
                unique: true,
                filter: "\"BuiltIn\"");

            migrationBuilder.CreateIndex(
                name: "IX_datasets_TenantId_CreatedAt",
                table: "datasets",
                columns: new[] { "TenantId", "CreatedAt" });

            migrationBuilder.CreateIndex(
                name: "IX_models_ArtifactId",
                table: "models",
                column: "ArtifactId");

            migrationBuilder.CreateIndex(
                name: "IX_models_TenantId_CreatedAt",
                table: "models",
                columns: new[] { "TenantId", "CreatedAt" });

            migrationBuilder.AddForeignKey(
                name: "FK_jobs_artifacts_CheckpointArtifactId",
                table: "jobs",
                column: "CheckpointArtifactId",
                principalTable: "artifacts",
                principalColumn: "Id",
                onDelete: ReferentialAction.SetNull);

            migrationBuilder.AddForeignKey(
                name: "FK_jobs_artifacts_ResultOnnxArtifactId",
                table: "jobs",
                column: "ResultOnnxArtifactId",
                principalTable: "artifacts",
                principalColumn: "Id",
                onDelete: ReferentialAction.SetNull);

            migrationBuilder.AddForeignKey(
                name: "FK_jobs_artifacts_ResultOnnxSparseArtifactId",
                table: "jobs",
                column: "ResultOnnxSparseArtifactId",
                principalTable: "artifacts",
                principalColumn: "Id",
                onDelete: ReferentialAction.SetNull);

            migrationBuilder.AddForeignKey(
                name: "FK_jobs_artifacts_ResultTorchSharpArtifactId",
                table: "jobs",
                column: "ResultTorchSharpArtifactId",
                principalTable: "artifacts",
                principalColumn: "Id",
                onDelete: ReferentialAction.SetNull);

            migrationBuilder.AddForeignKey(
                name: "FK_jobs_datasets_DatasetId",
                table: "jobs",
                column: "DatasetId",
                principalTable: "datasets",
                principalColumn: "Id",
                onDelete: ReferentialAction.SetNull);

            migrationBuilder.AddForeignKey(
                name: "FK_jobs_models_ModelId",
                table: "jobs",
                column: "ModelId",
                principalTable: "models",
                principalColumn: "Id",
                onDelete: ReferentialAction.SetNull);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropForeignKey(
                name: "FK_jobs_artifacts_CheckpointArtifactId",
                table: "jobs");

            migrationBuilder.DropForeignKey(
                name: "FK_jobs_artifacts_ResultOnnxArtifactId",
                table: "jobs");

            migrationBuilder.DropForeignKey(
                name: "FK_jobs_artifacts_ResultOnnxSparseArtifactId",
                table: "jobs");

            migrationBuilder.DropForeignKey(
                name: "FK_jobs_artifacts_ResultTorchSharpArtifactId",
                table: "jobs");

            migrationBuilder.DropForeignKey(
                name: "FK_jobs_datasets_DatasetId",
                table: "jobs");

            migrationBuilder.DropForeignKey(
                name: "FK_jobs_models_ModelId",
                table: "jobs");

            migrationBuilder.DropTable(
                name: "artifact_chunks");

            migrationBuilder.DropTable(
                name: "datasets");

            migrationBuilder.DropTable(
                name: "job_evaluations");

            migrationBuilder.DropTable(
                name: "job_layer_results");

            migrationBuilder.DropTable(
                name: "job_metrics");

            migrationBuilder.DropTable(
                name: "models");

            migrationBuilder.DropTable(
                name: "artifacts");

            migrationBuilder.DropIndex(
                name: "IX_jobs_CheckpointArtifactId",
                table: "jobs");

            migrationBuilder.DropIndex(
                name: "IX_jobs_DatasetId",
                table: "jobs");

            migrationBuilder.DropIndex(
                name: "IX_jobs_ModelId",
                table: "jobs");

            migrationBuilder.DropIndex(
                name: "IX_jobs_ResultOnnxArtifactId",
                table: "jobs");

            migrationBuilder.DropIndex(
                name: "IX_jobs_ResultOnnxSparseArtifactId",
                table: "jobs");

            migrationBuilder.DropIndex(
                name: "IX_jobs_ResultTorchSharpArtifactId",
                table: "jobs");

            migrationBuilder.DropIndex(
                name: "IX_jobs_TenantId_CreatedAt",
                table: "jobs");

            migrationBuilder.DropIndex(
                name: "IX_jobs_TenantId_State_CreatedAt",
                table: "jobs");

            migrationBuilder.DropColumn(
                name: "Attempts",
                table: "jobs");

            migrationBuilder.DropColumn(
                name: "CancelRequested",
                table: "jobs");

            migrationBuilder.DropColumn(
                name: "CheckpointArtifactId",
                table: "jobs");

            migrationBuilder.DropColumn(
                name: "CheckpointInterval",
                table: "jobs");

            migrationBuilder.DropColumn(
                name: "CheckpointIteration",
                table: "jobs");

            migrationBuilder.DropColumn(
                name: "DatasetId",
                table: "jobs");

            migrationBuilder.DropColumn(
                name: "HangfireJobId",
                table: "jobs");

            migrationBuilder.DropColumn(
                name: "Iteration",
                table: "jobs");

            migrationBuilder.DropColumn(
                name: "Kept",
                table: "jobs");

            migrationBuilder.DropColumn(
                name: "LastTop1",
                table: "jobs");

            migrationBuilder.DropColumn(
                name: "LastTop5",
                table: "jobs");

            migrationBuilder.DropColumn(
                name: "LayerNames",
                table: "jobs");

            migrationBuilder.DropColumn(
                name: "LayerTotals",
                table: "jobs");

            migrationBuilder.DropColumn(
                name: "Loss",
                table: "jobs");

            migrationBuilder.DropColumn(
                name: "ModelId",
                table: "jobs");

            migrationBuilder.DropColumn(
                name: "Preprocessing",
                table: "jobs");

            migrationBuilder.DropColumn(
                name: "Queue",
                table: "jobs");

            migrationBuilder.DropColumn(
                name: "ResultOnnxArtifactId",
                table: "jobs");

            migrationBuilder.DropColumn(
                name: "ResultOnnxSparseArtifactId",
                table: "jobs");

            migrationBuilder.DropColumn(
                name: "ResultTorchSharpArtifactId",
                table: "jobs");

            migrationBuilder.DropColumn(
                name: "ResumedFromIteration",
                table: "jobs");

            migrationBuilder.DropColumn(
                name: "Settings",
                table: "jobs");

            migrationBuilder.DropColumn(
                name: "TenantId",
                table: "jobs");

            migrationBuilder.DropColumn(
                name: "Top1After",
                table: "jobs");

            migrationBuilder.DropColumn(
                name: "Top1Before",
                table: "jobs");

            migrationBuilder.DropColumn(
                name: "Total",
                table: "jobs");

            migrationBuilder.DropColumn(
                name: "TotalIterations",
                table: "jobs");

            migrationBuilder.DropColumn(
                name: "UpdatedAt",
                table: "jobs");

            migrationBuilder.CreateIndex(
                name: "IX_jobs_State_CreatedAt",
                table: "jobs",
                columns: new[] { "State", "CreatedAt" });
        }
    }
}
