using SurgeryService.Domain.Jobs;
using SurgeryService.Domain.Surgery;
using SurgeryService.Domain.Models;

namespace SurgeryService.Domain.Tests.Jobs;

public class JobKindTests
{
    [Fact]
    public void ASensitivitySettingMakesASensitivityJobWhateverElseIsSet()
    {
        var sensitivity = new SensitivitySettings { Validation = 0.2 };

        var kind = JobKind.Of(new SurgerySettings { Sensitivity = sensitivity });

        Assert.Equal(sensitivity, Assert.IsType<SensitivityJob>(kind).Sensitivity);
        Assert.Equal("sensitivity", kind.Name);
    }

    [Fact]
    public void ATargetOrNoCRateAnywhereMakesABudgetJobWithItsTargetOrTheDefaults()
    {
        var target = new SurgeryTarget { MaxAccuracyDrop = 1, MaxIterations = 500 };

        var given = Assert.IsType<BudgetJob>(JobKind.Of(new SurgerySettings { Target = target, Iterations = 900 }));
        var defaults = Assert.IsType<BudgetJob>(JobKind.Of(new SurgerySettings { Iterations = 900 }));

        Assert.Equal((target, 500), (given.Target, given.MaxIterations));
        Assert.Equal((new SurgeryTarget(), 900), (defaults.Target, defaults.MaxIterations));
        Assert.Equal("budget", given.Name);
    }

    [Fact]
    public void ACRateAtTheTopOrForOneLayerMakesAFixedJob()
    {
        Assert.IsType<FixedJob>(JobKind.Of(new SurgerySettings { CRate = 3 }));
        var layer = Assert.IsType<FixedJob>(JobKind.Of(new SurgerySettings { Layers = [new LayerSettings { Pattern = "fc1", CRate = 2 }] }));
        Assert.Equal("fixed", layer.Name);
        Assert.IsType<BudgetJob>(JobKind.Of(new SurgerySettings { Layers = [new LayerSettings { Pattern = "fc1", IterStop = 5 }] }));
    }

    [Fact]
    public void EachMethodIsNamedOnceAndParsedBackFromItsName()
    {
        foreach (var method in Enum.GetValues<SurgeryMethod>())
        {
            Assert.Equal(method, PruningMethods.Parse(method.Name().ToUpperInvariant()));
        }
        Assert.Equal(["dns", "magnitude"], Enum.GetValues<SurgeryMethod>().Select(m => m.Name()));
        Assert.Null(PruningMethods.Parse("lottery"));
    }

    [Theory]
    [InlineData(true, 600)]
    [InlineData(false, 2000)]
    public void ASearchItsTimeBudgetEndedEarlyFinishesWithTheIterationsItRan(bool limited, int total)
    {
        var job = new SurgeryJob
        {
            TenantId = "t", Settings = new SurgerySettings { Iterations = 2000 }, Preprocessing = new JobPreprocessing(), Queue = "cpu",
            TotalIterations = 2000,
        };
        job.StartAttempt(DateTimeOffset.UtcNow);
        var search = new SearchReport { TimeBudget = new TimeBudgetReport { MaxMinutes = 1, Limited = limited } };
        var outcome = new SurgeryOutcome(600, false, null, null, [new LayerResult("fc", LayerKind.FullyConnected, 100, 10, 90, 0)])
        {
            Search = search,
        };

        job.Succeed(outcome, new Dictionary<ResultFormat, Guid>(), DateTimeOffset.UtcNow);

        Assert.Equal((600, total), (job.Iteration, job.TotalIterations));
    }
}
