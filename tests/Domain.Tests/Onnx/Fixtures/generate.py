"""Exports the small models of tests/Domain.Tests/Onnx/Fixtures with PyTorch's torch.onnx.export.

Run with Debian's python3-torch 1.13 (the exporter whose output the tests pin):
    /usr/bin/python3 tests/Domain.Tests/Onnx/Fixtures/generate.py
Weights are random (seeded): the tests check import parity against ONNX Runtime, not accuracy.
"""
import os
import warnings

import torch
import torch.nn as nn
import torchvision

warnings.filterwarnings("ignore")
HERE = os.path.dirname(os.path.abspath(__file__))


class TransformerClassifier(nn.Module):
    """Token embedding, two post-norm encoder layers (optionally with a causal mask), mean pooling, a linear head."""

    def __init__(self, causal=False, padding=False):
        super().__init__()
        self.causal = causal
        self.padding = padding
        self.embed = nn.Linear(8, 16)
        layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.1, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2)
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        mask = nn.Transformer.generate_square_subsequent_mask(x.shape[1]) if self.causal else None
        # A key padding mask computed from the input, so the one-input graph carries it (Greater, Where, Expand).
        padding = x[:, :, 0] > 0.5 if self.padding else None
        return self.head(self.encoder(self.embed(x), mask=mask, src_key_padding_mask=padding).mean(1))


class SelfAttention(nn.Module):
    """nn.MultiheadAttention alone, with a key padding mask computed from the input."""

    def __init__(self):
        super().__init__()
        self.attention = nn.MultiheadAttention(16, 4, batch_first=True)

    def forward(self, x):
        return self.attention(x, x, x, key_padding_mask=x[:, :, 0] > 0.5, need_weights=False)[0]


class TinyViT(nn.Module):
    """Patch 7 on 28x28, a class token expanded over the batch, two pre-norm encoder layers with GELU."""

    def __init__(self):
        super().__init__()
        self.patch = nn.Conv2d(1, 16, 7, 7)
        self.cls = nn.Parameter(torch.randn(1, 1, 16) * 0.02)
        self.position = nn.Parameter(torch.randn(1, 17, 16) * 0.02)
        layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.1, activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2)
        self.norm = nn.LayerNorm(16)
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        tokens = self.patch(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls.expand(x.shape[0], -1, -1), tokens], 1) + self.position
        return self.head(self.norm(self.encoder(tokens))[:, 0])


class LayerNormGeluMlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(20, 32), nn.LayerNorm(32), nn.GELU(), nn.Dropout(0.1), nn.Linear(32, 5))

    def forward(self, x):
        return self.net(x)


class RecurrentClassifier(nn.Module):
    """Reads the rows of a sequence as steps and classifies from the last step's output."""

    def __init__(self, kind, bidirectional):
        super().__init__()
        self.rnn = getattr(nn, kind)(7, 12, num_layers=2, batch_first=True, bidirectional=bidirectional)
        self.head = nn.Linear(12 * (2 if bidirectional else 1), 4)

    def forward(self, x):
        return self.head(self.rnn(x)[0][:, -1])


class TokenClassifier(nn.Module):
    """Token ids (int64) into an embedding table, a small encoder layer, mean pooling, a linear head: a text model."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(30, 16)
        self.encoder = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.1, batch_first=True)
        self.head = nn.Linear(16, 3)

    def forward(self, tokens):
        return self.head(self.encoder(self.embed(tokens)).mean(1))


class ConvBn(nn.Module):
    """Conv, a BatchNorm that never trained (weight 1, bias 0, running mean 0, running var 1), ReLU, mean pool, linear."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Linear(4, 10)

    def forward(self, x):
        return self.head(torch.relu(self.bn(self.conv(x))).mean((2, 3)))


def export_unfolded(name, model, shape, opset):
    """No constant folding, BatchNorm kept (not fused into the conv): the exporter stores equal initializers once, so
    the running statistics reach BatchNormalization through Identity nodes of the weight and bias they equal."""
    model.eval()
    path = os.path.join(HERE, f"{name}-opset{opset}.onnx")
    torch.onnx.export(model, torch.randn(*shape), path, opset_version=opset, input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, do_constant_folding=False,
                      training=torch.onnx.TrainingMode.PRESERVE)
    print(f"{path}: {os.path.getsize(path)} bytes")


def export(name, model, shape, opsets, vocabulary=None):
    """Exports at each opset. With a vocabulary the input is token ids (int64, named 'tokens'), as text models' are."""
    # Encoder layers start as copies of one layer, and the exporter stores equal weights once; move every weight, as
    # training would, so each layer keeps its own initializers.
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    model.eval()
    dummy = torch.randn(*shape) if vocabulary is None else torch.randint(0, vocabulary, shape)
    input_name = "input" if vocabulary is None else "tokens"
    for opset in opsets:
        path = os.path.join(HERE, f"{name}-opset{opset}.onnx")
        torch.onnx.export(model, dummy, path, opset_version=opset, input_names=[input_name],
                          output_names=["logits"], dynamic_axes={input_name: {0: "batch"}, "logits": {0: "batch"}})
        print(f"{path}: {os.path.getsize(path)} bytes")


def main():
    torch.manual_seed(24)
    export("transformer", TransformerClassifier(), (2, 5, 8), (13, 17))
    # triu, which the causal mask needs, exports from opset 14.
    export("transformer-causal", TransformerClassifier(causal=True), (2, 5, 8), (17,))
    export("vit", TinyViT(), (2, 1, 28, 28), (13, 17))
    export("mlp-layernorm-gelu", LayerNormGeluMlp(), (3, 20), (13, 17))
    export("lstm", RecurrentClassifier("LSTM", False), (2, 6, 7), (13, 17))
    export("gru-bidirectional", RecurrentClassifier("GRU", True), (2, 6, 7), (13, 17))
    export("rnn", RecurrentClassifier("RNN", False), (2, 6, 7), (13,))
    export("transformer-padding-mask", TransformerClassifier(padding=True), (2, 5, 8), (13, 17))
    export("attention-padding-mask", SelfAttention(), (2, 5, 16), (13,))
    # torchvision's ShuffleNetV2 at a tiny width: channel split (Split), channel shuffle and the .mean() head (ReduceMean).
    export("shufflenet-v2-tiny", torchvision.models.ShuffleNetV2([1, 1, 1], [8, 16, 32, 64, 128], num_classes=10),
           (2, 3, 32, 32), (13, 17))
    export_unfolded("conv-bn-shared-statistics", ConvBn(), (2, 1, 12, 12), 13)
    # Added later, with its own seed, so that the fixtures above are made exactly as before.
    torch.manual_seed(2412)
    export("token-classifier", TokenClassifier(), (2, 6), (13, 17), vocabulary=30)


if __name__ == "__main__":
    import sys
    if sys.argv[1:] == ["--only-tokens"]:
        torch.manual_seed(2412)
        export("token-classifier", TokenClassifier(), (2, 6), (13, 17), vocabulary=30)
    else:
        main()
