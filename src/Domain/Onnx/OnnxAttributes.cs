using System.Text;
using SurgeryService.Domain.Onnx.Proto;

namespace SurgeryService.Domain.Onnx;

/// <summary>Typed access to a node's attributes, with ONNX's defaults supplied by the caller.</summary>
internal sealed class OnnxAttributes(NodeProto node)
{
    private readonly Dictionary<string, AttributeProto> _byName =
        node.Attribute.GroupBy(a => a.Name).ToDictionary(g => g.Key, g => g.First(), StringComparer.Ordinal);

    public bool Has(string name) => _byName.ContainsKey(name);

    public long Int(string name, long fallback) => _byName.TryGetValue(name, out var a) ? a.I : fallback;

    public float Float(string name, float fallback) => _byName.TryGetValue(name, out var a) ? a.F : fallback;

    public string String(string name, string fallback) =>
        _byName.TryGetValue(name, out var a) ? Encoding.UTF8.GetString(a.S.Span) : fallback;

    public long[]? Ints(string name) => _byName.TryGetValue(name, out var a) ? a.Ints.ToArray() : null;

    public float[]? Floats(string name) => _byName.TryGetValue(name, out var a) ? a.Floats.ToArray() : null;

    public TensorProto? Tensor(string name) => _byName.TryGetValue(name, out var a) ? a.T : null;
}
