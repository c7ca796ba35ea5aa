namespace SurgeryService.Domain.Surgery;

/// <summary>The learning rate at an iteration, before the rollbacks' scale (<see cref="SurgeryTrainer.Rollbacks"/>).</summary>
public interface ILearningRateSchedule
{
    double At(int iteration);
}

/// <summary>
/// Caffe's learning-rate policies (<see cref="LearningRatePolicy"/>) from <paramref name="baseRate"/> (the settings' rate,
/// or the probe's), counted from <paramref name="origin"/>.
/// </summary>
public sealed class CaffeLearningRate(SurgerySettings settings, double baseRate, int origin = 0) : ILearningRateSchedule
{
    public double At(int iteration)
    {
        var local = iteration - origin;
        return settings.LrPolicy switch
        {
            LearningRatePolicy.Step => baseRate * Math.Pow(settings.LrGamma, local / settings.LrStepSize),
            LearningRatePolicy.Inv => baseRate * Math.Pow(1 + settings.LrGamma * local, -settings.LrPower),
            _ => baseRate,
        };
    }
}

/// <summary>
/// A budget-mode stage (docs/algorithm.md#budget-mode): the user's policy restarted at the stage's start; once the
/// stage's masks are frozen, the rate falls along a half cosine towards zero at the stage's end (the whole fine-tune is
/// one such fall). A stage is judged by one evaluation at its end, and a user's schedule (e.g. a step every 10,000
/// iterations) never decays within a stage of a few thousand: at a constant rate that evaluation measures SGD's noise as
/// much as the mask. The next stage restarts at the full rate (a warm restart, as in SGDR).
/// </summary>
public sealed class StageLearningRate(SurgerySettings settings, double baseRate, SurgeryStage stage) : ILearningRateSchedule
{
    private readonly CaffeLearningRate _policy = new(settings, baseRate, stage.Start);

    public double At(int iteration) => _policy.At(iteration) * Annealing(iteration);

    private double Annealing(int iteration)
    {
        var frozenFrom = stage.Start + stage.MaskIterations;
        var frozen = stage.End - frozenFrom;
        if (iteration < frozenFrom || frozen <= 0) return 1;
        return 0.5 * (1 + Math.Cos(Math.PI * Math.Min(1.0, (double)(iteration - frozenFrom) / frozen)));
    }
}

/// <summary>
/// What a stretch of training follows: when masks update, the learning rate, and whether an evaluation at chance is
/// divergence (the paper's fixed mode) or, in a budget stage, the stage's verdict to give.
/// </summary>
public sealed record TrainingPlan(IMaskSchedule Masks, ILearningRateSchedule LearningRate, bool JudgesAccuracy);

/// <summary>One rate throughout (the learning-rate probe's trials).</summary>
public sealed class ConstantLearningRate(double rate) : ILearningRateSchedule
{
    public double At(int iteration) => rate;
}
