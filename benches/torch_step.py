#!/usr/bin/env python3
"""One training step of the CIFAR ResNets of src/empirical/model.rs in PyTorch, the step that
`empirical bench` times in Rust (src/empirical/bench/):

  ResNet-8 / ResNet-20 (3 stages, width 16, option-B shortcuts: 1x1 conv + BN where the shape
  changes) or ResNet-18 (CIFAR stem, width 64), bias-free convolutions, BatchNorm in training
  mode, global average pooling, a linear head with 10 classes; random N(0, 1) inputs of
  shape (batch, 3, 32, 32) and random labels; cross-entropy; SGD with momentum 0.9 and weight
  decay 5e-4.

The step is timed in NCHW and in channels_last memory format, with torch.set_num_threads(N), on
the CPU or, with --device cuda, on the first GPU (each step ends with torch.cuda.synchronize()).
Prints one line `RESULT {json}` with images/s per format (keys nchw, channels_last, torch,
threads, arch, batch, device). Without PyTorch (or without a GPU for --device cuda) it prints
why and a RESULT line with an "error" key, and exits with status 0.

With --serve it builds both models, runs the warm-up steps, prints `READY {json}` and then
runs one step per line read from stdin (`nchw` or `channels_last`), answering `TIME seconds`,
until `quit` or end of input: `empirical bench` uses this to interleave PyTorch's steps with
its own, so that other load on the machine hits both alike.
"""
import argparse
import json
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="resnet20", choices=["resnet8", "resnet20", "resnet18"])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--serve", action="store_true")
    args = ap.parse_args()
    try:
        import torch
        import torch.nn as nn
        import torch.nn.functional as F
    except ImportError:
        print("PyTorch not installed")
        print("RESULT " + json.dumps({"arch": args.arch, "error": "PyTorch not installed"}))
        return 0

    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device for PyTorch")
        print("RESULT " + json.dumps({"arch": args.arch, "error": "PyTorch sees no CUDA device"}))
        return 0
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.shortcut = None
            if stride != 1 or cin != cout:
                self.shortcut = nn.Sequential(
                    nn.Conv2d(cin, cout, 1, stride, 0, bias=False), nn.BatchNorm2d(cout)
                )

        def forward(self, x):
            h = F.relu(self.bn1(self.conv1(x)))
            h = self.bn2(self.conv2(h))
            s = x if self.shortcut is None else self.shortcut(x)
            return F.relu(h + s)

    class ResNet(nn.Module):
        def __init__(self, stages, width, classes=10):
            super().__init__()
            self.conv = nn.Conv2d(3, width, 3, 1, 1, bias=False)
            self.bn = nn.BatchNorm2d(width)
            blocks, cin = [], width
            for s, n in enumerate(stages):
                cout = width << s
                for b in range(n):
                    blocks.append(Block(cin, cout, 2 if s > 0 and b == 0 else 1))
                    cin = cout
            self.blocks = nn.Sequential(*blocks)
            self.head = nn.Linear(cin, classes)

        def forward(self, x):
            h = F.relu(self.bn(self.conv(x)))
            h = self.blocks(h)
            return self.head(h.mean((2, 3)))

    stages, width = {
        "resnet8": ([1, 1, 1], 16),
        "resnet20": ([3, 3, 3], 16),
        "resnet18": ([2, 2, 2, 2], 64),
    }[args.arch]

    def make_step(channels_last):
        model = ResNet(stages, width).to(device)
        x = torch.randn(args.batch, 3, 32, 32, device=device)
        y = torch.randint(0, 10, (args.batch,), device=device)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
        model.train()

        def step():
            sync()
            t = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            sync()
            return time.perf_counter() - t

        for _ in range(args.warmup):
            step()
        return step

    def median(v):
        v = sorted(v)
        n = len(v)
        return v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])

    info = {
        "arch": args.arch,
        "batch": args.batch,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": args.device,
    }
    if args.serve:
        steps = {"nchw": make_step(False), "channels_last": make_step(True)}
        print("READY " + json.dumps(info), flush=True)
        for line in sys.stdin:
            cmd = line.strip()
            if cmd == "quit":
                break
            if cmd not in steps:
                print("ERROR unknown command " + cmd, flush=True)
                continue
            print("TIME %.9f" % steps[cmd](), flush=True)
        return 0

    out = dict(info)
    for key, cl in (("nchw", False), ("channels_last", True)):
        step = make_step(cl)
        out[key] = args.batch / median([step() for _ in range(args.steps)])
    print("RESULT " + json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
