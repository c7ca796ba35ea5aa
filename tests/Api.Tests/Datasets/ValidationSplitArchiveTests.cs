using System.IO.Compression;
using SurgeryService.Api.Tests.Infrastructure;
using SurgeryService.Domain;
using SurgeryService.Domain.Datasets;

namespace SurgeryService.Api.Tests.Datasets;

/// <summary>A dataset archive may carry its own validation split, in either format; half of one is refused.</summary>
public sealed class ValidationSplitArchiveTests
{
    [Fact]
    public void AnNpzWithXValAndYValHasAValidationSplit()
    {
        var npz = TestData.MnistNpzWithValidation(train: 50, validation: 20, test: 30);
        var summary = DatasetArchive.Inspect(new MemoryStream(npz));
        Assert.Equal((50L, 30L, 20L), (summary.TrainCount, summary.TestCount, summary.ValidationCount));

        using var tensors = DatasetArchive.Read(new MemoryStream(npz));
        Assert.Equal([20L, 1, 28, 28], tensors.ValidationInputs!.shape);
        // The validation samples are the 20 training images after the first 50, with their labels.
        var (xAll, yAll, _, _) = TestData.MnistSubset(70, 30);
        Assert.Equal(yAll[50..].Select(b => (long)b), tensors.ValidationLabels!.data<long>().ToArray());
        Assert.Equal(xAll[(50 * 784)..].Select(b => (float)b), tensors.ValidationInputs.flatten().data<float>().ToArray());
    }

    [Fact]
    public void AnIdxZipWithValidationFilesHasAValidationSplitAndOneWithoutHasNone()
    {
        var (x, y, xTest, yTest) = TestData.MnistSubset(40, 10);
        byte[] Zip(bool withValidation)
        {
            using var memory = new MemoryStream();
            using (var zip = new ZipArchive(memory, ZipArchiveMode.Create, leaveOpen: true))
            {
                void Add(string name, byte[] data)
                {
                    using var stream = zip.CreateEntry(name).Open();
                    stream.Write(data);
                }
                Add("train-images-idx3-ubyte", TestData.Idx(0x08, [30, 28, 28], x[..(30 * 784)]));
                Add("train-labels-idx1-ubyte", TestData.Idx(0x08, [30], y[..30]));
                Add("t10k-images-idx3-ubyte", TestData.Idx(0x08, [10, 28, 28], xTest));
                Add("t10k-labels-idx1-ubyte", TestData.Idx(0x08, [10], yTest));
                if (withValidation)
                {
                    Add("val-images-idx3-ubyte", TestData.Idx(0x08, [10, 28, 28], x[(30 * 784)..]));
                    Add("val-labels-idx1-ubyte", TestData.Idx(0x08, [10], y[30..]));
                }
            }
            return memory.ToArray();
        }

        Assert.Equal(10, DatasetArchive.Inspect(new MemoryStream(Zip(withValidation: true))).ValidationCount);
        using (var tensors = DatasetArchive.Read(new MemoryStream(Zip(withValidation: true))))
        {
            Assert.Equal(y[30..].Select(b => (long)b), tensors.ValidationLabels!.data<long>().ToArray());
        }
        Assert.Equal(0, DatasetArchive.Inspect(new MemoryStream(Zip(withValidation: false))).ValidationCount);
        using (var tensors = DatasetArchive.Read(new MemoryStream(Zip(withValidation: false))))
        {
            Assert.Null(tensors.ValidationInputs);
        }
    }

    [Fact]
    public void HalfAValidationSplitIsRefusedWithWhatIsMissing()
    {
        var (x, y, xTest, yTest) = TestData.MnistSubset(20, 10);
        var npz = TestData.Npz(CompressionLevel.Fastest,
            ("x_train", "|u1", [20, 28, 28], x), ("y_train", "<i8", [20], TestData.Int64(y)),
            ("x_test", "|u1", [10, 28, 28], xTest), ("y_test", "<i8", [10], TestData.Int64(yTest)),
            ("x_val", "|u1", [10, 28, 28], xTest));
        var error = Assert.Throws<SurgeryException>(() => DatasetArchive.Inspect(new MemoryStream(npz)));
        Assert.Contains("x_val but not y_val", error.Message);

        var mismatched = TestData.Npz(CompressionLevel.Fastest,
            ("x_train", "|u1", [20, 28, 28], x), ("y_train", "<i8", [20], TestData.Int64(y)),
            ("x_test", "|u1", [10, 28, 28], xTest), ("y_test", "<i8", [10], TestData.Int64(yTest)),
            ("x_val", "|u1", [10, 28, 28], xTest), ("y_val", "<i8", [9], TestData.Int64(yTest[..9])));
        Assert.Contains("10 validation inputs but 9 validation labels",
            Assert.Throws<SurgeryException>(() => DatasetArchive.Inspect(new MemoryStream(mismatched))).Message);
    }
}
