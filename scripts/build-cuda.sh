#!/usr/bin/env bash
# Builds the CUDA binaries of `empirical` on a machine WITHOUT a GPU or NVIDIA driver, for a GPU
# machine (sm_90: H100/H200) that has the driver and the CUDA 13 libraries as pip packages.
#
#   scripts/build-cuda.sh            # .gpu/empirical and .gpu/empirical-cudnn
#   scripts/build-cuda.sh --no-cudnn # .gpu/empirical only
#
# What it does (see docs/cuda.md for why):
# 1. Installs the build-time CUDA 13.0 toolkit pieces from NVIDIA's PyPI wheels (nvcc, headers,
#    and the libraries to link against) into $GRANULARITY_CUDA_TOOLS (default
#    ~/.cache/granularity/cuda-13.0), unless they are already there. About 1.2 GB (+ cuDNN). CUDA 13.0, not newer: candle's kernels are embedded as PTX, which the driver
#    compiles at start-up and which a driver older than the toolkit that wrote it refuses; 13.0
#    PTX loads on every CUDA 13 driver.
# 2. Makes a link folder: unversioned names (libcublas.so -> libcublas.so.13, ...) for the
#    linker, and a stub libcuda.so (SONAME libcuda.so.1) generated from cuda.h, because the
#    driver library is not a pip package. candle 0.11 turns on cudarc's `dynamic-linking`, so
#    the binary records libcuda.so.1, libcublas.so.13, libcublasLt.so.13, libcurand.so.10,
#    libnvrtc.so.13 and libcudart.so.13 (and libcudnn.so.9) as needed libraries, found at run
#    time through LD_LIBRARY_PATH (scripts/cuda/env.sh) and the driver's own libcuda.so.1.
# 3. Builds `empirical` with --features cuda (and cuda,cudnn) in target/cuda (a separate target
#    folder, so that target/release keeps the CPU binary), strips it into .gpu/, prints sizes,
#    and packs the binaries for the GPU machine (.gpu/*.xz, scripts/cuda/pack.sh).
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
# cuDNN in a folder of its own: `pip install --target` does not merge into an existing nvidia/.
CUDNN_LIB=$TOOLS/cudnn/nvidia/cudnn/lib
if [ "$CUDNN" = 1 ] && [ ! -e "$CUDNN_LIB/libcudnn.so.9" ]; then
    need_space
    echo "== installing cuDNN headers and library into $TOOLS/cudnn"
    python3 -m pip install --quiet --no-deps --target "$TOOLS/cudnn" "$CUDNN_WHEEL"
fi

# The link folder: unversioned names for `-l` and the driver stub.
LINK=$TOOLS/link
mkdir -p "$LINK"
for l in cublas:13 cublasLt:13 curand:10 nvrtc:13 cudart:13; do
    ln -sf "$CU/lib/lib${l%%:*}.so.${l##*:}" "$LINK/lib${l%%:*}.so"
done
if [ -e "$CUDNN_LIB/libcudnn.so.9" ]; then
    ln -sf "$CUDNN_LIB/libcudnn.so.9" "$LINK/libcudnn.so"
fi
if [ ! -e "$LINK/libcuda.so.1" ] || [ scripts/cuda/stub.py -nt "$LINK/libcuda.so.1" ]; then
    echo "== generating the link-time libcuda stub from cuda.h"
    cc -E -P -I"$CU/include" "$CU/include/cuda.h" > "$LINK/cuda.i"
    # 34 = CUDA_ERROR_STUB_LIBRARY, what NVIDIA's own stub returns.
    python3 scripts/cuda/stub.py --quiet "$LINK/cuda.i" cu '*=34' > "$LINK/cuda-stub.c"
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
    # The real library's symbols carry the version node libcurand.so.10; so do the stub's.
    echo 'libcurand.so.10 { global: *; };' > "$LINK/curand.map"
    cc -shared -fPIC -O1 -Wl,-soname,libcurand.so.10 -Wl,--version-script="$LINK/curand.map" \
        -o .gpu/fallback/libcurand.so.10 "$LINK/curand-stub.c"
fi

export CUDA_HOME=$CU
export PATH=$CU/bin:$PATH
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
export CUDARC_CUDA_VERSION=13000
# LIBRARY_PATH reaches the linker (cc) without changing cargo's fingerprints.
export LIBRARY_PATH=$LINK${LIBRARY_PATH:+:$LIBRARY_PATH}
# Include paths for nvcc: cuRAND's and CCCL's headers live beside the toolkit's.
export CPATH=$CU/include${CPATH:+:$CPATH}

# candle-kernels links libmoe.a: its quantized (GGUF) and mixture-of-experts kernels compiled to
# machine code, 33 MB of the binary, which this crate never calls. After the first build the
# archive is replaced (in candle-kernels' build folder) by host stubs of the same C functions
# that abort with a message, and the binary is linked again; the GPU kernels that training uses
# are the PTX modules, untouched.
stub_moe() {
    local relink=1 lib names
    for lib in target/cuda/release/build/candle-kernels-*/out/libmoe.a; do
        [ -e "$lib" ] || continue
        # (no `grep -q`: with pipefail, nm's SIGPIPE would read as "not found")
        if nm -g --defined-only "$lib" 2>/dev/null | grep granularity_moe_stub > /dev/null; then continue; fi
        names=$(nm -g --defined-only "$lib" 2>/dev/null | awk '$2 == "T" && $3 !~ /^_Z/ {print $3}' | sort -u)
        [ -n "$names" ] || { echo "build-cuda.sh: no C functions in $lib" >&2; exit 1; }
        {
            echo '/* Generated by scripts/build-cuda.sh: stubs of candle-kernels libmoe.a. */'
            echo '#include <stdio.h>'
            echo '#include <stdlib.h>'
            echo 'int granularity_moe_stub;'
            echo 'static void die(const char *f) { fprintf(stderr, "granularity: %s (quantized/MoE CUDA kernel) is not in this build (scripts/build-cuda.sh)\n", f); abort(); }'
            for n in $names; do echo "void $n(void) { die(\"$n\"); }"; done
        } > "$LINK/moe-stub.c"
        cc -c -O1 -fPIC -o "$LINK/moe-stub.o" "$LINK/moe-stub.c"
        mv "$lib" "${lib%.a}.full.a"
        ar rcs "$lib" "$LINK/moe-stub.o"
        echo "== replaced $lib ($(echo "$names" | wc -l) functions) by stubs"
        relink=0
    done
    return $relink
}

build() { # FEATURES OUTPUT
    echo "== cargo build --release --features $1 (target/cuda)"
    nice -n 5 cargo build --release --features "$1" --bin empirical --target-dir target/cuda
    # Link again where the binary still holds the real libmoe.a (cargo relinks a missing output).
    if stub_moe || [ "$(size -A target/cuda/release/empirical | awk '$1 == ".nv_fatbin" {print $2}')" -gt 1000000 ] 2>/dev/null; then
        rm -f target/cuda/release/empirical target/cuda/release/deps/empirical-*
        nice -n 5 cargo build --release --features "$1" --bin empirical --target-dir target/cuda
    fi
    strip -o ".gpu/$2" target/cuda/release/empirical
    echo "$(du -h ".gpu/$2" | cut -f1) .gpu/$2"
}
build cuda empirical
if [ "$CUDNN" = 1 ]; then
    build cuda,cudnn empirical-cudnn
fi

echo "== needed libraries of .gpu/empirical:"
readelf -d .gpu/empirical | awk '/NEEDED/ {print "   ", $NF}'
# The stripped binaries are about 15.8 MB (cuda) and 16.0 MB (cuda,cudnn), a little over the
# 15 MB target (PTX 5.7 MB, code 8.5 MB); they travel xz-compressed, and what travels must fit
# the device tool's 64 MiB with the CIFAR-100 subset.
for b in .gpu/empirical .gpu/empirical-cudnn; do
    [ -e "$b" ] || continue
    size=$(stat -c %s "$b")
    if [ "$size" -ge $((15 * 1000 * 1000)) ]; then
        echo "build-cuda.sh: note: $b is $size bytes stripped, over the 15 MB target"
    fi
done
scripts/cuda/pack.sh
carry=$(du -bc .gpu/*.xz .gpu/fallback .gpu/cifar100-subset 2>/dev/null | tail -n 1 | cut -f1)
if [ "$carry" -gt $((64 * 1024 * 1024)) ]; then
    echo "build-cuda.sh: what travels is $carry bytes, over the 64 MiB the device tool carries" >&2
    exit 1
fi
echo "built; try it here with: scripts/gpu-check.sh /tmp/gpu-dry-run --dry-run"
