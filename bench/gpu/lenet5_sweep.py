#!/usr/bin/env python3
"""LeNet-5 DNS settings sweep on one GPU: a research aid, not part of the product or of CI.

The service's engine is C# (src/Domain/Surgery); this script re-implements the same rules (shared/dns-spec.md, and
the engine's Caffe SGD, step learning rate and per-layer draws) in PyTorch so that many (settings, seed) runs can be
tried at once on a GPU: N copies of LeNet-5 train side by side as one batched model (grouped convolutions, batched
matrix products), each with its own settings, data order and draws. Settings it finds must then be confirmed by the
real engine (`bench reproduce lenet-5 --settings ...`): the README reports only those runs as results.

Inputs: a folder with MNIST's four IDX files (gzipped) and the dense reference that bench caches
(.data/bench/lenet-5-dense-15000.bin, TorchSharp's Module.save format). Output: JSON lines, one per evaluation.
"""
import argparse
import gzip
import json
import math
import struct
import sys
import time

LAYERS = ["conv1", "conv2", "fc1", "fc2"]

# The bench recipe (bench/Reproduce.cs); each sweep entry overrides some of it.
RECIPE = dict(c=(2.2, 3.8, 6.2, 3.2), lr=0.01, step=10000, lr_gamma=0.3, gamma=1e-4, power=1.0,
              iter_stop=(10000, 10000, 10000, 10000), wd=5e-4, momentum=0.9)

# Each sweep in priority order: when time runs short the last entries are dropped. Sweep 2 builds on sweep 1's best
# setting at >= 108x (conv1 1.0) and on its lowest error (lr 0.02, at 84x), with other seeds.
SWEEP_1 = [
    ("recipe", {}),
    ("fc1 6.0", dict(c=(2.2, 3.8, 6.0, 3.2))),
    ("conv1 1.0", dict(c=(1.0, 3.8, 6.2, 3.2))),
    ("gamma 5e-5", dict(gamma=5e-5)),
    ("wd 0", dict(wd=0.0)),
    ("iter_stop 6000", dict(iter_stop=(6000, 6000, 6000, 6000))),
    ("step 8000", dict(step=8000)),
    ("lr x0.1 steps", dict(lr_gamma=0.1)),
    ("lr 0.005, c lower", dict(lr=0.005, c=(2.2, 3.4, 5.6, 3.2))),
    ("lr 0.02", dict(lr=0.02)),
    ("gamma 3e-4", dict(gamma=3e-4)),
    ("conv2 3.5, fc1 6.4", dict(c=(2.2, 3.5, 6.4, 3.2))),
    ("fc2 2.6", dict(c=(2.2, 3.8, 6.2, 2.6))),
    ("conv1 1.5, conv2 3.6, fc1 6.3", dict(c=(1.5, 3.6, 6.3, 3.2))),
    ("wd 2e-4", dict(wd=2e-4)),
    ("fc iter_stop 8000", dict(iter_stop=(10000, 10000, 8000, 8000))),
    ("power 0.5", dict(power=0.5)),
    ("fc1 5.8, conv2 4.0", dict(c=(2.2, 4.0, 5.8, 3.2))),
    ("conv1 1.0, conv2 3.9, fc1 6.0", dict(c=(1.0, 3.9, 6.0, 3.2))),
    ("lr 0.02, fc1 6.6", dict(lr=0.02, c=(2.2, 3.8, 6.6, 3.2))),
]

SWEEP_2 = [
    ("conv1 1.0", dict(c=(1.0, 3.8, 6.2, 3.2))),
    ("lr 0.02, c 1.0/4.2/6.8/3.2", dict(lr=0.02, c=(1.0, 4.2, 6.8, 3.2))),
    ("lr 0.02, c 1.0/4.5/7.2/3.5", dict(lr=0.02, c=(1.0, 4.5, 7.2, 3.5))),
    ("lr 0.02, c 2.2/4.2/6.8/3.2", dict(lr=0.02, c=(2.2, 4.2, 6.8, 3.2))),
    ("lr 0.015, c 1.0/4.0/6.5/3.2", dict(lr=0.015, c=(1.0, 4.0, 6.5, 3.2))),
    ("lr 0.02 x0.1, c 1.0/4.2/6.8/3.2", dict(lr=0.02, lr_gamma=0.1, c=(1.0, 4.2, 6.8, 3.2))),
    ("wd 1e-3, c 1.0/3.3/5.6/2.8", dict(wd=1e-3, c=(1.0, 3.3, 5.6, 2.8))),
    ("wd 1e-3, c 0.5/3.0/5.2/2.5", dict(wd=1e-3, c=(0.5, 3.0, 5.2, 2.5))),
    ("wd 1e-3, lr 0.02, c 1.0/3.8/6.2/3.2", dict(wd=1e-3, lr=0.02, c=(1.0, 3.8, 6.2, 3.2))),
    ("conv1 0.5", dict(c=(0.5, 3.8, 6.2, 3.2))),
    ("c 1.0/3.8/6.4/2.6", dict(c=(1.0, 3.8, 6.4, 2.6))),
    ("c 1.0/3.4/6.4/3.2", dict(c=(1.0, 3.4, 6.4, 3.2))),
    ("conv1 1.0, step 15000", dict(c=(1.0, 3.8, 6.2, 3.2), step=15000)),
    ("conv1 1.0, iter_stop 14000, step 15000", dict(c=(1.0, 3.8, 6.2, 3.2), step=15000,
                                                   iter_stop=(14000, 14000, 14000, 14000))),
    ("conv1 1.0, momentum 0.95", dict(c=(1.0, 3.8, 6.2, 3.2), momentum=0.95)),
    ("conv1 1.0, wd 2e-4", dict(c=(1.0, 3.8, 6.2, 3.2), wd=2e-4)),
    ("conv1 1.0, power 0.5", dict(c=(1.0, 3.8, 6.2, 3.2), power=0.5)),
    ("lr 0.03, c 1.0/4.6/7.4/3.4", dict(lr=0.03, c=(1.0, 4.6, 7.4, 3.4))),
    ("conv1 1.0, fc iter_stop 8000", dict(c=(1.0, 3.8, 6.2, 3.2), iter_stop=(10000, 10000, 8000, 8000))),
]

SWEEPS = {"1": SWEEP_1, "2": SWEEP_2}


def read_leb128(buf, pos):
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def read_torchsharp(path):
    """TorchSharp's Module.save: a count, then per tensor its name, element type, shape (LEB128) and raw bytes."""
    buf = open(path, "rb").read()
    count, pos = read_leb128(buf, 0)
    tensors = {}
    for _ in range(count):
        length, pos = read_leb128(buf, pos)
        name = buf[pos:pos + length].decode()
        pos += length
        dtype, pos = read_leb128(buf, pos)
        ndim, pos = read_leb128(buf, pos)
        shape = []
        for _ in range(ndim):
            d, pos = read_leb128(buf, pos)
            shape.append(d)
        if dtype != 6:
            raise ValueError(f"{name}: element type {dtype}, expected float32 (6)")
        size = 4 * math.prod(shape)
        tensors[name] = (tuple(shape), buf[pos:pos + size])
        pos += size
    if pos != len(buf):
        raise ValueError(f"{path}: {len(buf) - pos} trailing bytes")
    return tensors


def read_idx(path):
    data = gzip.open(path, "rb").read()
    ndim = data[3]
    shape = struct.unpack(">" + "i" * ndim, data[4:4 + 4 * ndim])
    return tuple(shape), data[4 + 4 * ndim:]


def build_configs(sweep, n_seeds, first_seed):
    configs = []
    for index, (label, overrides) in enumerate(sweep):
        for s in range(n_seeds):
            config = dict(RECIPE)
            config.update(overrides)
            config.update(label=label, index=index, seed=first_seed + s)
            configs.append(config)
    return configs


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    parser.add_argument("--dense", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--sweep", choices=sorted(SWEEPS), default="1")
    parser.add_argument("--iterations", type=int, default=30000)
    parser.add_argument("--eval-interval", type=int, default=5000)
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--configs", type=int, default=1000, help="only the first N sweep entries")
    parser.add_argument("--budget", type=float, default=420.0, help="seconds for the training loop")
    parser.add_argument("--check-at", type=int, default=300, help="iteration at which the speed is measured")
    parser.add_argument("--parse-only", action="store_true", help="check the input files without torch")
    args = parser.parse_args()

    dense = read_torchsharp(args.dense)
    names = [f"{l}.{p}" for l in LAYERS for p in ("weight", "bias")]
    if sorted(dense) != sorted(names):
        raise ValueError(f"unexpected parameters {sorted(dense)}")
    files = {k: read_idx(f"{args.data}/{k}-ubyte.gz") for k in
             ("train-images-idx3", "train-labels-idx1", "t10k-images-idx3", "t10k-labels-idx1")}
    if args.parse_only:
        for k, (shape, _) in dense.items():
            print(k, shape)
        for k, (shape, _) in files.items():
            print(k, shape)
        print(len(build_configs(SWEEPS[args.sweep], args.seeds, args.first_seed)), "runs")
        return

    import torch
    import torch.nn.functional as F

    torch.backends.cuda.matmul.allow_tf32 = False  # plain float32, as the engine computes on CPU
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    dev = torch.device("cuda")

    def as_tensor(shape, raw, dtype):
        return torch.frombuffer(bytearray(raw), dtype=dtype).reshape(shape).to(dev)

    x_train = as_tensor(*files["train-images-idx3"], torch.uint8).float().div_(255).unsqueeze(1)
    y_train = as_tensor(*files["train-labels-idx1"], torch.uint8).long()
    x_test = as_tensor(*files["t10k-images-idx3"], torch.uint8).float().div_(255).unsqueeze(1)
    y_test = as_tensor(*files["t10k-labels-idx1"], torch.uint8).long()

    configs = build_configs(SWEEPS[args.sweep], args.seeds, args.first_seed)
    configs = [c for c in configs if c["index"] < args.configs]
    n = len(configs)

    def per_model(values):
        return torch.tensor(values, dtype=torch.float32, device=dev)

    # State, one leading dimension of n models: dense W and b, masks, velocities.
    W, T, V = {}, {}, {}
    for layer in LAYERS:
        for p in ("weight", "bias"):
            shape, raw = dense[f"{layer}.{p}"]
            t = torch.frombuffer(bytearray(raw), dtype=torch.float32).reshape(shape).to(dev)
            key = (layer, p)
            W[key] = t.unsqueeze(0).repeat(n, *([1] * len(shape))).contiguous()
            T[key] = torch.ones_like(W[key])
            V[key] = torch.zeros_like(W[key])
    total_params = sum(w[0].numel() for w in W.values())

    # Spec step 2: thresholds from the nonzero entries of W and b (biases are pruned), once, in double.
    a_thr, b_thr = [], []
    for li, layer in enumerate(LAYERS):
        values = torch.cat([W[(layer, "weight")][0].flatten(), W[(layer, "bias")][0].flatten()]).double()
        nz = values[values != 0].abs()
        mu = nz.mean().item()
        sd = math.sqrt(max((nz * nz).mean().item() - mu * mu, 0.0))
        t = [max(mu + c["c"][li] * sd, 0.0) for c in configs]
        a_thr.append(per_model([0.9 * x for x in t]))
        b_thr.append(per_model([1.1 * x for x in t]))

    gamma = per_model([[c["gamma"]] * 4 for c in configs])
    power = per_model([[c["power"]] * 4 for c in configs])
    iter_stop = per_model([list(c["iter_stop"]) for c in configs])
    base_lr = [c["lr"] for c in configs]
    wd = per_model([c["wd"] for c in configs])
    momentum = per_model([c["momentum"] for c in configs])
    gen = torch.Generator(device=dev)
    gen.manual_seed(12345)
    gens = []
    for c in configs:
        g = torch.Generator(device=dev)
        g.manual_seed(1000 + 7919 * c["seed"])  # the data order depends on the seed only
        gens.append(g)

    def expand(v, like):
        return v.reshape(-1, *([1] * (like.dim() - 1)))

    def shrink(keep):
        nonlocal configs, n, gamma, power, iter_stop, base_lr, wd, momentum, gens, perm, lr_steps
        for d in (W, T, V):
            for key in d:
                d[key] = d[key][:keep].contiguous()
        for li in range(4):
            a_thr[li] = a_thr[li][:keep]
            b_thr[li] = b_thr[li][:keep]
        gamma, power, iter_stop = gamma[:keep], power[:keep], iter_stop[:keep]
        wd, momentum = wd[:keep], momentum[:keep]
        base_lr, gens, configs = base_lr[:keep], gens[:keep], configs[:keep]
        perm = perm[:keep]
        lr_steps = None  # the per-model learning rates are rebuilt for the kept runs
        n = keep

    def forward(params, x):
        """x: [n, B, 1, 28, 28] -> logits [n, B, 10]; conv 20@5, pool, conv 50@5, pool, fc 500, ReLU, fc 10."""
        m, batch = x.shape[0], x.shape[1]
        h = x.reshape(m, batch, 28, 28).transpose(0, 1).contiguous()  # [B, m, 28, 28]: model i is channel i
        h = F.conv2d(h, params[("conv1", "weight")].reshape(m * 20, 1, 5, 5),
                     params[("conv1", "bias")].reshape(m * 20), groups=m)
        h = F.max_pool2d(h, 2)
        h = F.conv2d(h, params[("conv2", "weight")].reshape(m * 50, 20, 5, 5),
                     params[("conv2", "bias")].reshape(m * 50), groups=m)
        h = F.max_pool2d(h, 2)  # [B, m*50, 4, 4]
        h = h.reshape(batch, m, 800).transpose(0, 1)  # [m, B, 800], each row in the engine's flatten order
        h = torch.baddbmm(params[("fc1", "bias")].unsqueeze(1), h, params[("fc1", "weight")].transpose(1, 2))
        h = F.relu(h)
        return torch.baddbmm(params[("fc2", "bias")].unsqueeze(1), h, params[("fc2", "weight")].transpose(1, 2))

    @torch.no_grad()
    def evaluate(iteration, final):
        masked = {k: W[k] * T[k] for k in W}
        errors = torch.zeros(n, device=dev)
        losses = torch.zeros(n, device=dev)
        for start in range(0, 10000, 500):
            x = x_test[start:start + 500].unsqueeze(0).expand(n, -1, -1, -1, -1)
            y = y_test[start:start + 500]
            logits = forward(masked, x)
            losses += F.cross_entropy(logits.reshape(-1, 10), y.repeat(n), reduction="none").view(n, -1).sum(1)
            errors += (logits.argmax(2) != y.unsqueeze(0)).float().sum(1)
        kept = {layer: (T[(layer, "weight")].flatten(1).sum(1) + T[(layer, "bias")].flatten(1).sum(1)).tolist()
                for layer in LAYERS}
        totals = {layer: W[(layer, "weight")][0].numel() + W[(layer, "bias")][0].numel() for layer in LAYERS}
        errors, losses = errors.tolist(), losses.tolist()
        rows = []
        for i, c in enumerate(configs):
            k = sum(kept[layer][i] for layer in LAYERS)
            rows.append(dict(label=c["label"], index=c["index"], seed=c["seed"], iteration=iteration, final=final,
                             error=errors[i] / 100.0, loss=losses[i] / 10000.0, compression=total_params / k,
                             remaining={layer: 100.0 * kept[layer][i] / totals[layer] for layer in LAYERS}))
        with open(args.out, "a") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
        return rows

    def summary(rows):
        groups = {}
        for r in rows:
            groups.setdefault((r["index"], r["label"]), []).append(r)
        print(f"{'settings':34} {'runs':>4} {'x mean':>7} {'err mean':>8} {'sd':>5} {'min':>5} {'max':>5} {'<=0.95':>6}")
        for (index, label), rs in sorted(groups.items()):
            e = [r["error"] for r in rs]
            mean = sum(e) / len(e)
            sd = math.sqrt(sum((x - mean) ** 2 for x in e) / max(len(e) - 1, 1))
            x = sum(r["compression"] for r in rs) / len(rs)
            ok = sum(1 for r in rs if r["error"] <= 0.95 and r["compression"] >= 108)
            print(f"{label:34} {len(rs):4d} {x:7.1f} {mean:8.3f} {sd:5.2f} {min(e):5.2f} {max(e):5.2f} {ok:4d}/{len(rs)}")
        sys.stdout.flush()

    open(args.out, "w").close()
    print(f"{n} runs (sweep {args.sweep}, {args.seeds} seeds per setting), {total_params} parameters each; "
          f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    rows = evaluate(0, False)
    print(f"dense reference: error {rows[0]['error']:.2f}%, loss {rows[0]['loss']:.4f}")

    batch = 64
    per_epoch = 60000 // batch
    perm = None
    epoch_of_perm = -1
    lr, lr_steps = None, None
    clock = time.time()
    for iteration in range(args.iterations):
        # Spec step 3: one draw per layer per model; sigma(iter) = (1 + gamma iter)^-power; frozen from iter_stop on.
        with torch.no_grad():
            draws = torch.rand(n, 4, device=dev, generator=gen)
            sigma = (1 + gamma * iteration) ** (-power)
            update = (sigma > draws) & (iteration < iter_stop)
            for li, layer in enumerate(LAYERS):
                u = update[:, li]
                for p in ("weight", "bias"):
                    key = (layer, p)
                    w, t = W[key], T[key]
                    threshold = torch.where(t > 0, expand(a_thr[li], t), expand(b_thr[li], t))
                    fresh = (w.abs() > threshold).float()
                    T[key] = torch.where(expand(u, t), fresh, t)

        epoch = iteration // per_epoch
        if epoch != epoch_of_perm:
            perm = torch.stack([torch.randperm(60000, device=dev, generator=g) for g in gens])
            epoch_of_perm = epoch
        k = iteration % per_epoch
        idx = perm[:, k * batch:(k + 1) * batch]  # [n, B]
        x = x_train[idx]  # [n, B, 1, 28, 28]
        y = y_train[idx]

        # Spec steps 4-5: forward with W*T; the gradient of W*T is applied to the dense W (straight-through).
        masked = {key: (W[key] * T[key]).requires_grad_() for key in W}
        logits = forward(masked, x)
        loss = F.cross_entropy(logits.reshape(-1, 10), y.reshape(-1), reduction="none").view(n, -1).mean(1).sum()
        loss.backward()

        with torch.no_grad():
            steps = tuple(iteration // c["step"] for c in configs)
            if steps != lr_steps:  # Caffe's step policy, per model; rebuilt only when a step is crossed
                lr = per_model([base * c["lr_gamma"] ** s for base, c, s in zip(base_lr, configs, steps)])
                lr_steps = steps
            for key in W:
                w, g, v = W[key], masked[key].grad, V[key]
                g.add_(w * expand(wd, w))
                v.mul_(expand(momentum, v)).add_(g * expand(lr, g))
                w.sub_(v)

        done = iteration + 1
        if done == args.check_at:
            torch.cuda.synchronize()
            spent = time.time() - clock
            projected = spent / done * args.iterations
            print(f"{done} iterations in {spent:.1f} s: {1000 * spent / done:.2f} ms each, {projected:.0f} s projected "
                  f"for {n} runs")
            if projected > args.budget:
                keep = int(n * args.budget / projected) // args.seeds * args.seeds
                keep = max(keep, args.seeds)
                print(f"over the {args.budget:.0f} s budget: keeping the first {keep} runs")
                shrink(keep)
            sys.stdout.flush()
        late = done % 1000 == 0 and time.time() - clock > 1.3 * args.budget
        if done % args.eval_interval == 0 or done == args.iterations or late:
            rows = evaluate(done, done == args.iterations)
            print(f"iteration {done}, {time.time() - clock:.0f} s")
            summary(rows)
        if late:
            print(f"stopped at iteration {done}: past 1.3x the budget")
            break


if __name__ == "__main__":
    main()
