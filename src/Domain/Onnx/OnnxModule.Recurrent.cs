using SurgeryService.Domain.Onnx.Proto;
using SurgeryService.Domain.Torch;
using TorchSharp;
using static TorchSharp.torch;

namespace SurgeryService.Domain.Onnx;

// LSTM, GRU and RNN as the ONNX operator specification writes them (gate orders iofc, zrh), stepped in TorchSharp so
// that every weight trains. The input projection of all steps is one matrix product; the recurrence is a loop.
// OnnxModel refuses what is not implemented here: sequence_lens, non-default activations, LSTM's input_forget.
public sealed partial class OnnxModule
{
    /// <summary>Outputs Y, Y_h (and Y_c for LSTM) of a recurrent node.</summary>
    private static Tensor[] Recurrent(NodeProto node, OnnxAttributes a, Tensor?[] x)
    {
        var op = node.OpType;
        var gates = op switch { "LSTM" => 4, "GRU" => 3, _ => 1 };
        var hidden = a.Int("hidden_size", 0);
        var batchFirst = a.Int("layout", 0) != 0;
        var input = x[0]!;
        if (batchFirst) input = input.transpose(0, 1); // [seq, batch, features] from here on
        var (w, r) = (x[1]!, x[2]!);
        if (hidden == 0) hidden = r.shape[^1];
        var directions = a.String("direction", "forward") switch { "bidirectional" => new[] { false, true }, "reverse" => [true], _ => [false] };
        var b = x.Length > 3 ? x[3] : null;
        var initialH = x.Length > 5 ? x[5] : null;
        var initialC = op == "LSTM" && x.Length > 6 ? x[6] : null;
        var peepholes = op == "LSTM" && x.Length > 7 ? x[7] : null;
        if (initialH is not null && batchFirst) initialH = initialH.transpose(0, 1);
        if (initialC is not null && batchFirst) initialC = initialC.transpose(0, 1);
        var clip = a.Has("clip") ? a.Float("clip", 0) : (float?)null;
        var linearBeforeReset = a.Int("linear_before_reset", 0) != 0;

        var (steps, batch) = (input.shape[0], input.shape[1]);
        var ys = new List<Tensor>();
        var hs = new List<Tensor>();
        var cs = new List<Tensor>();
        for (var d = 0; d < directions.Length; d++)
        {
            var wd = w[d];
            var rd = r[d];
            var wb = b?[d].narrow(0, 0, gates * hidden);
            var rb = b?[d].narrow(0, gates * hidden, gates * hidden);
            // The input's contribution at every step at once: [seq, batch, gates * hidden].
            var projected = torch.matmul(input, wd.t());
            if (wb is not null) projected = projected.Plus(wb);
            if (op != "GRU" && rb is not null) projected = projected.Plus(rb); // GRU adds Rb inside the reset gate
            var h = initialH?[d] ?? torch.zeros([batch, hidden], input.dtype, input.device);
            var c = initialC?[d] ?? torch.zeros([batch, hidden], input.dtype, input.device);
            var outputs = new Tensor[steps];
            for (var s = 0; s < steps; s++)
            {
                var t = directions[d] ? steps - 1 - s : s;
                var xt = projected[t];
                switch (op)
                {
                    case "LSTM":
                    {
                        var all = xt.Plus(torch.matmul(h, rd.t())).chunk(4, 1); // i, o, f, c
                        Tensor i = all[0], o = all[1], f = all[2];
                        var p = peepholes?[d].chunk(3, 0); // i, o, f
                        if (p is not null)
                        {
                            i = i.Plus(p[0] * c);
                            f = f.Plus(p[2] * c);
                        }
                        c = (torch.sigmoid(Clip(f, clip)) * c).Plus(torch.sigmoid(Clip(i, clip)) * torch.tanh(Clip(all[3], clip)));
                        if (p is not null) o = o.Plus(p[1] * c);
                        o = Clip(o, clip);
                        h = torch.sigmoid(o) * torch.tanh(c);
                        break;
                    }
                    case "GRU":
                    {
                        var xs = xt.chunk(3, 1); // z, r, h
                        var rz = rd.chunk(3, 0);
                        var rbs = rb?.chunk(3, 0);
                        var recurrentZr = torch.matmul(h, torch.cat([rz[0], rz[1]], 0).t());
                        if (rbs is not null) recurrentZr = recurrentZr.Plus(torch.cat([rbs[0], rbs[1]], 0));
                        var zr = recurrentZr.chunk(2, 1);
                        var z = torch.sigmoid(Clip(xs[0].Plus(zr[0]), clip));
                        var reset = torch.sigmoid(Clip(xs[1].Plus(zr[1]), clip));
                        Tensor candidate;
                        if (linearBeforeReset)
                        {
                            var recurrent = torch.matmul(h, rz[2].t());
                            if (rbs is not null) recurrent = recurrent.Plus(rbs[2]);
                            candidate = xs[2].Plus(reset * recurrent);
                        }
                        else
                        {
                            candidate = xs[2].Plus(torch.matmul(reset * h, rz[2].t()));
                            if (rbs is not null) candidate = candidate.Plus(rbs[2]);
                        }
                        var hh = torch.tanh(Clip(candidate, clip));
                        h = (z.SubtractedFrom(1) * hh).Plus(z * h);
                        break;
                    }
                    default:
                        h = torch.tanh(Clip(xt.Plus(torch.matmul(h, rd.t())), clip));
                        break;
                }
                outputs[t] = h;
            }
            ys.Add(torch.stack(outputs, 0)); // [seq, batch, hidden]
            hs.Add(h);
            cs.Add(c);
        }
        var y = torch.stack(ys, 1);     // [seq, directions, batch, hidden]
        var yh = torch.stack(hs, 0);    // [directions, batch, hidden]
        var yc = torch.stack(cs, 0);
        if (batchFirst)
        {
            y = y.permute(2, 0, 1, 3);  // [batch, seq, directions, hidden]
            yh = yh.transpose(0, 1);
            yc = yc.transpose(0, 1);
        }
        return op == "LSTM" ? [y, yh, yc] : [y, yh];
    }

    private static Tensor Clip(Tensor t, float? clip) => clip is { } c ? t.Clamped(-(double)c, c) : t;
}
