using SurgeryService.Domain.Torch;
using static TorchSharp.torch;

namespace SurgeryService.Domain.Surgery;

/// <summary>
/// The trainer's checkpoint format: everything a resumed run needs (docs/algorithm.md#known-traps: thresholds are saved,
/// never recomputed). The budget stage in force is written beside the trainer's state by the search that runs it; the
/// trainer itself holds none.
/// </summary>
public static class TrainerCheckpoint
{
    /// <summary>Version 4 adds the base learning rate (the probe's choice, when it chose).</summary>
    private const string Magic = "DNS-CKPT-4";

    /// <summary>Version 3 adds the learning-rate scale, rollbacks, the budget-mode stage and the divergence baseline.</summary>
    private const string MagicV3 = "DNS-CKPT-3";

    private const string MagicV2 = "DNS-CKPT-2";

    public static void Save(SurgeryTrainer trainer, Stream stream, SurgeryStage? stage)
    {
        using var scope = NewDisposeScope(); // TensorIO's intermediate tensors
        using var writer = new BinaryWriter(stream, System.Text.Encoding.UTF8, leaveOpen: true);
        writer.Write(Magic);
        writer.Write(trainer.Iteration);
        writer.Write(trainer.LearningRateScale);
        writer.Write(trainer.Rollbacks);
        writer.Write(trainer.BaseLearningRate);
        writer.Write(stage is not null);
        if (stage is not null)
        {
            writer.Write(stage.Start);
            writer.Write(stage.End);
            writer.Write(stage.MaskIterations);
        }
        var guard = trainer.Guard;
        writer.Write(guard is not null);
        if (guard is not null)
        {
            writer.Write(guard.StartLoss);
            writer.Write(guard.StartTop1);
            writer.Write(guard.Classes);
        }
        writer.Write(trainer.Layers.Count);
        foreach (var layer in trainer.Layers)
        {
            writer.Write(layer.Layer.Name);
            writer.Write(layer.PruneBelow);
            writer.Write(layer.SpliceAbove);
            writer.Write(layer.StartStd);
            writer.Write(layer.PrunedTotal);
            writer.Write(layer.SplicedTotal);
            foreach (var m in layer.Masked)
            {
                TensorIO.Write(writer, m.Dense);
                using (var mask = m.Mask.NotEqualTo(0)) TensorIO.Write(writer, mask); // stored as bool
                foreach (var state in trainer.Optimizer.State(m.Dense)) TensorIO.Write(writer, state);
            }
        }
        writer.Write(trainer.Plain.Count);
        foreach (var (name, parameter) in trainer.Plain)
        {
            writer.Write(name);
            TensorIO.Write(writer, parameter);
            foreach (var state in trainer.Optimizer.State(parameter)) TensorIO.Write(writer, state);
        }
        var buffers = trainer.Model.named_buffers().ToList();
        writer.Write(buffers.Count);
        foreach (var (name, buffer) in buffers)
        {
            writer.Write(name);
            TensorIO.Write(writer, buffer);
        }
    }

    /// <summary>
    /// Restores a checkpoint written by a trainer with the same model, layers and settings; returns the budget stage it
    /// was written in, if any.
    /// </summary>
    public static SurgeryStage? Load(SurgeryTrainer trainer, Stream stream)
    {
        using var scope = NewDisposeScope();
        using var reader = new BinaryReader(stream, System.Text.Encoding.UTF8, leaveOpen: true);
        void Expect(bool ok, string what)
        {
            if (!ok) throw new SurgeryException("Bad checkpoint", $"the checkpoint does not match this run: {what}", ErrorKind.Conflict);
        }

        var magic = reader.ReadString();
        Expect(magic is Magic or MagicV3 or MagicV2, "unknown format");
        var iteration = reader.ReadInt32();
        SurgeryStage? stage = null;
        if (magic is Magic or MagicV3)
        {
            trainer.LearningRateScale = reader.ReadDouble();
            trainer.Rollbacks = reader.ReadInt32();
            if (magic == Magic) trainer.BaseLearningRate = reader.ReadDouble();
            stage = reader.ReadBoolean() ? new SurgeryStage(reader.ReadInt32(), reader.ReadInt32(), reader.ReadInt32()) : null;
            trainer.Guard = reader.ReadBoolean() ? new DivergenceGuard(reader.ReadDouble(), reader.ReadDouble(), reader.ReadInt32()) : null;
        }
        Expect(reader.ReadInt32() == trainer.Layers.Count, "layer count differs");
        using var _ = no_grad();
        foreach (var layer in trainer.Layers)
        {
            Expect(reader.ReadString() == layer.Layer.Name, $"layer {layer.Layer.Name} missing");
            layer.SetThresholds(reader.ReadSingle(), reader.ReadSingle());
            layer.StartStd = reader.ReadSingle();
            layer.PrunedTotal = reader.ReadInt64();
            layer.SplicedTotal = reader.ReadInt64();
            foreach (var m in layer.Masked)
            {
                TensorIO.ReadInto(reader, m.Dense);
                using var mask = m.Mask.NotEqualTo(0);
                TensorIO.ReadInto(reader, mask);
                m.Mask.copy_(mask);
                foreach (var state in trainer.Optimizer.State(m.Dense)) TensorIO.ReadInto(reader, state);
            }
            layer.RecountMask();
            layer.WriteMaskedWeights();
        }
        Expect(reader.ReadInt32() == trainer.Plain.Count, "parameter count differs");
        foreach (var (name, parameter) in trainer.Plain)
        {
            Expect(reader.ReadString() == name, $"parameter {name} missing");
            TensorIO.ReadInto(reader, parameter);
            foreach (var state in trainer.Optimizer.State(parameter)) TensorIO.ReadInto(reader, state);
        }
        var buffers = trainer.Model.named_buffers().ToDictionary(b => b.name, b => b.buffer);
        var bufferCount = reader.ReadInt32();
        for (var i = 0; i < bufferCount; i++)
        {
            var name = reader.ReadString();
            Expect(buffers.TryGetValue(name, out var buffer), $"buffer {name} missing");
            TensorIO.ReadInto(reader, buffer!);
        }
        trainer.Iteration = iteration;
        return stage;
    }
}
