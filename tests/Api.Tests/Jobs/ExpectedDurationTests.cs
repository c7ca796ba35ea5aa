using SurgeryService.Domain.Jobs;
using SurgeryService.Domain.Surgery;
using SurgeryService.Infrastructure.Jobs;

namespace SurgeryService.Api.Tests.Jobs;

/// <summary>The duration a job is expected to take when it is submitted: the time budget, a finished job's pace, or none.</summary>
public sealed class ExpectedDurationTests
{
    /// <summary>0.5 s per iteration over its whole run, at batch size 32.</summary>
    private static readonly FinishedRun Finished = new(Guid.CreateVersion7(), Iterations: 200, BatchSize: 32, Seconds: 100);

    private static JobKind Budget(double? maxMinutes) =>
        JobKind.Of(new SurgerySettings { BatchSize = 64, Target = new SurgeryTarget { MaxMinutes = maxMinutes } });

    [Fact]
    public void WithNothingToGoByThereIsNoEstimateAndTheBasisSaysThePaceIsMeasuredWhileRunning()
    {
        var (seconds, basis) = ExpectedDuration.Of(Budget(null), 400, previous: null);
        Assert.Null(seconds);
        Assert.Contains("etaSeconds", basis);
    }

    [Fact]
    public void AFinishedJobsPaceIsScaledByTheIterationsAndTheBatchSize()
    {
        var (seconds, basis) = ExpectedDuration.Of(Budget(null), 400, Finished);
        Assert.Equal(0.5 * 400 * 64 / 32, seconds);
        Assert.StartsWith($"job {Finished.JobId} on this model and queue ran 0.5 s per iteration", basis);
    }

    [Theory]
    [InlineData(5, 300)] // the pace asks 400 s: the budget bounds it
    [InlineData(10, 400)] // the pace fits within the budget
    public void ATimeBudgetBoundsTheEstimate(double maxMinutes, double expected)
    {
        var (seconds, basis) = ExpectedDuration.Of(Budget(maxMinutes), 400, Finished);
        Assert.Equal(expected, seconds);
        Assert.Contains($"target.maxMinutes {maxMinutes}", basis);
        Assert.Equal((300.0, "the time budget, target.maxMinutes 5: the search fits its stages to it (no finished job on this model and queue to go by)"),
            ExpectedDuration.Of(Budget(5), 400, previous: null));
    }

    [Fact]
    public void ASensitivityAnalysisHasNoEstimate()
    {
        var (seconds, basis) = ExpectedDuration.Of(JobKind.Of(new SurgerySettings { Sensitivity = new SensitivitySettings() }), 3, Finished);
        Assert.Null(seconds);
        Assert.Contains("sensitivity", basis);
    }
}
