#!/usr/bin/env python3
"""Chooses the model, seeds and epochs of the GPU study so that it fits a time budget.

  plan_study.py SPEED_JSON BUDGET_S TRAIN_IMAGES [--conditions 5] [--min-arch resnet8]

SPEED_JSON is the report of `empirical gpu-check speed --json` (images/s of a whole training
step per architecture and batch); the study trains at batch 128 (the measurement at the batch
closest to 128 is used). The cost model: every seed trains `conditions` networks (the baseline
and one pretraining per granularity) for pretrain + finetune epochs over TRAIN_IMAGES images,
times OVERHEAD for evaluation, probes, data loading, augmentation and the host-side optimizer
(a guess: in the CPU dry run the study ran 3.5x slower than the bare step at batch 16).
Rule (fewer conditions trained to a plateau over many undertrained ones): the wider ResNet-18
only if it reaches TARGET epochs per run with one seed, else ResNet-20; then as many seeds (up
to 3) as keep TARGET epochs per run; epochs per run are capped at CAP; a quarter of them
fine-tune. Prints `--set` arguments for `empirical`, one per line, and a comment line with the
plan on stderr.
"""
import argparse
import json
import sys

OVERHEAD = 2.5
TARGET = 40
CAP = 60
MIN_EPOCHS = 4


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("speed_json")
    ap.add_argument("budget_s", type=float)
    ap.add_argument("train_images", type=int)
    ap.add_argument("--conditions", type=int, default=5)
    a = ap.parse_args()
    with open(a.speed_json) as f:
        results = json.load(f)["results"]
    speed = {}
    for r in results:
        best = speed.get(r["arch"])
        if best is None or abs(r["batch"] - 128) < abs(best[0] - 128):
            speed[r["arch"]] = (r["batch"], r["images_per_s"])
    if not speed:
        sys.exit("plan_study.py: no measurement in " + a.speed_json)

    def epochs_total(arch):
        return a.budget_s * speed[arch][1] / (a.train_images * OVERHEAD)

    arch = "resnet18" if "resnet18" in speed and epochs_total("resnet18") / a.conditions >= TARGET else None
    if arch is None:
        arch = "resnet20" if "resnet20" in speed else max(speed, key=lambda k: speed[k][1])
    total = epochs_total(arch)
    seeds = max(1, min(3, int(total // (a.conditions * TARGET))))
    per_run = min(CAP, int(total // (a.conditions * seeds)))
    per_run = max(per_run, MIN_EPOCHS)
    finetune = max(1, round(per_run / 4))
    pretrain = per_run - finetune
    width = 64 if arch == "resnet18" else 16
    print(
        f"plan: {arch} at {speed[arch][1]:.0f} images/s (batch {speed[arch][0]}), budget "
        f"{a.budget_s:.0f} s -> {total:.0f} epochs of {a.train_images} images: {seeds} seed(s) x "
        f"{a.conditions} runs x ({pretrain} + {finetune}) epochs",
        file=sys.stderr,
    )
    for s in (
        f'model.arch="{arch}"',
        f"model.width={width}",
        f"seeds={list(range(seeds))}",
        f"train.pretrain_epochs={pretrain}",
        f"train.finetune_epochs={finetune}",
    ):
        print("--set")
        print(s)


if __name__ == "__main__":
    main()
