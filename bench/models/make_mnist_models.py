#!/usr/bin/python3
"""MNIST models trained the way other teams train them, for `bench -- target` and the self-tuning tests (issue 23).

Run with Debian's python3-torch (apt-get install python3-torch python3-onnx libopenblas0-pthread), never at the
service's run time:

  /usr/bin/python3 bench/models/make_mnist_models.py MNIST_DIR OUT_DIR [--epochs N] [--seed S] [--only NAME ...]
  /usr/bin/python3 bench/models/make_mnist_models.py - - --pace N --only NAME [--threads T] [--batch B]

MNIST_DIR holds the four original IDX files (scripts/test.sh fetches them into .data/datasets/mnist). Each model is
written as OUT_DIR/<name>.onnx (opset 13, dynamic batch) with OUT_DIR/<name>.json: how it was trained, what input
scaling it expects, and its test top-1 in PyTorch. The three conventions issue 23 names:

  raw-cnn      a CNN fed raw 0-255 pixels with no scaling anywhere, trained with plain SGD at a small rate;
  resnet-bn    a residual CNN with BatchNorm, trained with Adam on mean/std-normalised inputs (0.1307, 0.3081);
  all60k-cnn   a LeNet-5-like CNN on inputs x/255 trained on all 60,000 training images (no image held out).

raw-cnn and resnet-bn train on the first 54,000 training images, so the last 6,000 are unseen by them.

raw-cnn: at SGD lr 1e-5 one epoch reached only 88.49% test top-1; at 3e-5 it reaches 93.08%, 95.13% and 95.94% after
1, 2 and 3 epochs (--epochs 3 --only raw-cnn, seed 1; the committed bench/models/raw-cnn.onnx). More epochs would make it
a more typical ~98% model; they were not affordable on the shared 2-core machine this was built on.

resnet-bn and all60k-cnn (--epochs 3 --only resnet-bn --only all60k-cnn, seed 1; the committed files): resnet-bn reached
97.62%, 98.38% and 98.86% test top-1 after 1, 2 and 3 epochs (2,238 s on the loaded 2-core machine); all60k-cnn 97.94%,
98.36% and 98.75% (168 s).

Issue 24's two, trained on the first 54,000 training images with Adam (--epochs 10 --threads 1, seed 1; the committed
files, one process each beside the other on the 2-core machine):

  tiny-vit     patch 7, two pre-norm encoder layers (LayerNorm, GELU), exported at opset 17: 93.75% test top-1 after
               one epoch, 96.21% after 3, 97.73% after 10 (167 s);
  row-lstm     an LSTM reading the 28 rows as 28 steps, input [28, 28]: 93.79% after one epoch, 97.06% after 3, 98.24%
               after 10 (324 s).
"""
import argparse
import json
import os
import struct
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

MEAN, STD = 0.1307, 0.3081
HOLDOUT = 6000


def read_idx(path):
    with open(path, "rb") as f:
        magic = struct.unpack(">I", f.read(4))[0]
        dims = [struct.unpack(">I", f.read(4))[0] for _ in range(magic & 0xFF)]
        return np.frombuffer(f.read(), dtype=np.uint8).reshape(dims)


def load_mnist(directory):
    def pair(prefix):
        x = read_idx(os.path.join(directory, f"{prefix}-images-idx3-ubyte"))
        y = read_idx(os.path.join(directory, f"{prefix}-labels-idx1-ubyte"))
        return torch.from_numpy(x.astype(np.float32)).unsqueeze(1), torch.from_numpy(y.astype(np.int64))
    return pair("train"), pair("t10k")


class RawCnn(nn.Module):
    """Conv 16@5x5, pool, conv 32@5x5, pool, fc 128, fc 10: fed 0-255 as they come from the IDX file."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 5)
        self.conv2 = nn.Conv2d(16, 32, 5)
        self.fc1 = nn.Linear(32 * 4 * 4, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(torch.flatten(x, 1))))


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.skip = None
        if stride != 1 or cin != cout:
            self.skip = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.skip is None else self.skip(x)))


class ResNetBn(nn.Module):
    """A small ResNet: stem conv 16, blocks 16 -> 32 (stride 2) -> 64 (stride 2), global average pool, fc 10."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.layer1 = Block(16, 16, 1)
        self.layer2 = Block(16, 32, 2)
        self.layer3 = Block(32, 64, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


class LeNet5(nn.Module):
    """Caffe's LeNet-5 shape: conv 20@5x5, pool, conv 50@5x5, pool, fc 500, fc 10."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 20, 5)
        self.conv2 = nn.Conv2d(20, 50, 5)
        self.fc1 = nn.Linear(50 * 4 * 4, 500)
        self.fc2 = nn.Linear(500, 10)

    def forward(self, x):
        x = F.max_pool2d(self.conv1(x), 2)
        x = F.max_pool2d(self.conv2(x), 2)
        return self.fc2(F.relu(self.fc1(torch.flatten(x, 1))))


class TinyVit(nn.Module):
    """A ViT for 28x28: patches of 7x7 (16 tokens of 64 dimensions) and a class token with learned positions, two
    pre-norm encoder layers (4 heads, feed-forward 128, GELU), a final LayerNorm, a linear head on the class token."""

    def __init__(self):
        super().__init__()
        self.patch = nn.Conv2d(1, 64, 7, 7)
        self.cls = nn.Parameter(torch.randn(1, 1, 64) * 0.02)
        self.position = nn.Parameter(torch.randn(1, 17, 64) * 0.02)
        layer = nn.TransformerEncoderLayer(64, 4, 128, dropout=0.1, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2)
        self.norm = nn.LayerNorm(64)
        self.head = nn.Linear(64, 10)

    def forward(self, x):
        tokens = self.patch(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls.expand(x.shape[0], -1, -1), tokens], 1) + self.position
        return self.head(self.norm(self.encoder(tokens))[:, 0])


class RowLstm(nn.Module):
    """An LSTM (hidden 128) that reads an image's 28 rows as 28 steps of 28 pixels; a linear head on the last step.
    Its input is [batch, 28, 28], as a sequence model's is."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(28, 128, batch_first=True)
        self.head = nn.Linear(128, 10)

    def forward(self, x):
        return self.head(self.lstm(x)[0][:, -1])


# name: (model, optimizer factory, input scaling applied *outside* the model, training images, description)
MODELS = {
    "raw-cnn": (RawCnn, lambda p: torch.optim.SGD(p, lr=3e-5, momentum=0.9), ("raw", None), 60000 - HOLDOUT,
                "CNN on raw 0-255 pixels, SGD lr 3e-5 momentum 0.9, batch 64"),
    "resnet-bn": (ResNetBn, lambda p: torch.optim.Adam(p, lr=1e-3), ("meanstd", (MEAN, STD)), 60000 - HOLDOUT,
                  "residual CNN with BatchNorm, Adam lr 1e-3, batch 64, inputs (x/255 - 0.1307) / 0.3081"),
    "all60k-cnn": (LeNet5, lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9, weight_decay=5e-4),
                   ("unit", None), 60000, "LeNet-5 shape, SGD lr 0.01 momentum 0.9, batch 64, inputs x/255, "
                                          "all 60,000 training images"),
    "tiny-vit": (TinyVit, lambda p: torch.optim.Adam(p, lr=1e-3), ("meanstd", (MEAN, STD)), 60000 - HOLDOUT,
                 "tiny ViT (patch 7, 2 pre-norm encoder layers, LayerNorm, GELU), Adam lr 1e-3, batch 64, "
                 "inputs (x/255 - 0.1307) / 0.3081"),
    "row-lstm": (RowLstm, lambda p: torch.optim.Adam(p, lr=1e-3), ("unit", None), 60000 - HOLDOUT,
                 "LSTM (hidden 128) reading the 28 rows as steps, Adam lr 1e-3, batch 64, inputs x/255 shaped [28, 28]"),
}

# Input shape of one sample, and the opset each model is exported at (17: LayerNormalization as one operator).
SHAPES = {"row-lstm": (28, 28)}
OPSETS = {"tiny-vit": 17}


def scale(x, kind):
    if kind == "raw":
        return x
    x = x / 255.0
    return (x - MEAN) / STD if kind == "meanstd" else x


def shaped(name, x):
    return x.reshape(len(x), *SHAPES.get(name, (1, 28, 28)))


def accuracy(name, model, x, y, kind):
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), 1000):
            correct += (model(shaped(name, scale(x[i:i + 1000], kind))).argmax(1) == y[i:i + 1000]).sum().item()
    return 100.0 * correct / len(x)


def train(name, train_set, test_set, epochs, seed, out_dir):
    factory, optimizer_factory, (kind, stats), count, description = MODELS[name]
    torch.manual_seed(seed)
    model = factory()
    optimizer = optimizer_factory(model.parameters())
    x, y = train_set[0][:count], train_set[1][:count]
    start = time.time()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(count)
        for i in range(0, count, 64):
            index = order[i:i + 64]
            loss = F.cross_entropy(model(shaped(name, scale(x[index], kind))), y[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        print(f"{name}: epoch {epoch + 1}/{epochs}, loss {loss.item():.4f}, "
              f"test top-1 {accuracy(name, model, *test_set, kind):.2f}%, {time.time() - start:.0f} s", flush=True)
    model.eval()
    path = os.path.join(out_dir, f"{name}.onnx")
    torch.onnx.export(model, torch.zeros(1, *SHAPES.get(name, (1, 28, 28))), path, opset_version=OPSETS.get(name, 13),
                      input_names=["input"],
                      output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    info = {
        "name": name,
        "description": description,
        "inputScaling": {"raw": "none (0-255)", "unit": "x/255", "meanstd": "(x/255 - 0.1307) / 0.3081"}[kind],
        "preprocessing": {"raw": {}, "unit": {"scale": 1 / 255},
                          "meanstd": {"scale": 1 / 255, "mean": [MEAN], "std": [STD]}}[kind],
        "inputShape": list(SHAPES.get(name, (1, 28, 28))),
        "opset": OPSETS.get(name, 13),
        "trainingImages": count,
        "epochs": epochs,
        "seed": seed,
        "parameters": sum(p.numel() for p in model.parameters()),
        "testTop1": accuracy(name, model, *test_set, kind),
        "torch": torch.__version__,
    }
    with open(os.path.join(out_dir, f"{name}.json"), "w") as f:
        json.dump(info, f, indent=2)
    print(json.dumps(info), flush=True)


def pace(name, iterations, batch):
    """Seconds per training iteration of this architecture in PyTorch (SGD with momentum and cross-entropy on one fixed
    random batch, as the service's trainer steps): the reference `bench -- pace` compares the engine with."""
    torch.manual_seed(1)
    model = MODELS[name][0]()
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(batch, *SHAPES.get(name, (1, 28, 28)))
    y = torch.randint(0, 10, (batch,))

    def step():
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()

    for _ in range(5):
        step()
    start = time.perf_counter()
    for _ in range(iterations):
        step()
    print("parameters", sum(p.numel() for p in model.parameters()), flush=True)
    print("pytorch_seconds_per_iteration", (time.perf_counter() - start) / iterations, flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mnist_dir")
    parser.add_argument("out_dir")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", choices=sorted(MODELS), action="append")
    parser.add_argument("--pace", type=int, metavar="N",
                        help="time N training iterations of each --only model instead of training it (bench -- pace)")
    parser.add_argument("--batch", type=int, default=64, help="batch size of --pace")
    parser.add_argument("--threads", type=int, help="torch threads (default: one per core)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads or max(1, os.cpu_count() or 1))
    if args.pace:
        for name in args.only or MODELS:
            pace(name, args.pace, args.batch)
        return
    os.makedirs(args.out_dir, exist_ok=True)
    train_set, test_set = load_mnist(args.mnist_dir)
    for name in args.only or MODELS:
        train(name, train_set, test_set, args.epochs, args.seed, args.out_dir)


if __name__ == "__main__":
    main()
