#!/usr/bin/env bash
# The GPU check, in one command on the GPU machine (under 8 minutes), writing everything to OUTDIR:
#
#   scripts/gpu-check.sh OUTDIR            # on the GPU machine (needs .gpu/ from build-cuda.sh
#                                          # and .gpu/cifar100-subset from cifar_subset.py)
#   scripts/gpu-check.sh OUTDIR --dry-run  # here, on the CPU: every step with tiny sizes
#
# 1. environment: nvidia-smi, the libraries the binary loads (scripts/cuda/env.sh), versions;
#    a GPU index that does not exist must be refused with a clear error;
# 2. agreement: `empirical gpu-check agree` (ResNet-20, batch 32: CPU fast kernels vs the GPU:
#    logits, loss, every gradient, the SGD update, checkpoints moved both ways; tolerance 1e-3)
#    for the plain CUDA build and the cuDNN build;
# 3. speed: `empirical gpu-check speed` (ResNet-20 and ResNet-18, batch 128 and 512) for both
#    builds, and `benches/torch_step.py --device cuda` for the same models and batches;
# 4. study: scripts/cuda/gpu-study.toml on the CIFAR-100 subset (baseline, coarse-20, fine-100,
#    random-aligned-100, per-sample) with the model, seeds and epochs that
#    scripts/cuda/plan_study.py fits into the time left (about 5 minutes), results in
#    OUTDIR/study (to be committed under plots/empirical/).
# OUTDIR/SUMMARY.md collects the outcome of every step; a failed step does not stop the others.
# Exit status: 0 when every step passed, 1 otherwise.
set -uo pipefail
cd "$(dirname "$0")/.."

OUT=${1:?usage: scripts/gpu-check.sh OUTDIR [--dry-run]}
DRY=0
[ "${2:-}" = "--dry-run" ] && DRY=1
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
START=$(date +%s)
DEADLINE=$((START + ${GPU_CHECK_SECONDS:-465}))
PY=${PYTHON:-python3}
SUMMARY=$OUT/SUMMARY.md
FAILED=0

if [ "$DRY" = 1 ]; then
    # The CPU stands in for the GPU: tiny sizes, the same commands. With .gpu/empirical built,
    # the CUDA binaries themselves run (on --device cpu), loading the link-time driver stub.
    DEV=cpu
    TORCH_DEV=cpu
    AGREE=(--arch resnet20 --batch 32)
    SPEED=(--arch resnet8,resnet20 --batch 8,16 --steps 1 --warmup 1)
    TORCH_ARCHS="resnet8 resnet20" TORCH_BATCHES="8 16" TORCH_STEPS=1
    STUDY_BUDGET=60
    STUDY_EXTRA=(--set data.train_per_leaf=4 --set data.test_per_leaf=2 --set train.probe.epochs=2)
    PLAN_IMAGES=400
    STUB=${GRANULARITY_CUDA_TOOLS:-$HOME/.cache/granularity/cuda-13.0}/link
    [ -e "$STUB/libcuda.so.1" ] && export LD_LIBRARY_PATH=$STUB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
else
    DEV=cuda:0
    TORCH_DEV=cuda
    AGREE=(--arch resnet20 --batch 32 --tolerance 1e-3)
    SPEED=(--arch resnet20,resnet18 --batch 128,512 --steps 10 --warmup 3)
    TORCH_ARCHS="resnet20 resnet18" TORCH_BATCHES="128 512" TORCH_STEPS=10
    STUDY_BUDGET=300
    STUDY_EXTRA=()
    PLAN_IMAGES=
fi
# The binaries travel xz-compressed (.gpu/*.xz, written by build-cuda.sh): unpack them once.
UNPACK=${TMPDIR:-/tmp}/granularity-gpu
for b in empirical empirical-cudnn; do
    if [ ! -e ".gpu/$b" ] && [ -e ".gpu/$b.xz" ]; then
        mkdir -p "$UNPACK"
        if [ ! -x "$UNPACK/$b" ] || [ ".gpu/$b.xz" -nt "$UNPACK/$b" ]; then
            "${PYTHON:-python3}" -c "import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], 'wb'))" ".gpu/$b.xz" "$UNPACK/$b"
            chmod +x "$UNPACK/$b"
        fi
    fi
done
[ -e .gpu/empirical ] || [ ! -e "$UNPACK/empirical" ] || BIN=${BIN:-$UNPACK/empirical}
[ -e .gpu/empirical-cudnn ] || [ ! -e "$UNPACK/empirical-cudnn" ] || BIN_CUDNN=${BIN_CUDNN:-$UNPACK/empirical-cudnn}
BIN=${BIN:-.gpu/empirical}
BIN_CUDNN=${BIN_CUDNN:-.gpu/empirical-cudnn}
DATA=${DATA:-.gpu/cifar100-subset}
if [ "$DRY" = 1 ] && [ ! -e "$BIN" ]; then
    BIN=target/release/empirical
fi

say() { echo "$*" | tee -a "$SUMMARY"; }
left() { echo $((DEADLINE - $(date +%s))); }
# run NAME SECONDS CMD...: runs CMD with a time limit, output to OUT/NAME.log; records the outcome.
run() {
    local name=$1 limit=$2
    shift 2
    local t0=$(date +%s)
    timeout --kill-after=5 "$limit" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    local dt=$(($(date +%s) - t0))
    if [ $rc = 0 ]; then
        say "- $name: ok (${dt} s)"
    else
        [ $rc = 124 ] && rc="timeout after ${limit} s"
        say "- $name: FAILED ($rc, ${dt} s); last lines of $name.log:"
        tail -n 5 "$OUT/$name.log" | sed 's/^/      /' | tee -a "$SUMMARY"
        FAILED=1
    fi
    return 0
}

: > "$SUMMARY"
say "# GPU check $(date -u +%Y-%m-%dT%H:%M:%SZ)$([ "$DRY" = 1 ] && echo ' (dry run on the CPU)')"
say ""
say "binary: $BIN; device: $DEV; commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"

# 1. Environment.
source scripts/cuda/env.sh "$BIN"
{
    echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
    nvidia-smi 2>&1 || echo "no nvidia-smi"
    for b in "$BIN" "$BIN_CUDNN"; do [ -e "$b" ] && { echo "== ldd $b"; ldd "$b"; }; done
    "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())" 2>&1
    nvcc --version 2>&1 | tail -n 2
} > "$OUT/env.log" 2>&1
missing=$(granularity_missing_libs "$BIN")
if [ -n "$missing" ]; then
    say "- libraries: MISSING for $BIN: $(echo $missing) (see env.log; set GRANULARITY_CUDA_LIBS to their folder)"
    FAILED=1
else
    say "- libraries: every needed library of $BIN found"
fi
HAVE_CUDNN=0
if [ -e "$BIN_CUDNN" ]; then
    if [ -z "$(granularity_missing_libs "$BIN_CUDNN")" ]; then HAVE_CUDNN=1; else
        say "- cudnn build: libraries missing: $(granularity_missing_libs "$BIN_CUDNN" | tr '\n' ' ')"
    fi
fi
# A GPU that is not there must be refused clearly.
if [ "$DRY" = 1 ]; then COUNT=0; else COUNT=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true); fi
"$BIN" --device "cuda:$COUNT" gpu-check speed > "$OUT/missing-gpu.log" 2>&1
rc=$?
if [ $rc != 0 ] && grep -qE "no GPU $COUNT|without CUDA support|cannot open the GPU" "$OUT/missing-gpu.log"; then
    say "- --device cuda:$COUNT (not there): refused: $(grep -m1 -E 'Error|error' "$OUT/missing-gpu.log" | cut -c1-200)"
else
    say "- --device cuda:$COUNT (not there): NOT refused as expected (exit $rc; see missing-gpu.log)"
    FAILED=1
fi

# 2. Agreement, 3. speed, for each build.
for variant in cuda cudnn; do
    b=$BIN
    if [ $variant = cudnn ]; then
        [ "$HAVE_CUDNN" = 1 ] || { say "- $variant: skipped (no loadable $BIN_CUDNN)"; continue; }
        b=$BIN_CUDNN
    fi
    run "agree-$variant" 120 "$b" --device "$DEV" gpu-check agree "${AGREE[@]}" --json "$OUT/agree-$variant.json"
    run "speed-$variant" 150 "$b" --device "$DEV" gpu-check speed "${SPEED[@]}" --json "$OUT/speed-$variant.json"
done

# PyTorch on the same device, same models and batches.
if "$PY" benches/torch_step.py --help 2>/dev/null | grep -q -- "--device"; then
    : > "$OUT/torch.jsonl"
    for a in $TORCH_ARCHS; do
        for bs in $TORCH_BATCHES; do
            run "torch-$a-$bs" 90 "$PY" benches/torch_step.py --device "$TORCH_DEV" --arch "$a" \
                --batch "$bs" --steps "$TORCH_STEPS" --warmup 3 --threads "$(nproc)"
            grep -h '^RESULT ' "$OUT/torch-$a-$bs.log" | sed 's/^RESULT //' >> "$OUT/torch.jsonl"
        done
    done
else
    say "- torch: SKIPPED: benches/torch_step.py has no --device option"
    FAILED=1
fi

# 4. The study, in the time left.
budget=$(($(left) - 30))
[ "$budget" -gt "$STUDY_BUDGET" ] && budget=$STUDY_BUDGET
if [ ! -e "$DATA/train.bin.gz" ] && [ ! -e "$DATA/train.bin" ]; then
    say "- study: SKIPPED: no CIFAR-100 subset in $DATA (scripts/cuda/cifar_subset.py)"
    FAILED=1
elif [ "$budget" -lt 20 ]; then
    say "- study: SKIPPED: only $budget s left"
    FAILED=1
else
    train_images=${PLAN_IMAGES:-}
    [ -n "$train_images" ] || train_images=$("$PY" -c "import gzip,os,sys; p=sys.argv[1]; d=open(p,'rb').read() if p.endswith('.bin') else gzip.open(p).read(); print(len(d)//3074)" \
        "$( [ -e "$DATA/train.bin" ] && echo "$DATA/train.bin" || echo "$DATA/train.bin.gz")")
    speed_json=$OUT/speed-cuda.json
    if [ -e "$speed_json" ] && mapfile -t PLAN < <("$PY" scripts/cuda/plan_study.py "$speed_json" "$budget" "$train_images" 2>> "$SUMMARY"); then
        :
    else
        PLAN=()
        say "  (no speed measurement: the study runs the defaults of scripts/cuda/gpu-study.toml)"
    fi
    # The study stops at the deadline; finished runs are kept and reported.
    run study $((budget + 15)) "$BIN" --device "$DEV" "${PLAN[@]}" "${STUDY_EXTRA[@]}" \
        study scripts/cuda/gpu-study.toml --data "$DATA" --out "$OUT/study" --fresh
    if [ ! -e "$OUT/study/summary.json" ] && [ -d "$OUT/study" ]; then
        "$BIN" plot "$OUT/study" >> "$OUT/study.log" 2>&1 || say "  (no finished run to report)"
    fi
    # Checkpoints of runs cut off by the deadline: only for resuming, and large (ResNet-18).
    rm -rf "$OUT/study/checkpoints"
fi

# The tables, for the README.
{
    echo
    for v in cuda cudnn; do
        [ -e "$OUT/agree-$v.log" ] && { echo "## agreement ($v build)"; echo; sed -n '/comparisons/,$p' "$OUT/agree-$v.log"; echo; }
        [ -e "$OUT/speed-$v.json" ] && { echo "## speed ($v build)"; echo; sed -n '/^| model/,$p' "$OUT/speed-$v.log"; echo; }
    done
    if [ -s "$OUT/torch.jsonl" ]; then
        echo "## PyTorch ($TORCH_DEV)"
        echo
        cat "$OUT/torch.jsonl"
        echo
    fi
    [ -e "$OUT/study.log" ] && { echo "## study"; echo; tail -n 30 "$OUT/study.log"; }
} >> "$SUMMARY"
say ""
say "total $(($(date +%s) - START)) s; $([ $FAILED = 0 ] && echo 'every step passed' || echo 'SOME STEPS FAILED')"
exit $FAILED
