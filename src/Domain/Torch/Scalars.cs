using TorchSharp;
using static TorchSharp.torch;

namespace SurgeryService.Domain.Torch;

/// <summary>
/// Tensor arithmetic with numbers that never leaves a <see cref="Scalar"/> to its finalizer. In TorchSharp 0.107 every
/// implicit conversion to Scalar (<c>t * 0.5</c>, <c>t.gt(a)</c>) and the alpha of <c>a + b</c> and <c>add_(t)</c>, and
/// the exponent of <c>square()</c>, is a Scalar nobody disposes (a tensor minus a tensor makes none). Its finalizer frees the native value
/// whenever a collection runs, and it may run while LibTorch is still reading it: the ViT bench crashed once so, after
/// about 18,000 iterations ("toFloat ... Expected false to be true" in <c>add</c>). The engine's training and evaluation
/// code does its arithmetic with these helpers instead (ScalarSafetyTests checks that src/Domain does).
/// </summary>
public static class Scalars
{
    /// <summary>1, the alpha of every addition and subtraction: held by a static field, so never finalised.</summary>
    public static readonly Scalar One = 1.ToScalar();

    /// <summary><c>a + b</c>.</summary>
    public static Tensor Plus(this Tensor a, Tensor b) => a.add(b, One);

    /// <summary><c>a + b</c> for a number <paramref name="b"/>.</summary>
    public static Tensor Plus(this Tensor a, double b) => With(b, s => a.add(s, One));

    /// <summary><c>a + b</c> for an integer <paramref name="b"/>: an integer tensor stays an integer tensor.</summary>
    public static Tensor Plus(this Tensor a, long b) => With(b, s => a.add(s, One));

    /// <summary><c>b - a</c> for a number <paramref name="b"/>.</summary>
    public static Tensor SubtractedFrom(this Tensor a, double b) => With(b, s => a.neg().add_(s, One));

    /// <summary><c>a * b</c> for a number <paramref name="b"/>.</summary>
    public static Tensor Times(this Tensor a, double b) => With(b, s => a.mul(s));

    /// <summary><c>a / b</c> for a number <paramref name="b"/>.</summary>
    public static Tensor Over(this Tensor a, double b) => With(b, s => a.div(s));

    /// <summary><c>a²</c> (TorchSharp's <c>square()</c> is <c>pow</c> with an implicit Scalar 2).</summary>
    public static Tensor Squared(this Tensor a) => a.mul(a);

    /// <summary><c>a ^ p</c> for a number <paramref name="p"/>.</summary>
    public static Tensor Power(this Tensor a, double p) => With(p, s => a.pow(s));

    /// <summary><c>a &gt; b</c>, elementwise.</summary>
    public static Tensor Above(this Tensor a, double b) => With(b, s => a.gt(s));

    /// <summary><c>a &gt;= b</c>, elementwise.</summary>
    public static Tensor AtLeast(this Tensor a, double b) => With(b, s => a.ge(s));

    /// <summary><c>a &lt; b</c>, elementwise.</summary>
    public static Tensor Below(this Tensor a, double b) => With(b, s => a.lt(s));

    /// <summary><c>a == b</c>, elementwise.</summary>
    public static Tensor EqualTo(this Tensor a, double b) => With(b, s => a.eq(s));

    /// <summary><c>a != b</c>, elementwise.</summary>
    public static Tensor NotEqualTo(this Tensor a, double b) => With(b, s => a.ne(s));

    /// <summary>Writes <paramref name="value"/> where <paramref name="mask"/> is true, in place.</summary>
    public static Tensor FillWhere_(this Tensor a, Tensor mask, double value) => With(value, s => a.masked_fill_(mask, s));

    /// <summary><paramref name="operation"/> with <paramref name="value"/> as a Scalar that is disposed when it returns.</summary>
    private static Tensor With(double value, Func<Scalar, Tensor> operation)
    {
        using var scalar = value.ToScalar();
        return operation(scalar);
    }

    private static Tensor With(long value, Func<Scalar, Tensor> operation)
    {
        using var scalar = value.ToScalar();
        return operation(scalar);
    }

    /// <summary>Clamps to [<paramref name="min"/>, <paramref name="max"/>] (either may be absent).</summary>
    public static Tensor Clamped(this Tensor a, double? min, double? max)
    {
        using var lo = min?.ToScalar();
        using var hi = max?.ToScalar();
        return a.clamp(lo, hi);
    }

    /// <summary>Clamps to [<paramref name="min"/>, <paramref name="max"/>] for integers.</summary>
    public static Tensor Clamped(this Tensor a, long? min, long? max)
    {
        using var lo = min?.ToScalar();
        using var hi = max?.ToScalar();
        return a.clamp(lo, hi);
    }
}
