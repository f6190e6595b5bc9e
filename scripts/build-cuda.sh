#!/usr/bin/env bash
# Builds the CUDA binaries of `empirical` on a machine WITHOUT a GPU or NVIDIA driver, for a GPU
# machine (sm_90: H100/H200) that has the driver and the CUDA 13 libraries as pip packages.
#
#   scripts/build-cuda.sh            # .gpu/empirical and .gpu/empirical-cudnn
#   scripts/build-cuda.sh --no-cudnn # .gpu/empirical only
#
# What it does (see the README's "CUDA" section for why):
# 1. Installs the build-time CUDA 13.0 toolkit pieces from NVIDIA's PyPI wheels (nvcc, headers,
#    and the libraries to link against) into $GRANULARITY_CUDA_TOOLS (default
#    ~/.cache/granularity/cuda-13.0), unless they are already there. About 1.2 GB (+0.9 GB for
#    cuDNN). CUDA 13.0, not newer: candle's kernels are embedded as PTX, which the driver
#    compiles at start-up and which a driver older than the toolkit that wrote it refuses; 13.0
#    PTX loads on every CUDA 13 driver.
# 2. Makes a link folder: unversioned names (libcublas.so -> libcublas.so.13, ...) for the
#    linker, and a stub libcuda.so (SONAME libcuda.so.1) generated from cuda.h, because the
#    driver library is not a pip package. candle 0.11 turns on cudarc's `dynamic-linking`, so
#    the binary records libcuda.so.1, libcublas.so.13, libcublasLt.so.13, libcurand.so.10,
#    libnvrtc.so.13 and libcudart.so.13 (and libcudnn.so.9) as needed libraries, found at run
#    time through LD_LIBRARY_PATH (scripts/cuda/env.sh) and the driver's own libcuda.so.1.
# 3. Builds `empirical` with --features cuda (and cuda,cudnn) in target/cuda (a separate target
#    folder, so that target/release keeps the CPU binary), strips it into .gpu/, prints sizes.
# 4. Builds .gpu/fallback/libcurand.so.10, a stub used only where the GPU machine lacks cuRAND
#    (candle creates a generator when it opens a device; this crate draws no random numbers on
#    the GPU; any generation call in the stub fails loudly).
set -euo pipefail
cd "$(dirname "$0")/.."

CUDNN=1
for a in "$@"; do
    case "$a" in
        --no-cudnn) CUDNN=0 ;;
        -h | --help) sed -n '2,30p' "$0"; exit 0 ;;
        *) echo "build-cuda.sh: unknown argument $a" >&2; exit 2 ;;
    esac
done

TOOLS=${GRANULARITY_CUDA_TOOLS:-$HOME/.cache/granularity/cuda-13.0}
CU=$TOOLS/nvidia/cu13
# The pinned wheels: CUDA 13.0 toolkit pieces and the libraries of that release.
WHEELS=(nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88
    nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85 nvidia-curand==10.4.0.35
    nvidia-cublas==13.0.2.14 nvidia-cuda-nvrtc==13.0.88)
CUDNN_WHEEL=nvidia-cudnn-cu13==9.21.1.3

need_space() {
    local avail
    avail=$(df -Pk "$(dirname "$TOOLS")" | awk 'NR==2 {print $4}')
    if [ "$avail" -lt $((3 * 1024 * 1024)) ]; then
        echo "build-cuda.sh: less than 3 GB free under $(dirname "$TOOLS"); free some or set GRANULARITY_CUDA_TOOLS" >&2
        exit 1
    fi
}

mkdir -p "$(dirname "$TOOLS")"
if [ ! -x "$CU/bin/nvcc" ] || [ ! -e "$CU/lib/libcurand.so.10" ]; then
    need_space
    echo "== installing the CUDA 13.0 build tools into $TOOLS"
    python3 -m pip install --quiet --no-deps --target "$TOOLS" "${WHEELS[@]}"
fi
if [ "$CUDNN" = 1 ] && [ ! -e "$TOOLS/nvidia/cudnn/lib/libcudnn.so.9" ]; then
    need_space
    echo "== installing cuDNN headers and library into $TOOLS"
    python3 -m pip install --quiet --no-deps --target "$TOOLS" "$CUDNN_WHEEL"
fi

# The link folder: unversioned names for `-l` and the driver stub.
LINK=$TOOLS/link
mkdir -p "$LINK"
for l in cublas:13 cublasLt:13 curand:10 nvrtc:13 cudart:13; do
    ln -sf "$CU/lib/lib${l%%:*}.so.${l##*:}" "$LINK/lib${l%%:*}.so"
done
if [ -e "$TOOLS/nvidia/cudnn/lib/libcudnn.so.9" ]; then
    ln -sf "$TOOLS/nvidia/cudnn/lib/libcudnn.so.9" "$LINK/libcudnn.so"
fi
if [ ! -e "$LINK/libcuda.so.1" ] || [ scripts/cuda/stub.py -nt "$LINK/libcuda.so.1" ]; then
    echo "== generating the link-time libcuda stub from cuda.h"
    cc -E -P -I"$CU/include" "$CU/include/cuda.h" > "$LINK/cuda.i"
    # 34 = CUDA_ERROR_STUB_LIBRARY, what NVIDIA's own stub returns.
    python3 scripts/cuda/stub.py "$LINK/cuda.i" cu '*=34' > "$LINK/cuda-stub.c"
    cc -shared -fPIC -O1 -Wl,-soname,libcuda.so.1 -o "$LINK/libcuda.so.1" "$LINK/cuda-stub.c"
    ln -sf libcuda.so.1 "$LINK/libcuda.so"
fi

mkdir -p .gpu/fallback
if [ ! -e .gpu/fallback/libcurand.so.10 ] || [ scripts/cuda/stub.py -nt .gpu/fallback/libcurand.so.10 ]; then
    echo "== generating the fallback cuRAND stub"
    cc -E -P -I"$CU/include" "$CU/include/curand.h" > "$LINK/curand.i"
    # 999 = CURAND_STATUS_INTERNAL_ERROR for every generation call; creating, seeding, binding
    # to a stream and destroying a generator succeed (what opening a candle device does).
    python3 scripts/cuda/stub.py "$LINK/curand.i" curand '*=999' curandCreateGenerator=0p \
        curandSetPseudoRandomGeneratorSeed=0 curandSetStream=0 curandDestroyGenerator=0 \
        curandSetGeneratorOffset=0 curandSetGeneratorOrdering=0 > "$LINK/curand-stub.c"
    cc -shared -fPIC -O1 -Wl,-soname,libcurand.so.10 -o .gpu/fallback/libcurand.so.10 "$LINK/curand-stub.c"
fi

export CUDA_HOME=$CU
export PATH=$CU/bin:$PATH
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
export CUDARC_CUDA_VERSION=13000
# LIBRARY_PATH reaches the linker (cc) without changing cargo's fingerprints.
export LIBRARY_PATH=$LINK${LIBRARY_PATH:+:$LIBRARY_PATH}
# Include paths for nvcc: cuRAND's and CCCL's headers live beside the toolkit's.
export CPATH=$CU/include${CPATH:+:$CPATH}

build() { # FEATURES OUTPUT
    echo "== cargo build --release --features $1 (target/cuda)"
    nice -n 5 cargo build --release --features "$1" --bin empirical --target-dir target/cuda
    strip -o ".gpu/$2" target/cuda/release/empirical
    echo "$(du -h ".gpu/$2" | cut -f1) .gpu/$2"
}
build cuda empirical
if [ "$CUDNN" = 1 ]; then
    build cuda,cudnn empirical-cudnn
fi

echo "== needed libraries of .gpu/empirical:"
readelf -d .gpu/empirical | awk '/NEEDED/ {print "   ", $NF}'
for b in .gpu/empirical .gpu/empirical-cudnn; do
    [ -e "$b" ] || continue
    size=$(stat -c %s "$b")
    if [ "$size" -ge $((15 * 1000 * 1000)) ]; then
        echo "build-cuda.sh: $b is $size bytes, over the 15 MB that may travel" >&2
        exit 1
    fi
done
echo "built; run scripts/cuda/selftest.sh to try the binary here (CPU paths, stub driver)"
