#!/usr/bin/env python3
"""One SGD step of the theory simulator's fine-label net in NumPy, exactly the step that
`theory-sim bench` times in Rust (src/theory/bench.rs, src/theory/net.rs):

  d = 1024, P = 32, batch 128, 2 superclasses x 8 subclasses, m = 16 neurons per class
  (256 neurons), smoothed ReLU (q = 3, threshold 1), fixed second layer, softmax
  cross-entropy, SGD on the first layer: Z = X W^T, dW = dZ^T X.

Online mode draws a fresh batch every step (Gaussian noise for every patch, features added
to the common / fine / feature-noise patches); pool mode gathers a random batch from a
fixed pool. Prints a table, or one JSON line with --json. Needs numpy (pip install numpy).
"""
import argparse
import json
import sys
import time

try:
    import numpy as np
except ImportError:
    print("numpy is not installed: pip install numpy", file=sys.stderr)
    sys.exit(2)


def sgd_step(W, X, y, B, P, m, K, q, t, lr):
    """One SGD step of the two-layer conv net (smoothed ReLU, fixed second layer, softmax
    cross-entropy averaged over the batch); returns the new W. X is (B*P, d), W is (K*m, d)."""
    N = W.shape[0]
    cls_of_neuron = np.arange(N) // m
    Z = X @ W.T  # (B*P, N)
    pos = Z > 0
    lin = Z > t
    r = np.where(pos & ~lin, Z / t, 0).astype(np.float32)
    act = np.where(lin, Z - (1 - 1 / q) * t, np.where(pos, r ** (q - 1) * Z / q, 0)).astype(np.float32)
    dact = np.where(lin, 1, np.where(pos, r ** (q - 1), 0)).astype(np.float32)
    H = act.reshape(B, P, N).sum(axis=1)
    logits = np.zeros((B, K), dtype=np.float32)
    np.add.at(logits.T, cls_of_neuron, H.T)
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(B), y] -= 1
    g = (p / B).astype(np.float32)
    gH = g[:, cls_of_neuron]  # (B, N)
    dZ = dact.reshape(B, P, N) * gH[:, None, :]
    return W - np.float32(lr) * (dZ.reshape(B * P, N).T @ X)


def check(path_in, path_out):
    """Reference mode for the tests: read W, X, labels and settings from JSON, write W after
    one step."""
    with open(path_in) as f:
        a = json.load(f)
    W = np.array(a["w"], dtype=np.float32)
    X = np.array(a["x"], dtype=np.float32)
    y = np.array(a["labels"], dtype=np.int64)
    W2 = sgd_step(W, X, y, len(y), a["patches"], a["neurons"], a["classes"], a["q"], a["t"], a["lr"])
    with open(path_out, "w") as f:
        json.dump({"w": W2.astype(float).tolist()}, f)


def orthonormal(n, d, rng):
    q, _ = np.linalg.qr(rng.standard_normal((d, n)))
    return q.T.astype(np.float32)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--patches", type=int, default=32)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--subclasses", type=int, default=8)
    ap.add_argument("--neurons", type=int, default=16)
    ap.add_argument("--pool", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--check", nargs=2, metavar=("IN", "OUT"), help="reference step for the tests")
    a = ap.parse_args()
    if a.check:
        check(*a.check)
        return
    d, P, B, k, m = a.dim, a.patches, a.batch, a.subclasses, a.neurons
    S = 2
    K = S * k
    n_feat = S + K
    common_p, fine_p = 4, 2
    noise, gamma, fn_prob = 0.3, 0.05, 0.1
    q, t = 3, 1.0
    lr = np.float32(1e-3)
    rng = np.random.default_rng(0)
    feats = orthonormal(n_feat, d, rng)
    N = K * m
    W = (rng.standard_normal((N, d), dtype=np.float32) * np.float32(0.02))
    sd = np.float32(noise / np.sqrt(d))

    def draw(n):
        s = rng.integers(0, S, n)
        leaf = s * k + rng.integers(0, k, n)
        x = rng.standard_normal((n, P, d), dtype=np.float32) * sd
        alpha = rng.uniform(0.9, 1.1, (n, common_p + fine_p)).astype(np.float32)
        x[:, :common_p, :] += alpha[:, :common_p, None] * feats[s][:, None, :]
        x[:, common_p:common_p + fine_p, :] += alpha[:, common_p:, None] * feats[S + leaf][:, None, :]
        rest = P - common_p - fine_p
        mask = rng.random((n, rest)) < fn_prob
        other = rng.integers(0, n_feat, (n, rest))
        idx = np.nonzero(mask)
        x[:, common_p + fine_p:, :][idx] += np.float32(gamma) * feats[other[idx]]
        return x.reshape(n * P, d), leaf

    def step(X, y):
        nonlocal W
        W = sgd_step(W, X, y, B, P, m, K, q, t, lr)

    def timed(fn, steps):
        for _ in range(3):
            fn()
        t0 = time.perf_counter()
        for _ in range(steps):
            fn()
        return (time.perf_counter() - t0) / steps

    samp = [0.0]

    def online():
        t0 = time.perf_counter()
        X, y = draw(B)
        samp[0] += time.perf_counter() - t0
        step(X, y)

    per_online = timed(online, a.steps)
    sampling = samp[0] / (a.steps + 3)
    PX, Py = draw(a.pool)
    PX = PX.reshape(a.pool, P * d)

    def pooled():
        j = rng.integers(0, a.pool, B)
        step(PX[j].reshape(B * P, d), Py[j])

    per_pool = timed(pooled, a.steps)
    big = 2048
    A = rng.standard_normal((big, big), dtype=np.float32)
    Bm = rng.standard_normal((big, big), dtype=np.float32)
    per_mm = timed(lambda: A @ Bm, 3)
    res = {
        "numpy": np.__version__,
        "sgemm_gflops": 2.0 * big ** 3 / per_mm / 1e9,
        "online_steps_per_s": 1.0 / per_online,
        "pool_steps_per_s": 1.0 / per_pool,
        "online_sampling_s": sampling,
    }
    if a.json:
        print(json.dumps(res))
    else:
        for k_, v in res.items():
            print(f"{k_:22} {v}")


if __name__ == "__main__":
    main()
