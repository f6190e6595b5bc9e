#!/usr/bin/env python3
"""Writes a subset of CIFAR-100 in the official binary format, small enough to travel to the GPU
machine (the device tool carries at most 64 MiB of the working tree).

  scripts/cuda/cifar_subset.py SRC DST [--train-per-class 100] [--test-per-class 50]

SRC is a CIFAR-100 binary folder (train.bin or train.bin.gz, test.bin or test.bin.gz,
fine_label_names.txt, coarse_label_names.txt); DST gets train.bin.gz, test.bin.gz (records of
3074 bytes: coarse label, fine label, 3072 pixel bytes) and the two names files. It keeps the
FIRST N records of every fine class in file order (the official files are already shuffled), so
the subset is a pure function of the source and N; a SUBSET.txt in DST records where it came
from. Nothing here is committed: DST belongs in an ignored folder (.gpu/).
"""
import argparse
import gzip
import os
import shutil
import sys

RECORD = 3074
FINE = 100


def read(folder, name):
    plain = os.path.join(folder, name + ".bin")
    if os.path.exists(plain):
        with open(plain, "rb") as f:
            return f.read(), plain
    gz = plain + ".gz"
    if os.path.exists(gz):
        with gzip.open(gz, "rb") as f:
            return f.read(), gz
    sys.exit(f"cifar_subset.py: neither {plain} nor {gz} exists")


def subset(data, source, per_class):
    if len(data) % RECORD:
        sys.exit(f"cifar_subset.py: {source} is {len(data)} bytes, not a multiple of {RECORD}")
    counts = [0] * FINE
    out = bytearray()
    for off in range(0, len(data), RECORD):
        coarse, fine = data[off], data[off + 1]
        if fine >= FINE or coarse >= 20:
            sys.exit(f"cifar_subset.py: {source}: record {off // RECORD} has labels {coarse}/{fine}")
        if counts[fine] < per_class:
            counts[fine] += 1
            out += data[off : off + RECORD]
    short = [c for c in range(FINE) if counts[c] < per_class]
    if short:
        sys.exit(f"cifar_subset.py: {source} has fewer than {per_class} images of fine classes {short[:5]}...")
    return bytes(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--train-per-class", type=int, default=100)
    ap.add_argument("--test-per-class", type=int, default=50)
    a = ap.parse_args()
    if a.train_per_class < 1 or a.test_per_class < 1:
        sys.exit("cifar_subset.py: --train-per-class and --test-per-class must be >= 1")
    os.makedirs(a.dst, exist_ok=True)
    for name in ("fine_label_names.txt", "coarse_label_names.txt"):
        p = os.path.join(a.src, name)
        if not os.path.exists(p):
            sys.exit(f"cifar_subset.py: {p} is missing")
        shutil.copyfile(p, os.path.join(a.dst, name))
    sizes = {}
    for split, n in (("train", a.train_per_class), ("test", a.test_per_class)):
        data, source = read(a.src, split)
        sub = subset(data, source, n)
        path = os.path.join(a.dst, split + ".bin.gz")
        tmp = path + ".tmp"
        with gzip.open(tmp, "wb", compresslevel=9) as f:
            f.write(sub)
        os.replace(tmp, path)
        sizes[split] = (len(sub) // RECORD, os.path.getsize(path))
    with open(os.path.join(a.dst, "SUBSET.txt"), "w") as f:
        f.write(
            f"CIFAR-100 subset of {os.path.abspath(a.src)}: the first {a.train_per_class} training "
            f"and {a.test_per_class} test images of every fine class, in file order.\n"
        )
    for split, (n, b) in sizes.items():
        print(f"{split}: {n} images, {b / 2**20:.1f} MiB compressed")


if __name__ == "__main__":
    main()
