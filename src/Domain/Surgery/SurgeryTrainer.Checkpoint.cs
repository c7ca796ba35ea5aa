using SurgeryService.Domain.Torch;
using static TorchSharp.torch;

namespace SurgeryService.Domain.Surgery;

/// <summary>
/// The trainer's checkpoint format: everything a resumed run needs (dns-spec.md: thresholds must be saved, never
/// recomputed). A part of <see cref="SurgeryTrainer"/> because it reads and restores the trainer's private state.
/// </summary>
public sealed partial class SurgeryTrainer
{
    /// <summary>Version 3 adds the learning-rate scale, rollbacks, the budget-mode stage and the divergence baseline.</summary>
    private const string CheckpointMagic = "DNS-CKPT-3";

    private const string CheckpointMagicV2 = "DNS-CKPT-2";

    public void SaveCheckpoint(Stream stream)
    {
        using var scope = NewDisposeScope(); // TensorIO's intermediate tensors
        using var writer = new BinaryWriter(stream, System.Text.Encoding.UTF8, leaveOpen: true);
        writer.Write(CheckpointMagic);
        writer.Write(Iteration);
        writer.Write(_learningRateScale);
        writer.Write(Rollbacks);
        writer.Write(_stage is not null);
        if (_stage is { } stage)
        {
            writer.Write(stage.Start);
            writer.Write(stage.End);
            writer.Write(stage.MaskIterations);
        }
        writer.Write(_guard is not null);
        if (_guard is not null)
        {
            writer.Write(_guard.StartLoss);
            writer.Write(_guard.StartTop1);
            writer.Write(_guard.Classes);
        }
        writer.Write(_layers.Count);
        foreach (var layer in _layers)
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
                using (var mask = m.Mask.ne(0f)) TensorIO.Write(writer, mask); // stored as bool
                TensorIO.Write(writer, m.Velocity);
            }
        }
        writer.Write(_plain.Count);
        foreach (var (name, parameter, velocity) in _plain)
        {
            writer.Write(name);
            TensorIO.Write(writer, parameter);
            TensorIO.Write(writer, velocity);
        }
        var buffers = _model.named_buffers().ToList();
        writer.Write(buffers.Count);
        foreach (var (name, buffer) in buffers)
        {
            writer.Write(name);
            TensorIO.Write(writer, buffer);
        }
    }

    /// <summary>Restores a checkpoint written by a trainer with the same model, layers and settings.</summary>
    public void LoadCheckpoint(Stream stream)
    {
        using var scope = NewDisposeScope();
        using var reader = new BinaryReader(stream, System.Text.Encoding.UTF8, leaveOpen: true);
        void Expect(bool ok, string what)
        {
            if (!ok) throw new SurgeryException("Bad checkpoint", $"the checkpoint does not match this run: {what}", ErrorKind.Conflict);
        }

        var magic = reader.ReadString();
        Expect(magic is CheckpointMagic or CheckpointMagicV2, "unknown format");
        var iteration = reader.ReadInt32();
        if (magic == CheckpointMagic)
        {
            _learningRateScale = reader.ReadDouble();
            Rollbacks = reader.ReadInt32();
            _stage = reader.ReadBoolean() ? new SurgeryStage(reader.ReadInt32(), reader.ReadInt32(), reader.ReadInt32()) : null;
            _guard = reader.ReadBoolean() ? new DivergenceGuard(reader.ReadDouble(), reader.ReadDouble(), reader.ReadInt32()) : null;
        }
        Expect(reader.ReadInt32() == _layers.Count, "layer count differs");
        using var _ = no_grad();
        foreach (var layer in _layers)
        {
            Expect(reader.ReadString() == layer.Layer.Name, $"layer {layer.Layer.Name} missing");
            layer.SetThresholds(reader.ReadSingle(), reader.ReadSingle());
            layer.StartStd = reader.ReadSingle();
            layer.PrunedTotal = reader.ReadInt64();
            layer.SplicedTotal = reader.ReadInt64();
            foreach (var m in layer.Masked)
            {
                TensorIO.ReadInto(reader, m.Dense);
                using var mask = m.Mask.ne(0f);
                TensorIO.ReadInto(reader, mask);
                m.Mask.copy_(mask);
                TensorIO.ReadInto(reader, m.Velocity);
            }
            layer.RecountMask();
            layer.WriteMaskedWeights();
        }
        Expect(reader.ReadInt32() == _plain.Count, "parameter count differs");
        foreach (var (name, parameter, velocity) in _plain)
        {
            Expect(reader.ReadString() == name, $"parameter {name} missing");
            TensorIO.ReadInto(reader, parameter);
            TensorIO.ReadInto(reader, velocity);
        }
        var buffers = _model.named_buffers().ToDictionary(b => b.name, b => b.buffer);
        var bufferCount = reader.ReadInt32();
        for (var i = 0; i < bufferCount; i++)
        {
            var name = reader.ReadString();
            Expect(buffers.TryGetValue(name, out var buffer), $"buffer {name} missing");
            TensorIO.ReadInto(reader, buffer!);
        }
        Iteration = iteration;
    }
}
