using SurgeryService.Domain.Datasets;

namespace SurgeryService.Domain.Tests.Datasets;

public class IdxReaderTests
{
    private static byte[] Idx(byte type, int[] shape, byte[] data)
    {
        using var stream = new MemoryStream();
        stream.Write([0, 0, type, (byte)shape.Length]);
        foreach (var d in shape) stream.Write([(byte)(d >> 24), (byte)(d >> 16), (byte)(d >> 8), (byte)d]);
        stream.Write(data);
        return stream.ToArray();
    }

    [Fact]
    public void ReadsUnsignedBytesWithTheirShape()
    {
        using var t = IdxReader.Read(Idx(0x08, [2, 3], [0, 1, 2, 253, 254, 255]), "x");

        Assert.Equal(new long[] { 2, 3 }, t.shape);
        Assert.Equal([0f, 1f, 2f, 253f, 254f, 255f], t.data<float>().ToArray());
    }

    [Fact]
    public void ReadsBigEndianFloats()
    {
        var one = BitConverter.GetBytes(1.5f).Reverse().ToArray();
        var two = BitConverter.GetBytes(-2f).Reverse().ToArray();

        using var t = IdxReader.Read(Idx(0x0D, [2], [.. one, .. two]), "x");

        Assert.Equal([1.5f, -2f], t.data<float>().ToArray());
    }

    [Fact]
    public void RefusesAFileThatIsNotIdx()
    {
        var error = Assert.Throws<SurgeryException>(() => IdxReader.Read("PK\u0003\u0004rest"u8.ToArray(), "train images"));

        Assert.Contains("train images is not an IDX file", error.Message);
        Assert.Equal(ErrorKind.BadInput, error.Kind);
    }

    [Fact]
    public void RefusesATruncatedFile()
    {
        var bytes = Idx(0x08, [10, 28, 28], new byte[100]);

        var error = Assert.Throws<SurgeryException>(() => IdxReader.Read(bytes, "t10k images"));

        Assert.Contains("holds 100 data bytes but its header announces 7840", error.Message);
    }
}
