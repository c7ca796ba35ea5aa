using static TorchSharp.torch;

namespace SurgeryService.Domain.Torch;

/// <summary>Raw tensor (de)serialisation for checkpoints: shape, element type, bytes.</summary>
internal static class TensorIO
{
    public static void Write(BinaryWriter writer, Tensor tensor)
    {
        using var cpu = tensor.detach().cpu().contiguous();
        writer.Write(cpu.shape.Length);
        foreach (var d in cpu.shape) writer.Write(d);
        writer.Write((int)cpu.dtype);
        var bytes = cpu.bytes;
        writer.Write(bytes.Length);
        writer.Write(bytes);
    }

    public static void ReadInto(BinaryReader reader, Tensor target)
    {
        var shape = new long[reader.ReadInt32()];
        for (var i = 0; i < shape.Length; i++) shape[i] = reader.ReadInt64();
        var dtype = (ScalarType)reader.ReadInt32();
        var length = reader.ReadInt32();
        if (!shape.SequenceEqual(target.shape) || dtype != target.dtype)
        {
            throw new SurgeryException("Bad checkpoint", "a tensor in the checkpoint has another shape or type than the model's", ErrorKind.Conflict);
        }
        // Read straight into native memory: a managed array per tensor would be large-object garbage on every restore.
        using var cpu = empty(shape, dtype);
        var bytes = cpu.bytes;
        if (bytes.Length != length)
        {
            throw new SurgeryException("Bad checkpoint", "a tensor in the checkpoint has another size than its shape and type", ErrorKind.Conflict);
        }
        reader.BaseStream.ReadExactly(bytes);
        using var _ = no_grad();
        target.copy_(cpu);
    }
}
