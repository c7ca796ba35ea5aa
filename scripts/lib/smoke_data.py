#!/usr/bin/env python3
"""Small inputs and checks for scripts/compose-smoke.sh, in the standard library only (no numpy, no onnx package).

  smoke_data.py make DIR           writes DIR/mlp.onnx (784 -> 32 -> 10 MLP, as exporters write it: Gemm, Relu,
                                   Gemm, Softmax) and DIR/blocks.npz (x uint8 [N,28,28], y int64 [N]: ten classes,
                                   each a bright 7x7 block at its own place on a noisy background; learnable in a
                                   few hundred iterations)
  smoke_data.py nonzeros FILE.onnx prints the nonzero count of each float initializer as JSON {name: [nonzero, total]}
"""
import io
import json
import random
import struct
import sys
import zipfile

HIDDEN = 32
TRAIN, TEST = 2000, 500


# --- protobuf wire format, the few field kinds ONNX needs -------------------------------------------------------
def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field_varint(number, value):
    return varint(number << 3) + varint(value)


def field_bytes(number, payload):
    if isinstance(payload, str):
        payload = payload.encode()
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def tensor(name, dims, values):
    # TensorProto: dims=1, data_type=2 (1 = FLOAT), name=8, raw_data=9
    return (b"".join(field_varint(1, d) for d in dims) + field_varint(2, 1) + field_bytes(8, name)
            + field_bytes(9, struct.pack("<%df" % len(values), *values)))


def value_info(name, dims):
    # ValueInfoProto{name=1, type=2}; TypeProto{tensor_type=1}; Tensor{elem_type=1, shape=2}; Shape{dim=1};
    # Dimension{dim_value=1, dim_param=2}
    shape = b"".join(field_bytes(1, field_bytes(2, "N") if d < 0 else field_varint(1, d)) for d in dims)
    return field_bytes(1, name) + field_bytes(2, field_bytes(1, field_varint(1, 1) + field_bytes(2, shape)))


def node(op, name, inputs, output, trans_b=False):
    # NodeProto: input=1, output=2, name=3, op_type=4, attribute=5 (AttributeProto: name=1, i=3, type=20; INT = 2)
    body = b"".join(field_bytes(1, i) for i in inputs) + field_bytes(2, output) + field_bytes(3, name) + field_bytes(4, op)
    if trans_b:
        body += field_bytes(5, field_bytes(1, "transB") + field_varint(3, 1) + field_varint(20, 2))
    return body


def mlp(seed=3):
    rng = random.Random(seed)

    def uniform(count, scale):
        return [(rng.random() * 2 - 1) * scale for _ in range(count)]

    initializers = [
        tensor("fc1.weight", [HIDDEN, 784], uniform(HIDDEN * 784, (6 / 784) ** 0.5)),
        tensor("fc1.bias", [HIDDEN], uniform(HIDDEN, 0.01)),
        tensor("fc2.weight", [10, HIDDEN], uniform(10 * HIDDEN, (6 / HIDDEN) ** 0.5)),
        tensor("fc2.bias", [10], uniform(10, 0.01)),
    ]
    nodes = [
        node("Gemm", "fc1", ["x", "fc1.weight", "fc1.bias"], "h", trans_b=True),
        node("Relu", "relu1", ["h"], "a"),
        node("Gemm", "fc2", ["a", "fc2.weight", "fc2.bias"], "logits", trans_b=True),
        node("Softmax", "softmax", ["logits"], "probabilities"),
    ]
    # GraphProto: node=1, name=2, initializer=5, input=11, output=12
    graph = (b"".join(field_bytes(1, n) for n in nodes) + field_bytes(2, "mlp")
             + b"".join(field_bytes(5, t) for t in initializers)
             + field_bytes(11, value_info("x", [-1, 784])) + field_bytes(12, value_info("probabilities", [-1, 10])))
    # ModelProto: ir_version=1, producer_name=2, graph=7, opset_import=8 (OperatorSetIdProto: domain=1, version=2)
    return (field_varint(1, 7) + field_bytes(2, "compose-smoke") + field_bytes(7, graph)
            + field_bytes(8, field_bytes(1, "") + field_varint(2, 13)))


# --- the dataset ---------------------------------------------------------------------------------------------------
def blocks(count, rng):
    images, labels = bytearray(), []
    for _ in range(count):
        label = rng.randrange(10)
        top, left = (label // 4) * 7, (label % 4) * 7
        image = bytearray(rng.randrange(0, 90) for _ in range(784))
        for r in range(top, top + 7):
            for c in range(left, left + 7):
                image[r * 28 + c] = rng.randrange(150, 256)
        images += image
        labels.append(label)
    return bytes(images), struct.pack("<%dq" % count, *labels)


def npy(dtype, shape, data):
    shape_text = "(%d,)" % shape[0] if len(shape) == 1 else "(%s)" % ", ".join(map(str, shape))
    header = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (dtype, shape_text)
    header = header.ljust(len(header) + (64 - (10 + len(header) + 1) % 64) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + data


def npz(seed=11):
    rng = random.Random(seed)
    x_train, y_train = blocks(TRAIN, rng)
    x_test, y_test = blocks(TEST, rng)
    memory = io.BytesIO()
    with zipfile.ZipFile(memory, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("x_train.npy", npy("|u1", [TRAIN, 28, 28], x_train))
        archive.writestr("y_train.npy", npy("<i8", [TRAIN], y_train))
        archive.writestr("x_test.npy", npy("|u1", [TEST, 28, 28], x_test))
        archive.writestr("y_test.npy", npy("<i8", [TEST], y_test))
    return memory.getvalue()


# --- reading a result back ------------------------------------------------------------------------------------------
def fields(data):
    """Yields (number, wire type, value) of one protobuf message; value is an int or a bytes slice."""
    i = 0

    def read_varint():
        nonlocal i
        shift = result = 0
        while True:
            b = data[i]
            i += 1
            result |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return result

    while i < len(data):
        key = read_varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            yield number, wire, read_varint()
        elif wire == 2:
            length = read_varint()
            yield number, wire, data[i:i + length]
            i += length
        elif wire == 1:
            yield number, wire, data[i:i + 8]
            i += 8
        elif wire == 5:
            yield number, wire, data[i:i + 4]
            i += 4
        else:
            raise ValueError("unexpected protobuf wire type %d" % wire)


def nonzeros(path):
    with open(path, "rb") as f:
        model = f.read()
    graph = next(v for n, _, v in fields(model) if n == 7)
    counts = {}
    for number, _, value in fields(graph):
        if number != 5:
            continue
        name, data_type, raw = None, None, None
        for n, _, v in fields(value):
            if n == 8:
                name = bytes(v).decode()
            elif n == 2:
                data_type = v
            elif n == 9:
                raw = bytes(v)
        if data_type == 1 and raw is not None:
            values = struct.unpack("<%df" % (len(raw) // 4), raw)
            counts[name] = [sum(1 for v in values if v != 0.0), len(values)]
    return counts


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "make":
        with open(sys.argv[2] + "/mlp.onnx", "wb") as f:
            f.write(mlp())
        with open(sys.argv[2] + "/blocks.npz", "wb") as f:
            f.write(npz())
    elif len(sys.argv) == 3 and sys.argv[1] == "nonzeros":
        print(json.dumps(nonzeros(sys.argv[2])))
    else:
        sys.exit(__doc__)
