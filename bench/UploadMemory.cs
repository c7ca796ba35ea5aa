using System.Buffers.Binary;
using System.Diagnostics;
using System.IO.Compression;
using System.Net.Http.Headers;
using System.Runtime.InteropServices;
using System.Text;
using Google.Protobuf;
using SurgeryService.Domain.Onnx.Proto;
using SurgeryService.Tests.Shared;

namespace SurgeryService.Bench;

/// <summary>
/// Issue 16: the Api's peak resident memory while it refuses decompression bombs and while it accepts a large ONNX
/// model; issue 27: while it refuses an oversized settings body and serves 8 events streams. Sends each upload to a running Api (started by bench/upload-memory.sh) and reads the Api process's VmHWM,
/// reset before each upload through /proc/PID/clear_refs. Prints figures; asserts nothing.
/// </summary>
public static class UploadMemory
{
    public static int Run(string[] args)
    {
        string Arg(string name) => args.SkipWhile(a => a != name).Skip(1).FirstOrDefault()
            ?? throw new ArgumentException($"missing {name}");
        var url = Arg("--url");
        var key = Arg("--key");
        var pid = int.Parse(Arg("--pid"));
        var modelMegabytes = args.Contains("--model-mb") ? int.Parse(Arg("--model-mb")) : 300;
        var work = Directory.CreateTempSubdirectory("upload-memory-");
        try
        {
            using var client = new HttpClient { BaseAddress = new Uri(url), Timeout = TimeSpan.FromMinutes(10) };
            client.DefaultRequestHeaders.Add("X-Api-Key", key);
            var cases = new (string Name, string Path, Action<string> Write)[]
            {
                ("bomb: IDX zip, 1 GiB zero entry", "/api/datasets", path => IdxZip(path, Deflated(Zeros(1L << 30)))),
                ("bomb: IDX zip, nested gzip inflating to 2.5 GiB", "/api/datasets",
                    path => IdxZip(path, Deflated(Gzip(Zeros(5L << 29, IdxHeader(10, 28, 28)))), ".gz")),
                ("bomb: npz, x_train header for 7840 bytes + 1 GiB zeros", "/api/datasets",
                    path => NpzWithXTrain(path, Zeros(1L << 30, NpyHeader("(10, 28, 28)")))),
                ("bomb: gzipped IDX header announcing 100 GB", "/api/datasets",
                    path => IdxZip(path, Deflated(Gzip(Zeros(0, IdxHeader(100_000, 1000, 1000)))), ".gz")),
                // The first model upload warms the inspection (LibTorch itself is loaded when the Api starts): measured apart from the large one.
                ("accepted: ONNX MLP of 1 MB, the Api's first model", "/api/models", path => OnnxModel(path, 1)),
                ($"accepted: ONNX MLP of {modelMegabytes} MB", "/api/models", path => OnnxModel(path, modelMegabytes)),
            };
            // Once settled: the Api loads LibTorch in the background after it is ready.
            var (start, settledAfter) = SettledRss(pid);
            Console.WriteLine($"Api pid {pid}, VmRSS at start {start} kB (settled {settledAfter.TotalSeconds:F1} s after ready), VmHWM {Status(pid, "VmHWM")} kB");
            using (var probe = client.GetAsync("/api/models").GetAwaiter().GetResult())
            {
                // Kestrel itself (TestServer in the tests sends no Server header, so only this run shows it).
                Console.WriteLine($"GET /api/models: Server header {(probe.Headers.Server.Count == 0 ? "absent" : probe.Headers.Server.ToString())}, " +
                    $"X-Content-Type-Options {string.Join(",", probe.Headers.TryGetValues("X-Content-Type-Options", out var v) ? v : ["absent"])}");
            }
            foreach (var (name, path, write) in cases)
            {
                var file = Path.Combine(work.FullName, "upload.bin");
                write(file);
                var size = new FileInfo(file).Length;
                File.WriteAllText($"/proc/{pid}/clear_refs", "5"); // resets VmHWM to the current RSS
                var before = Status(pid, "VmRSS");
                var watch = Stopwatch.StartNew();
                using var form = new MultipartFormDataContent();
                var content = new StreamContent(File.OpenRead(file));
                content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
                form.Add(content, "file", "upload.bin");
                using var response = client.PostAsync(path, form).GetAwaiter().GetResult();
                var body = response.Content.ReadAsStringAsync().GetAwaiter().GetResult();
                var peak = Status(pid, "VmHWM");
                Console.WriteLine($"{name}: upload {size / 1e6:F2} MB -> {(int)response.StatusCode} in {watch.Elapsed.TotalSeconds:F1} s; " +
                    $"Api RSS before {before / 1024} MB, peak during {peak / 1024} MB (+{(peak - before) / 1024} MB); " +
                    $"{Summary(body)}");
                var (settled, after) = SettledRss(pid);
                Console.WriteLine($"  Api RSS once settled {settled / 1024} MB ({after.TotalSeconds:F1} s after the answer)");
                File.Delete(file);
            }
            Settings(client, pid, work.FullName);
            return 0;
        }
        finally
        {
            work.Delete(recursive: true);
        }
    }

    /// <summary>
    /// The Api's resident set once it stops changing after an answer (two readings 0.5 s apart within 1 MB, at most 10 s):
    /// what it keeps of an upload, whether the release happened before or just after the answer.
    /// </summary>
    private static (long Kilobytes, TimeSpan After) SettledRss(int pid)
    {
        var watch = Stopwatch.StartNew();
        var previous = Status(pid, "VmRSS");
        while (watch.Elapsed < TimeSpan.FromSeconds(10))
        {
            Thread.Sleep(500);
            var current = Status(pid, "VmRSS");
            if (Math.Abs(current - previous) <= 1024) return (current, watch.Elapsed);
            previous = current;
        }
        return (previous, watch.Elapsed);
    }

    /// <summary>
    /// Issue 27: the Api's peak while it refuses the prober's 25 MB settings body (700,000 layer entries), then its peak
    /// and CPU time while 8 Server-Sent Events streams follow one queued job for 20 s.
    /// </summary>
    private static void Settings(HttpClient client, int pid, string work)
    {
        var modelPath = Path.Combine(work, "model.onnx");
        OnnxModel(modelPath, 1);
        var datasetPath = Path.Combine(work, "dataset.zip");
        IdxZip(datasetPath, Small([.. IdxHeader(10, 28, 28), .. new byte[10 * 784]]));
        Guid Upload(string path, string file)
        {
            using var form = new MultipartFormDataContent();
            form.Add(new ByteArrayContent(File.ReadAllBytes(file)), "file", Path.GetFileName(file));
            using var response = client.PostAsync(path, form).GetAwaiter().GetResult();
            var body = response.Content.ReadAsStringAsync().GetAwaiter().GetResult();
            return Guid.Parse(System.Text.RegularExpressions.Regex.Match(body, "\"id\":\"([^\"]+)\"").Groups[1].Value);
        }
        var model = Upload("/api/models", modelPath);
        var dataset = Upload("/api/datasets", datasetPath);
        string Job(int layers) => $$"""{"modelId": "{{model}}", "datasetId": "{{dataset}}", "settings": {"layers": [{{string.Join(",",
            Enumerable.Repeat("""{"pattern": "fc*", "cRate": 1}""", layers))}}]} }""";

        File.WriteAllText($"/proc/{pid}/clear_refs", "5");
        var before = Status(pid, "VmRSS");
        var watch = Stopwatch.StartNew();
        var big = Job(700_000);
        using (var refused = client.PostAsync("/api/jobs", new StringContent(big, Encoding.UTF8, "application/json")).GetAwaiter().GetResult())
        {
            var peak = Status(pid, "VmHWM");
            Console.WriteLine($"settings: {big.Length / 1e6:F1} MB body of 700000 layer entries -> {(int)refused.StatusCode} in " +
                $"{watch.Elapsed.TotalSeconds:F1} s; Api RSS before {before / 1024} MB, peak during {peak / 1024} MB (+{(peak - before) / 1024} MB); " +
                Summary(refused.Content.ReadAsStringAsync().GetAwaiter().GetResult()));
        }

        // The largest settings the Api takes (256 layer entries) on a job no worker runs, so it stays queued.
        using var submitted = client.PostAsync("/api/jobs", new StringContent(Job(256), Encoding.UTF8, "application/json")).GetAwaiter().GetResult();
        var job = System.Text.RegularExpressions.Regex.Match(submitted.Content.ReadAsStringAsync().GetAwaiter().GetResult(),
            "\"id\":\"([^\"]+)\"").Groups[1].Value;
        File.WriteAllText($"/proc/{pid}/clear_refs", "5");
        before = Status(pid, "VmRSS");
        var cpuBefore = CpuSeconds(pid);
        using var streaming = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var streams = Enumerable.Range(0, 8).Select(_ => Task.Run(async () =>
        {
            try
            {
                using var response = await client.GetAsync($"/api/jobs/{job}/events", HttpCompletionOption.ResponseHeadersRead, streaming.Token);
                await response.Content.CopyToAsync(Stream.Null, streaming.Token);
            }
            catch (OperationCanceledException)
            {
            }
        })).ToArray();
        Task.WaitAll(streams);
        Console.WriteLine($"events: 8 streams on job {job} ({(int)submitted.StatusCode}) for 20 s: Api CPU {CpuSeconds(pid) - cpuBefore:F1} s; " +
            $"RSS before {before / 1024} MB, peak {Status(pid, "VmHWM") / 1024} MB");
        client.PostAsync($"/api/jobs/{job}/cancel", null).GetAwaiter().GetResult().Dispose();
    }

    /// <summary>User and system CPU time of the process (/proc/PID/stat fields 14 and 15, in clock ticks of 1/100 s).</summary>
    private static double CpuSeconds(int pid)
    {
        var fields = File.ReadAllText($"/proc/{pid}/stat").Split(')')[1].Split(' ', StringSplitOptions.RemoveEmptyEntries);
        return (long.Parse(fields[11]) + long.Parse(fields[12])) / 100.0;
    }

    private static long Status(int pid, string field) => long.Parse(File.ReadLines($"/proc/{pid}/status")
        .First(l => l.StartsWith(field + ":", StringComparison.Ordinal))[(field.Length + 1)..].Trim().Split(' ')[0]);

    private static string Summary(string body)
    {
        var detail = System.Text.RegularExpressions.Regex.Match(body, "\"detail\":\"([^\"]*)\"");
        var text = detail.Success ? "detail: " + detail.Groups[1].Value : body;
        return text.Length > 160 ? text[..160] + "..." : text;
    }

    private sealed record Entry(Func<Stream> Open, CompressionLevel Level);

    private static Entry Deflated(Func<Stream> content) => new(content, CompressionLevel.Fastest);

    private static Func<Stream> Zeros(long count, byte[]? head = null) => () => new ZeroStream(head ?? [], count);

    /// <summary>The gzip of the content, written to a temporary file and read back (a gzip inside a zip entry).</summary>
    private static Func<Stream> Gzip(Func<Stream> content) => () =>
    {
        var path = Path.GetTempFileName();
        using (var file = File.Create(path))
        using (var gzip = new GZipStream(file, CompressionLevel.Fastest))
        using (var source = content())
        {
            source.CopyTo(gzip);
        }
        return new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.None, 4096, FileOptions.DeleteOnClose);
    };

    private static byte[] IdxHeader(params int[] shape)
    {
        var header = new byte[4 + 4 * shape.Length];
        header[2] = 0x08;
        header[3] = (byte)shape.Length;
        for (var i = 0; i < shape.Length; i++) BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(4 + 4 * i), shape[i]);
        return header;
    }

    private static byte[] NpyHeader(string shape)
    {
        var header = $"{{'descr': '|u1', 'fortran_order': False, 'shape': {shape}, }}".PadRight(117) + "\n";
        return [0x93, .. "NUMPY"u8, 1, 0, .. BitConverter.GetBytes((ushort)header.Length), .. Encoding.ASCII.GetBytes(header)];
    }

    private static void Add(ZipArchive zip, string name, Entry entry)
    {
        using var stream = zip.CreateEntry(name, entry.Level).Open();
        using var content = entry.Open();
        content.CopyTo(stream);
    }

    private static Entry Small(byte[] bytes) => new(() => new MemoryStream(bytes), CompressionLevel.Fastest);

    private static void IdxZip(string path, Entry trainImages, string suffix = "")
    {
        using var zip = new ZipArchive(File.Create(path), ZipArchiveMode.Create);
        Add(zip, "train-images-idx3-ubyte" + suffix, trainImages);
        Add(zip, "train-labels-idx1-ubyte", Small([.. IdxHeader(10), .. new byte[10]]));
        Add(zip, "t10k-images-idx3-ubyte", Small([.. IdxHeader(2, 28, 28), .. new byte[2 * 784]]));
        Add(zip, "t10k-labels-idx1-ubyte", Small([.. IdxHeader(2), .. new byte[2]]));
    }

    private static void NpzWithXTrain(string path, Func<Stream> xTrain)
    {
        static byte[] Npy(string descr, string shape, byte[] data)
        {
            var header = $"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}".PadRight(117) + "\n";
            return [0x93, .. "NUMPY"u8, 1, 0, .. BitConverter.GetBytes((ushort)header.Length), .. Encoding.ASCII.GetBytes(header), .. data];
        }
        using var zip = new ZipArchive(File.Create(path), ZipArchiveMode.Create);
        Add(zip, "x_train.npy", Deflated(xTrain));
        Add(zip, "y_train.npy", Small(Npy("<i8", "(10,)", new byte[80])));
        Add(zip, "x_test.npy", Small(Npy("|u1", "(2, 28, 28)", new byte[2 * 784])));
        Add(zip, "y_test.npy", Small(Npy("<i8", "(2,)", new byte[16])));
    }

    /// <summary>x [N, 784] -> Gemm(hidden) -> Relu -> Gemm(10): hidden chosen so the file is about <paramref name="megabytes"/> MB.</summary>
    private static void OnnxModel(string path, int megabytes)
    {
        var hidden = (int)(megabytes * 1_000_000L / 4 / (784 + 10));
        var random = new Random(1);
        TensorProto Init(string name, long[] dims)
        {
            var values = new float[dims.Aggregate(1L, (a, b) => a * b)];
            for (var i = 0; i < values.Length; i++) values[i] = (float)((random.NextDouble() * 2 - 1) * 0.05);
            return new TensorProto { Name = name, DataType = 1, Dims = { dims }, RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(values.AsSpan())) };
        }
        ValueInfoProto Value(string name, params long[] dims)
        {
            var shape = new TensorShapeProto();
            foreach (var d in dims)
            {
                shape.Dim.Add(d < 0 ? new TensorShapeProto.Types.Dimension { DimParam = "N" } : new TensorShapeProto.Types.Dimension { DimValue = d });
            }
            return new ValueInfoProto { Name = name, Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = 1, Shape = shape } } };
        }
        NodeProto Gemm(string name, string[] inputs, string output) => new()
        {
            OpType = "Gemm", Name = name, Input = { inputs }, Output = { output },
            Attribute = { new AttributeProto { Name = "transB", I = 1, Type = AttributeProto.Types.AttributeType.Int } },
        };
        var model = new ModelProto
        {
            IrVersion = 7,
            OpsetImport = { new OperatorSetIdProto { Domain = "", Version = 13 } },
            Graph = new GraphProto
            {
                Name = "big-mlp",
                Input = { Value("x", -1, 784) },
                Output = { Value("logits", -1, 10) },
                Initializer = { Init("fc1.weight", [hidden, 784]), Init("fc1.bias", [hidden]), Init("fc2.weight", [10, hidden]), Init("fc2.bias", [10]) },
                Node = { Gemm("fc1", ["x", "fc1.weight", "fc1.bias"], "h"), new NodeProto { OpType = "Relu", Input = { "h" }, Output = { "a" } },
                    Gemm("fc2", ["a", "fc2.weight", "fc2.bias"], "logits") },
            },
        };
        using var file = File.Create(path);
        model.WriteTo(file);
    }
}
