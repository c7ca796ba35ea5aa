using SurgeryService.Domain.Onnx.Proto;
using SurgeryService.Domain.Surgery;
using SurgeryService.Domain.Torch;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace SurgeryService.Domain.Onnx;

// The operators, following the ONNX operator specification; where an operator changed between opsets 7 and 20 the
// branch on _opset says which version's semantics apply.
public sealed partial class OnnxModule
{
    private Tensor Execute(NodeProto node, OnnxAttributes a, Tensor?[] x, long batch)
    {
        Tensor In(int i) => i < x.Length && x[i] is { } t ? t
            : throw new SurgeryException("Bad ONNX graph", $"node {OnnxModel.NodeLabel(node)} lacks its input {i}", ErrorKind.BadInput);
        Tensor? Opt(int i) => i < x.Length ? x[i] : null;

        switch (node.OpType)
        {
            case "Conv": return Conv(In(0), In(1), Opt(2), a);
            case "ConvTranspose": return ConvTranspose(In(0), In(1), Opt(2), a);
            case "Gemm": return Gemm(In(0), In(1), Opt(2), a);
            case "MatMul": return MatMul(In(0), In(1));
            case "Add": return In(0).Plus(In(1));
            case "Sub": return In(0) - In(1);
            case "Mul": return In(0) * In(1);
            case "Div":
                return In(0).is_floating_point() ? In(0) / In(1) : In(0).div(In(1), RoundingMode.trunc);
            case "Relu": return F.relu(In(0));
            // relu(x) - alpha * relu(-x): TorchSharp's leaky_relu leaves its slope to a Scalar's finalizer (Torch/Scalars.cs).
            case "LeakyRelu": return F.relu(In(0)) - F.relu(In(0).neg()).Times(a.Float("alpha", 0.01f));
            case "Sigmoid": return torch.sigmoid(In(0));
            case "Tanh": return torch.tanh(In(0));
            case "Softmax": return SoftmaxLike(In(0), a, log: false);
            case "LogSoftmax": return SoftmaxLike(In(0), a, log: true);
            case "MaxPool": return Pool(In(0), a, max: true);
            case "AveragePool": return Pool(In(0), a, max: false);
            case "GlobalAveragePool":
                return In(0).mean(Enumerable.Range(2, (int)In(0).dim() - 2).Select(d => (long)d).ToArray(), keepdim: true);
            case "BatchNormalization":
                return F.batch_norm(In(0), Statistic(In(3)), Statistic(In(4)), In(1), In(2), training, 1 - a.Float("momentum", 0.9f),
                    a.Float("epsilon", 1e-5f));
            case "Dropout":
            {
                var ratio = _opset >= 12 ? (Opt(1) is { } r ? r.cpu().item<float>() : 0.5f) : a.Float("ratio", 0.5f);
                return training ? TrainingRandom.Dropout(In(0), ratio) : In(0).alias();
            }
            case "Flatten":
            {
                var input = In(0);
                var axis = Axis(a.Int("axis", 1), input.dim() + 1);
                var shape = input.shape;
                var outer = shape.Take((int)axis).Aggregate(1L, (p, d) => p * d);
                return input.reshape(outer, shape.Skip((int)axis).Aggregate(1L, (p, d) => p * d));
            }
            case "Reshape": return Reshape(In(0), Longs(In(1)), a.Int("allowzero", 0) != 0, batch);
            case "Transpose":
            {
                var input = In(0);
                var perm = a.Ints("perm") ?? Enumerable.Range(0, (int)input.dim()).Reverse().Select(d => (long)d).ToArray();
                return input.permute(perm);
            }
            case "Squeeze":
            {
                var input = In(0);
                var axes = _opset >= 13 ? (Opt(1) is { } t ? Longs(t) : null) : a.Ints("axes");
                if (axes is null)
                {
                    return input.reshape(input.shape.Where(d => d != 1).ToArray());
                }
                var drop = axes.Select(ax => Axis(ax, input.dim())).ToHashSet();
                return input.reshape(input.shape.Where((_, i) => !drop.Contains(i)).ToArray());
            }
            case "Unsqueeze":
            {
                var input = In(0);
                var axes = (_opset >= 13 ? Longs(In(1)) : a.Ints("axes")) ?? [];
                var rank = input.dim() + axes.Length;
                var insert = axes.Select(ax => Axis(ax, rank)).ToHashSet();
                var shape = new List<long>();
                var source = 0;
                for (var i = 0; i < rank; i++) shape.Add(insert.Contains(i) ? 1 : input.shape[source++]);
                return input.reshape(shape.ToArray());
            }
            case "Concat":
            {
                var parts = x.Where(t => t is not null).Select(t => t!).ToArray();
                return torch.cat(parts, Axis(a.Int("axis", 0), parts[0].dim()));
            }
            case "Shape":
            {
                var shape = In(0).shape;
                long start = a.Int("start", 0), end = a.Int("end", shape.Length);
                start = Math.Clamp(start < 0 ? start + shape.Length : start, 0, shape.Length);
                end = Math.Clamp(end < 0 ? end + shape.Length : end, 0, shape.Length);
                return torch.tensor(shape[(int)start..(int)Math.Max(start, end)], ScalarType.Int64, In(0).device);
            }
            case "Gather": return Gather(In(0), In(1), a.Int("axis", 0));
            case "Slice":
                return _opset >= 10
                    ? Slice(In(0), Longs(In(1)), Longs(In(2)), Opt(3) is { } ax ? Longs(ax) : null, Opt(4) is { } st ? Longs(st) : null)
                    : Slice(In(0), a.Ints("starts")!, a.Ints("ends")!, a.Ints("axes"), null);
            case "ConstantOfShape":
            {
                var value = a.Tensor("value");
                var shape = Longs(In(0));
                if (value is null) return torch.zeros(shape, ScalarType.Float32, In(0).device);
                using var one = OnnxTensors.ToTorch(value, Model.Directory);
                return one.reshape(1).to(In(0).device).expand(shape.Length == 0 ? [] : shape).contiguous().reshape(shape);
            }
            case "Identity": return In(0).alias();
            case "Cast":
            {
                var to = (int)a.Int("to", (int)OnnxDataType.Float);
                var type = OnnxDataTypes.ToScalarType(to) ?? throw new SurgeryException("Unsupported ONNX operator usage",
                    $"node {OnnxModel.NodeLabel(node)} casts to {OnnxDataTypes.Describe(to)}, which the service cannot hold", ErrorKind.Unsupported);
                return In(0).to_type(type);
            }
            case "Clip":
            {
                double? min, max;
                if (_opset >= 11)
                {
                    min = Opt(1) is { } lo ? lo.cpu().to_type(ScalarType.Float64).item<double>() : null;
                    max = Opt(2) is { } hi ? hi.cpu().to_type(ScalarType.Float64).item<double>() : null;
                }
                else
                {
                    min = a.Has("min") ? a.Float("min", 0) : null;
                    max = a.Has("max") ? a.Float("max", 0) : null;
                }
                var input = In(0);
                return min is null && max is null ? input.alias()
                    : input.clamp(min is null ? null : (Scalar)min.Value, max is null ? null : (Scalar)max.Value);
            }
            case "Pad": return PadOp(node, a, x);
            default:
                return ExecuteMath(node, a, x)
                    ?? throw new SurgeryException("Unsupported ONNX operators", $"the service cannot run {node.OpType}", ErrorKind.Unsupported);
        }
    }

    /// <summary>The values of a small integer tensor (shapes, axes, indices) on the CPU.</summary>
    private static long[] Longs(Tensor t)
    {
        using var cpu = t.cpu().to_type(ScalarType.Int64);
        return cpu.data<long>().ToArray();
    }

    private static long Axis(long axis, long rank) => axis < 0 ? axis + rank : axis;

    private static long[] Repeat(long value, int count) => Enumerable.Repeat(value, count).ToArray();

    /// <summary>Begin and end padding per spatial dimension, from explicit pads or auto_pad (ONNX Conv/Pool "auto_pad").</summary>
    private static (long[] Begin, long[] End) SpatialPads(OnnxAttributes a, long[] inputSpatial, long[] kernel, long[] strides, long[] dilations)
    {
        var n = kernel.Length;
        var autoPad = a.String("auto_pad", "NOTSET");
        var begin = new long[n];
        var end = new long[n];
        if (autoPad is "SAME_UPPER" or "SAME_LOWER")
        {
            for (var i = 0; i < n; i++)
            {
                var output = (inputSpatial[i] + strides[i] - 1) / strides[i];
                var total = Math.Max(0, (output - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - inputSpatial[i]);
                begin[i] = autoPad == "SAME_UPPER" ? total / 2 : total - total / 2;
                end[i] = total - begin[i];
            }
        }
        else if (autoPad != "VALID" && a.Ints("pads") is { } pads)
        {
            for (var i = 0; i < n; i++)
            {
                begin[i] = pads[i];
                end[i] = pads[i + n];
            }
        }
        return (begin, end);
    }

    /// <summary>F.pad's argument (last dimension first) for begin/end pads of the trailing spatial dimensions.</summary>
    private static long[] TorchPad(long[] begin, long[] end)
    {
        var pad = new long[begin.Length * 2];
        for (var i = 0; i < begin.Length; i++)
        {
            pad[2 * i] = begin[begin.Length - 1 - i];
            pad[2 * i + 1] = end[begin.Length - 1 - i];
        }
        return pad;
    }

    /// <summary>
    /// A BatchNormalization running statistic as the batch norm may use it. Exporters store equal initializers once, so a
    /// statistic can be an Identity of a trained weight (a BatchNorm that never trained has running_var = weight = 1):
    /// that one is a copy, neither differentiated nor updated in place, and the model computes what its ONNX graph says
    /// (the statistic is whatever the weight is now). A statistic of its own is the buffer, updated in training.
    /// </summary>
    private static Tensor Statistic(Tensor statistic) => statistic.requires_grad ? statistic.detach().clone() : statistic;

    private static Tensor Conv(Tensor input, Tensor weight, Tensor? bias, OnnxAttributes a)
    {
        var n = (int)weight.dim() - 2;
        var kernel = weight.shape[2..];
        var strides = a.Ints("strides") ?? Repeat(1, n);
        var dilations = a.Ints("dilations") ?? Repeat(1, n);
        var groups = a.Int("group", 1);
        var (begin, end) = SpatialPads(a, input.shape[2..], kernel, strides, dilations);
        var padding = begin;
        if (!begin.SequenceEqual(end))
        {
            input = F.pad(input, TorchPad(begin, end));
            padding = Repeat(0, n);
        }
        var repeated = groups == 1 && RepeatsAlong(weight, 0);
        var w = repeated ? weight.narrow(0, 0, 1) : weight;
        var b = repeated ? null : bias;
        var y = n switch
        {
            1 => F.conv1d(input, w, b, strides[0], padding[0], dilations[0], groups),
            2 => F.conv2d(input, w, b, strides, padding, dilations, groups),
            3 => F.conv3d(input, w, b, strides, padding, dilations, groups),
            _ => throw new SurgeryException("Unsupported ONNX operator usage", $"Conv over {n} spatial dimensions is not supported", ErrorKind.Unsupported),
        };
        return repeated ? Broadcast(y, 1, weight.shape[0], bias?.reshape(new long[] { 1, -1 }.Concat(Repeat(1, n)).ToArray())) : y;
    }

    /// <summary>
    /// Whether the weight's values repeat along <paramref name="dim"/> (stride 0: the stand-ins of
    /// <see cref="CreateForMeasuring"/>). Every output channel along that dimension is then the same, so the weight
    /// operators compute one and broadcast it (<see cref="Broadcast"/>): the same values, without the contiguous copy
    /// of the whole weight that the matrix and convolution kernels would make.
    /// </summary>
    private static bool RepeatsAlong(Tensor weight, int dim) => weight.dim() > dim && weight.shape[dim] > 1 && weight.stride(dim) == 0;

    /// <summary>The one computed channel <paramref name="y"/> repeated <paramref name="size"/> times along <paramref name="dim"/>, plus the bias.</summary>
    private static Tensor Broadcast(Tensor y, int dim, long size, Tensor? bias)
    {
        var shape = y.shape;
        shape[dim < 0 ? shape.Length + dim : dim] = size;
        var repeated = y.expand(shape);
        return bias is null ? repeated : repeated.Plus(bias);
    }

    private static Tensor MatMul(Tensor a, Tensor b)
    {
        if (b.dim() >= 2 && RepeatsAlong(b, (int)b.dim() - 1))
        {
            return Broadcast(torch.matmul(a, b.narrow(-1, 0, 1)), -1, b.shape[^1], null);
        }
        if (a.dim() >= 2 && RepeatsAlong(a, (int)a.dim() - 2))
        {
            return Broadcast(torch.matmul(a.narrow(-2, 0, 1), b), -2, a.shape[^2], null);
        }
        return torch.matmul(a, b);
    }

    private static Tensor ConvTranspose(Tensor input, Tensor weight, Tensor? bias, OnnxAttributes a)
    {
        var n = (int)weight.dim() - 2;
        var kernel = weight.shape[2..];
        var strides = a.Ints("strides") ?? Repeat(1, n);
        var dilations = a.Ints("dilations") ?? Repeat(1, n);
        var outputPadding = a.Ints("output_padding") ?? Repeat(0, n);
        var groups = a.Int("group", 1);
        var spatial = input.shape[2..];
        var full = Enumerable.Range(0, n).Select(i => strides[i] * (spatial[i] - 1) + outputPadding[i] + (kernel[i] - 1) * dilations[i] + 1).ToArray();
        var begin = new long[n];
        var end = new long[n];
        var autoPad = a.String("auto_pad", "NOTSET");
        var outputShape = a.Ints("output_shape");
        if (outputShape is not null || autoPad is "SAME_UPPER" or "SAME_LOWER")
        {
            var target = outputShape is not null ? outputShape[^n..] : spatial.Select((s, i) => s * strides[i]).ToArray();
            for (var i = 0; i < n; i++)
            {
                var total = full[i] - target[i];
                begin[i] = autoPad == "SAME_UPPER" ? total / 2 : total - total / 2;
                end[i] = total - begin[i];
            }
        }
        else if (autoPad != "VALID" && a.Ints("pads") is { } pads)
        {
            begin = pads[..n];
            end = pads[n..];
        }
        var repeated = groups == 1 && RepeatsAlong(weight, 1);
        var w = repeated ? weight.narrow(1, 0, 1) : weight;
        var y = n switch
        {
            1 => F.conv_transpose1d(input, w, null, strides[0], 0, 0, dilations[0], groups),
            2 => F.conv_transpose2d(input, w, null, strides, Repeat(0, n), Repeat(0, n), dilations, groups),
            3 => F.conv_transpose3d(input, w, null, strides, Repeat(0, n), Repeat(0, n), dilations, groups),
            _ => throw new SurgeryException("Unsupported ONNX operator usage", $"ConvTranspose over {n} spatial dimensions is not supported", ErrorKind.Unsupported),
        };
        if (repeated) y = Broadcast(y, 1, weight.shape[1], null);
        // output_padding adds rows at the end that no input reaches; pads crop rows at both ends.
        var grow = Enumerable.Range(0, n).Select(i => Math.Max(0, outputPadding[i])).ToArray();
        if (grow.Any(g => g > 0)) y = F.pad(y, TorchPad(Repeat(0, n), grow));
        for (var i = 0; i < n; i++)
        {
            var length = full[i] - begin[i] - end[i];
            if (begin[i] != 0 || length != y.shape[2 + i]) y = y.narrow(2 + i, begin[i], length);
        }
        if (bias is not null)
        {
            y = y.Plus(bias.reshape(new long[] { 1, -1 }.Concat(Repeat(1, n)).ToArray()));
        }
        return y;
    }

    private static Tensor Gemm(Tensor a, Tensor b, Tensor? c, OnnxAttributes attributes)
    {
        if (attributes.Int("transA", 0) == 0 && attributes.Int("transB", 0) != 0 && attributes.Float("alpha", 1f) == 1f
            && attributes.Float("beta", 1f) == 1f && (c is null || c.dim() == 1))
        {
            // the common exported fully connected layer, fused
            return RepeatsAlong(b, 0) ? Broadcast(F.linear(a, b.narrow(0, 0, 1)), -1, b.shape[0], c) : F.linear(a, b, c);
        }
        if (attributes.Int("transA", 0) != 0) a = a.t();
        if (attributes.Int("transB", 0) != 0) b = b.t();
        var alpha = attributes.Float("alpha", 1f);
        var beta = attributes.Float("beta", 1f);
        var y = MatMul(a, b);
        if (alpha != 1f) y = y.Times(alpha);
        if (c is not null && beta != 0f) y = y.Plus(beta == 1f ? c : c.Times(beta));
        return y;
    }

    private Tensor SoftmaxLike(Tensor input, OnnxAttributes a, bool log)
    {
        if (_opset >= 13)
        {
            var dim = Axis(a.Int("axis", -1), input.dim());
            return log ? F.log_softmax(input, dim) : F.softmax(input, dim);
        }
        // Before opset 13 the input is seen as a 2-D matrix [prod(dims before axis), prod(dims from axis)].
        var axis = (int)Axis(a.Int("axis", 1), input.dim());
        var shape = input.shape;
        var flat = input.reshape(shape.Take(axis).Aggregate(1L, (p, d) => p * d), -1);
        var result = log ? F.log_softmax(flat, 1) : F.softmax(flat, 1);
        return result.reshape(shape);
    }

    private static Tensor Pool(Tensor input, OnnxAttributes a, bool max)
    {
        var kernel = a.Ints("kernel_shape")!;
        var n = kernel.Length;
        var strides = a.Ints("strides") ?? Repeat(1, n);
        var dilations = a.Ints("dilations") ?? Repeat(1, n);
        var ceil = a.Int("ceil_mode", 0) != 0;
        var (begin, end) = SpatialPads(a, input.shape[2..], kernel, strides, dilations);
        var symmetric = begin.SequenceEqual(end) && begin.Select((p, i) => p <= kernel[i] / 2).All(ok => ok);
        var padding = symmetric ? begin : Repeat(0, n);
        var spatial = input.shape[2..];
        var result = PoolPadded(input, a, max, kernel, strides, dilations, ceil, begin, end, symmetric, padding);
        if (ceil)
        {
            // A ceil-mode window that would start in the end padding is dropped (as ONNX Runtime and PyTorch do); with
            // the padding applied beforehand TorchSharp cannot tell padding from input, so trim here.
            for (var i = 0; i < n; i++)
            {
                var extent = spatial[i] + begin[i] + end[i] - ((kernel[i] - 1) * dilations[i] + 1);
                var size = (extent + strides[i] - 1) / strides[i] + 1;
                if ((size - 1) * strides[i] >= spatial[i] + begin[i]) size--;
                if (result.shape[2 + i] > size) result = result.narrow(2 + i, 0, size);
            }
        }
        return result;
    }

    private static Tensor PoolPadded(Tensor input, OnnxAttributes a, bool max, long[] kernel, long[] strides, long[] dilations,
        bool ceil, long[] begin, long[] end, bool symmetric, long[] padding)
    {
        var n = kernel.Length;
        if (max)
        {
            if (!symmetric) input = F.pad(input, TorchPad(begin, end), value: double.NegativeInfinity);
            return n switch
            {
                1 => F.max_pool1d(input, kernel[0], strides[0], padding[0], dilations[0], ceil),
                2 => F.max_pool2d(input, kernel, strides, padding, dilations, ceil),
                3 => F.max_pool3d(input, kernel, strides, padding, dilations, ceil),
                _ => throw new SurgeryException("Unsupported ONNX operator usage", $"MaxPool over {n} spatial dimensions is not supported", ErrorKind.Unsupported),
            };
        }

        var countPad = a.Int("count_include_pad", 0) != 0;
        Tensor Average(Tensor t, long[] pad, bool includePad) => n switch
        {
            1 => F.avg_pool1d(t, kernel[0], strides[0], pad[0], ceil, includePad),
            2 => F.avg_pool2d(t, kernel, strides, pad, ceil, includePad),
            3 => F.avg_pool3d(t, kernel, strides, pad, ceil, includePad),
            _ => throw new SurgeryException("Unsupported ONNX operator usage", $"AveragePool over {n} spatial dimensions is not supported", ErrorKind.Unsupported),
        };
        if (symmetric) return Average(input, padding, countPad);
        var padded = F.pad(input, TorchPad(begin, end));
        if (countPad) return Average(padded, padding, true);
        // Asymmetric padding that must not count: average of the zero-padded input over the average of a mask of ones.
        var ones = torch.ones(new long[] { 1, 1 }.Concat(input.shape[2..]).ToArray(), input.dtype, input.device);
        var mask = F.pad(ones, TorchPad(begin, end));
        return Average(padded, padding, true) / Average(mask, padding, true);
    }

    private Tensor Reshape(Tensor input, long[] target, bool allowZero, long batch)
    {
        var shape = (long[])target.Clone();
        for (var i = 0; i < shape.Length; i++)
        {
            if (shape[i] == 0 && !allowZero && i < input.dim()) shape[i] = input.shape[i];
        }
        var known = shape.Where(d => d != -1).Aggregate(1L, (p, d) => p * d);
        var fits = shape.Contains(-1) ? known != 0 && input.numel() % known == 0 : known == input.numel();
        // An export with a fixed batch dimension bakes that number into constant target shapes; keep the actual batch.
        if (!fits && _declaredBatch > 0 && shape.Length > 0 && shape[0] == _declaredBatch && batch != _declaredBatch)
        {
            shape[0] = batch;
        }
        return input.reshape(shape);
    }

    private static Tensor Gather(Tensor data, Tensor indices, long axisAttribute)
    {
        var axis = (int)Axis(axisAttribute, data.dim());
        var index = indices.to_type(ScalarType.Int64);
        var size = data.shape[axis];
        index = torch.where(index.Below(0), index.Plus(size), index);
        var picked = data.index_select(axis, index.flatten());
        var shape = data.shape[..axis].Concat(indices.shape).Concat(data.shape[(axis + 1)..]).ToArray();
        return picked.reshape(shape);
    }

    private static Tensor Slice(Tensor input, long[] starts, long[] ends, long[]? axes, long[]? steps)
    {
        axes ??= Enumerable.Range(0, starts.Length).Select(i => (long)i).ToArray();
        var result = input;
        for (var i = 0; i < starts.Length; i++)
        {
            var axis = Axis(axes[i], input.dim());
            var dim = result.shape[axis];
            var step = steps?[i] ?? 1;
            long start = starts[i], end = ends[i];
            if (start < 0) start += dim;
            if (end < 0) end += dim;
            if (step > 0)
            {
                start = Math.Clamp(start, 0, dim);
                end = Math.Clamp(end, 0, dim);
            }
            else
            {
                start = Math.Clamp(start, 0, dim - 1);
                end = Math.Clamp(end, -1, dim - 1);
            }
            if (step == 1)
            {
                result = result.narrow(axis, start, Math.Max(0, end - start));
                continue;
            }
            var picks = new List<long>();
            for (var k = start; step > 0 ? k < end : k > end; k += step) picks.Add(k);
            result = result.index_select(axis, torch.tensor(picks.ToArray(), ScalarType.Int64, input.device));
        }
        return result;
    }

    private Tensor PadOp(NodeProto node, OnnxAttributes a, Tensor?[] x)
    {
        var input = x[0]!;
        var rank = (int)input.dim();
        var mode = a.String("mode", "constant");
        long[] pads;
        double value;
        long[] axes;
        if (_opset >= 11)
        {
            pads = Longs(x[1]!);
            value = x.Length > 2 && x[2] is { } v ? v.cpu().to_type(ScalarType.Float64).item<double>() : 0;
            axes = x.Length > 3 && x[3] is { } ax ? Longs(ax).Select(d => Axis(d, rank)).ToArray() : Enumerable.Range(0, rank).Select(d => (long)d).ToArray();
        }
        else
        {
            pads = a.Ints("pads") ?? [];
            value = a.Float("value", 0);
            axes = Enumerable.Range(0, rank).Select(d => (long)d).ToArray();
        }
        var begin = new long[rank];
        var end = new long[rank];
        for (var i = 0; i < axes.Length; i++)
        {
            begin[axes[i]] = pads[i];
            end[axes[i]] = pads[i + axes.Length];
        }
        for (var d = 0; d < rank; d++)
        {
            if (begin[d] < 0 || end[d] < 0)
            {
                var from = Math.Max(0, -begin[d]);
                input = input.narrow(d, from, input.shape[d] - from - Math.Max(0, -end[d]));
            }
        }
        var first = Array.FindIndex(Enumerable.Range(0, rank).ToArray(), d => begin[d] > 0 || end[d] > 0);
        if (first < 0) return input.alias();
        var torchPad = TorchPad(begin[first..].Select(p => Math.Max(0, p)).ToArray(), end[first..].Select(p => Math.Max(0, p)).ToArray());
        var paddingMode = mode switch
        {
            "reflect" => PaddingModes.Reflect,
            "edge" => PaddingModes.Replicate,
            _ => PaddingModes.Constant,
        };
        if (paddingMode == PaddingModes.Constant) return F.pad(input, torchPad, paddingMode, value);
        // TorchSharp pads reflect/edge over the trailing dimensions of a batched input: add leading axes as needed.
        var padded = rank - first;
        var lead = input.shape[..first].Aggregate(1L, (p, d) => p * d);
        var view = input.reshape(new[] { 1L, lead }.Concat(input.shape[first..]).ToArray());
        if (padded > 3)
        {
            throw new SurgeryException("Unsupported ONNX operator usage", $"node {OnnxModel.NodeLabel(node)} pads more than 3 dimensions in {mode} mode", ErrorKind.Unsupported);
        }
        var result = F.pad(view, torchPad, paddingMode);
        return result.reshape(input.shape[..first].Concat(result.shape[2..]).ToArray());
    }

    private Tensor ConstantValue(OnnxAttributes a)
    {
        if (a.Tensor("value") is { } t) return OnnxTensors.ToTorch(t, Model.Directory);
        if (a.Has("value_float")) return torch.tensor(a.Float("value_float", 0));
        if (a.Floats("value_floats") is { } fs) return torch.tensor(fs);
        if (a.Has("value_int")) return torch.tensor(a.Int("value_int", 0));
        return torch.tensor(a.Ints("value_ints")!);
    }
}
