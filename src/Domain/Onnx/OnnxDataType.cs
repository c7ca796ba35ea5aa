using static TorchSharp.torch;

namespace SurgeryService.Domain.Onnx;

/// <summary>ONNX element types (<c>TensorProto.data_type</c>), with their TorchSharp counterparts.</summary>
public enum OnnxDataType
{
    Undefined = 0,
    Float = 1,
    UInt8 = 2,
    Int8 = 3,
    UInt16 = 4,
    Int16 = 5,
    Int32 = 6,
    Int64 = 7,
    String = 8,
    Bool = 9,
    Float16 = 10,
    Double = 11,
    UInt32 = 12,
    UInt64 = 13,
    Complex64 = 14,
    Complex128 = 15,
    BFloat16 = 16,
}

internal static class OnnxDataTypes
{
    public static string Describe(int dataType) =>
        Enum.IsDefined((OnnxDataType)dataType) ? ((OnnxDataType)dataType).ToString().ToUpperInvariant() : $"type {dataType}";

    /// <summary>The TorchSharp type holding values of an ONNX type, or null where TorchSharp has none.</summary>
    public static ScalarType? ToScalarType(int dataType) => (OnnxDataType)dataType switch
    {
        OnnxDataType.Float => ScalarType.Float32,
        OnnxDataType.UInt8 => ScalarType.Byte,
        OnnxDataType.Int8 => ScalarType.Int8,
        OnnxDataType.Int16 => ScalarType.Int16,
        OnnxDataType.Int32 => ScalarType.Int32,
        OnnxDataType.Int64 => ScalarType.Int64,
        OnnxDataType.Bool => ScalarType.Bool,
        OnnxDataType.Float16 => ScalarType.Float16,
        OnnxDataType.Double => ScalarType.Float64,
        OnnxDataType.BFloat16 => ScalarType.BFloat16,
        _ => null,
    };

    public static int ElementSize(int dataType) => (OnnxDataType)dataType switch
    {
        OnnxDataType.Float or OnnxDataType.Int32 or OnnxDataType.UInt32 => 4,
        OnnxDataType.UInt8 or OnnxDataType.Int8 or OnnxDataType.Bool => 1,
        OnnxDataType.UInt16 or OnnxDataType.Int16 or OnnxDataType.Float16 or OnnxDataType.BFloat16 => 2,
        OnnxDataType.Int64 or OnnxDataType.Double or OnnxDataType.UInt64 or OnnxDataType.Complex64 => 8,
        OnnxDataType.Complex128 => 16,
        _ => 0,
    };
}
