"""ResNet-18 or VGG11-BN (torchvision's layouts, 10 classes) for bench -- large: exports one as ONNX and times a PyTorch
CPU training loop on it (SGD with momentum, cross-entropy, one fixed random batch) at the given threads and batch size.

Run with Debian's python3-torch 1.13 (no torchvision needed):
    /usr/bin/python3 bench/large/cnns.py --model resnet18 --out resnet18.onnx --size 64 --batch 64 --threads 2 --iterations 10
Prints 'parameters N' and 'pytorch_seconds_per_iteration S'. With --dataset it also writes random images of the
model's input size as a NumPy .npz (bench -- service-large uploads both).
"""
import argparse
import time

import torch
from torch import nn


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + (x if self.down is None else self.down(x)))


class ResNet18(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        layers, cin = [], 64
        for cout, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
            layers += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
            cin = cout
        self.blocks = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))


class Vgg11Bn(nn.Module):
    """torchvision's vgg11_bn: eight 3x3 convolutions with BatchNorm, five max pools, a 7x7 average pool and the
    25088-4096-4096 classifier with dropout (128.8M parameters at 10 classes, whatever the input size)."""

    def __init__(self, classes=10):
        super().__init__()
        layers, cin = [], 3
        for v in [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
                cin = v
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(7)
        self.classifier = nn.Sequential(nn.Linear(512 * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(), nn.Linear(4096, 4096),
                                        nn.ReLU(True), nn.Dropout(), nn.Linear(4096, classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


MODELS = {"resnet18": ResNet18, "vgg11_bn": Vgg11Bn}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", choices=sorted(MODELS), default="resnet18")
    parser.add_argument("--out", required=True)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--dataset", help="also write a NumPy .npz of random images of this size (x_train, y_train, x_test, y_test)")
    parser.add_argument("--samples", type=int, default=256, help="training samples of --dataset (and 200 test samples)")
    args = parser.parse_args()
    torch.manual_seed(1)
    torch.set_num_threads(args.threads)
    model = MODELS[args.model]()
    print("parameters", sum(p.numel() for p in model.parameters()), flush=True)
    model.eval()
    # As exporters ship models for inference: eval mode, where the exporter folds each BatchNorm into its Conv.
    torch.onnx.export(model, torch.randn(1, 3, args.size, args.size), args.out, opset_version=13, input_names=["input"],
                      output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    if args.dataset:
        import numpy as np
        generator = np.random.default_rng(1)
        def images(n):
            return generator.standard_normal((n, 3, args.size, args.size), dtype=np.float32)
        np.savez(args.dataset, x_train=images(args.samples), y_train=generator.integers(0, 10, args.samples),
                 x_test=images(200), y_test=generator.integers(0, 10, 200))
    if args.iterations <= 0:
        return
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(args.batch, 3, args.size, args.size)
    y = torch.randint(0, 10, (args.batch,))

    def step():
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()

    for _ in range(2):
        step()
    start = time.perf_counter()
    for _ in range(args.iterations):
        step()
    print("pytorch_seconds_per_iteration", (time.perf_counter() - start) / args.iterations, flush=True)


if __name__ == "__main__":
    main()
