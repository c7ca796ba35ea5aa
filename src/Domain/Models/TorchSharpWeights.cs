using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace SurgeryService.Domain.Models;

/// <summary>
/// Weights of the built-in architectures in TorchSharp's own format (<c>Module.save</c> / <c>Module.load</c>), so
/// TorchSharp users upload and get back the files their code reads and writes. The format holds named tensors only,
/// so the architecture must be named by the user.
/// </summary>
public static class TorchSharpWeights
{
    /// <summary>A module of the named architecture holding the uploaded weights; refuses files that do not fit it.</summary>
    public static Module<Tensor, Tensor> Load(string architecture, Stream stream)
    {
        var module = Architectures.Create(architecture);
        try
        {
            module.load(stream, strict: true);
            return module;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            var expected = string.Join(", ", module.named_parameters().Select(p => $"{p.name} [{string.Join("x", p.parameter.shape)}]"));
            module.Dispose();
            throw new SurgeryException("Not TorchSharp weights for this architecture",
                $"the file is not a TorchSharp weight file (Module.save) for architecture '{architecture}', " +
                $"whose parameters are {expected}: {e.Message}", ErrorKind.BadInput);
        }
    }

    public static Module<Tensor, Tensor> Load(string architecture, byte[] bytes)
    {
        using var stream = new MemoryStream(bytes, writable: false);
        return Load(architecture, stream);
    }

    /// <summary>The module's weights in TorchSharp's format, readable with <c>Module.load</c> in the user's own code.</summary>
    public static byte[] Save(Module<Tensor, Tensor> module)
    {
        using var stream = new MemoryStream();
        module.save(stream);
        return stream.ToArray();
    }
}
