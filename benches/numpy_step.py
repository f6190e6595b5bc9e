#!/usr/bin/env python3
"""One SGD step of the theory simulator's fine-label net in NumPy, written with care: the step
that `theory-sim bench` times in Rust (src/theory/bench.rs, src/theory/net/mod.rs), for the same
comparison in one process tree on one machine.

  d = 1024, P = 32, batch 128, 2 superclasses x 8 subclasses, m = 16 neurons per class
  (256 neurons), ReLU or smoothed ReLU (q, threshold t), fixed second layer, softmax
  cross-entropy, SGD on the first layer: Z = X W^T, dW = dZ^T X.

Written with care means: float32 throughout, every large array allocated once and written in
place (`out=`), the activation and its derivative from one clipped copy of Z (no `np.where`
chains), the fixed head as a reshape-and-sum (neurons of a class are contiguous), and the update
fused into W in place. The two matrix products are timed on their own inside the step, so the
share of the step outside them is known. Its BLAS threads follow OPENBLAS_NUM_THREADS (the
benchmark sets it to the Rust step's thread count).

Modes:
  --check IN OUT   reference step for the tests: read W, X, labels and settings from JSON, write
                   W after one step (the Rust test compares the two).
  --serve          wait for commands on stdin, for the interleaved benchmark: `pool N` or
                   `online N` runs N steps and prints one JSON line with per-step seconds (whole
                   step, its two products, the forward one alone, drawing the batch); `quit`
                   ends. `info` prints the
                   NumPy version and BLAS, and the seconds of one 2048^3 product.
Needs numpy (pip install numpy).
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


class Step:
    """The buffers of one step, allocated once."""

    def __init__(self, B, P, N, d, m, act):
        self.B, self.P, self.N, self.m = B, P, N, m
        self.kind = act["kind"]
        self.q = int(act.get("q", 3))
        self.t = np.float32(act.get("threshold", 1.0))
        f = np.float32
        self.Z = np.empty((B * P, N), f)
        self.C = np.empty((B * P, N), f)  # derivative, then dL/dZ
        self.A = np.empty((B * P, N), f)  # activation
        self.G = np.empty((N, d), f)
        self.products_s = 0.0
        self.forward_s = 0.0

    def __call__(self, W, X, y, lr):
        """One SGD step: updates W (N x d) in place from X (B*P x d) and labels y."""
        B, P, N, m = self.B, self.P, self.N, self.m
        Z, C, A = self.Z, self.C, self.A
        t0 = time.perf_counter()
        np.matmul(X, W.T, out=Z)
        t1 = time.perf_counter()
        if self.kind == "relu":
            np.maximum(Z, 0, out=A)
            np.greater(Z, 0, out=C)  # 1.0 / 0.0 in float32
        else:
            # clip(z, 0, t) gives every piece: derivative (c/t)^(q-1) (0 below 0, 1 above t),
            # activation (c/t)^(q-1) c/q + max(z - t, 0)
            t, q = self.t, self.q
            np.clip(Z, 0, t, out=A)
            np.multiply(A, 1 / t, out=C)
            if q == 2:
                pass
            elif q == 3:
                np.multiply(C, C, out=C)
            else:
                np.power(C, q - 1, out=C)
            np.multiply(A, C, out=A)
            A *= np.float32(1 / q)
            np.subtract(Z, t, out=Z)
            np.maximum(Z, 0, out=Z)
            A += Z
        H = A.reshape(B, P, N).sum(axis=1)
        logits = H.reshape(B, N // m, m).sum(axis=2)
        logits -= logits.max(axis=1, keepdims=True)
        np.exp(logits, out=logits)
        logits /= logits.sum(axis=1, keepdims=True)
        logits[np.arange(B), y] -= 1
        logits *= np.float32(1 / B)
        # dL/dZ = act'(Z) * dL/dF of the neuron's class, broadcast over patches and the class's
        # m neurons
        C3 = C.reshape(B, P, N // m, m)
        C3 *= logits[:, None, :, None]
        t2 = time.perf_counter()
        np.matmul(C.T, X, out=self.G)
        t3 = time.perf_counter()
        self.G *= np.float32(lr)
        W -= self.G
        self.products_s += (t1 - t0) + (t3 - t2)
        self.forward_s += t1 - t0


def check(path_in, path_out):
    with open(path_in) as f:
        a = json.load(f)
    W = np.array(a["w"], dtype=np.float32)
    X = np.array(a["x"], dtype=np.float32)
    y = np.array(a["labels"], dtype=np.int64)
    N, d = W.shape
    step = Step(len(y), a["patches"], N, d, a["neurons"], a["activation"])
    step(W, X, y, a["lr"])
    with open(path_out, "w") as f:
        json.dump({"w": W.astype(float).tolist()}, f)


def orthonormal(n, d, rng):
    q, _ = np.linalg.qr(rng.standard_normal((d, n)))
    return q.T.astype(np.float32)


def blas_name():
    try:
        cfg = np.show_config(mode="dicts")
        b = cfg["Build Dependencies"]["blas"]
        return f"{b.get('name', '?')} {b.get('version', '')}".strip()
    except Exception:  # older NumPy
        return "unknown BLAS"


def serve(a):
    d, P, B, k, m = a.dim, a.patches, a.batch, a.subclasses, a.neurons
    S = 2
    K = S * k
    n_feat = S + K
    common_p, fine_p = 4, 2
    noise, gamma, fn_prob = 0.3, 0.05, 0.1
    lr = 1e-3
    act = {"kind": a.activation, "q": a.q, "threshold": a.t}
    rng = np.random.default_rng(0)
    feats = orthonormal(n_feat, d, rng)
    N = K * m
    W = rng.standard_normal((N, d), dtype=np.float32) * np.float32(0.02)
    sd = np.float32(noise / np.sqrt(d))
    step = Step(B, P, N, d, m, act)
    Xb = np.empty((B, P, d), np.float32)

    def draw(n, out=None):
        s = rng.integers(0, S, n)
        leaf = s * k + rng.integers(0, k, n)
        x = out if out is not None else np.empty((n, P, d), np.float32)
        rng.standard_normal(out=x, dtype=np.float32)
        x *= sd
        alpha = rng.uniform(0.9, 1.1, (n, common_p + fine_p)).astype(np.float32)
        x[:, :common_p, :] += alpha[:, :common_p, None] * feats[s][:, None, :]
        x[:, common_p:common_p + fine_p, :] += alpha[:, common_p:, None] * feats[S + leaf][:, None, :]
        rest = P - common_p - fine_p
        mask = rng.random((n, rest)) < fn_prob
        other = rng.integers(0, n_feat, (n, rest))
        i, j = np.nonzero(mask)
        x[i, common_p + fine_p + j, :] += np.float32(gamma) * feats[other[i, j]]
        return x, leaf

    PX, Py = draw(a.pool)
    PX = PX.reshape(a.pool, P * d)
    XB = Xb.reshape(B, P * d)
    for line in sys.stdin:
        cmd = line.split()
        if not cmd or cmd[0] == "quit":
            break
        if cmd[0] == "info":
            big = 2048
            A = rng.standard_normal((big, big), dtype=np.float32)
            Bm = rng.standard_normal((big, big), dtype=np.float32)
            A @ Bm
            t0 = time.perf_counter()
            A @ Bm
            print(json.dumps({"numpy": np.__version__, "blas": blas_name(),
                              "sgemm_2048_s": time.perf_counter() - t0}), flush=True)
            continue
        mode, n = cmd[0], int(cmd[1])
        steps, prods, fwds, samp = [], [], [], []
        for _ in range(n):
            step.products_s = 0.0
            step.forward_s = 0.0
            t0 = time.perf_counter()
            if mode == "online":
                _, y = draw(B, Xb)
                t1 = time.perf_counter()
                step(W, Xb.reshape(B * P, d), y, lr)
            else:
                j = rng.integers(0, a.pool, B)
                np.take(PX, j, axis=0, out=XB)
                y = Py[j]
                t1 = t0
                step(W, Xb.reshape(B * P, d), y, lr)
            t2 = time.perf_counter()
            steps.append(t2 - t0)
            prods.append(step.products_s)
            fwds.append(step.forward_s)
            samp.append(t1 - t0)
        print(json.dumps({"step_s": steps, "products_s": prods, "forward_s": fwds,
                          "sampling_s": samp}), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--patches", type=int, default=32)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--subclasses", type=int, default=8)
    ap.add_argument("--neurons", type=int, default=16)
    ap.add_argument("--pool", type=int, default=1024)
    ap.add_argument("--activation", choices=["relu", "smoothed_relu"], default="smoothed_relu")
    ap.add_argument("--q", type=int, default=3)
    ap.add_argument("--t", type=float, default=1.0)
    ap.add_argument("--serve", action="store_true")
    ap.add_argument("--check", nargs=2, metavar=("IN", "OUT"), help="reference step for the tests")
    a = ap.parse_args()
    if a.check:
        check(*a.check)
    elif a.serve:
        serve(a)
    else:
        ap.error("give --serve (benchmark worker) or --check IN OUT (test reference)")


if __name__ == "__main__":
    main()
