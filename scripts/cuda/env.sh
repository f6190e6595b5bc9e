# Sourced by scripts/gpu-check.sh (and usable by hand: `source scripts/cuda/env.sh BINARY`):
# puts the CUDA libraries of the NVIDIA pip packages (PyTorch's Python environment) on
# LD_LIBRARY_PATH so that BINARY (default .gpu/empirical) loads, and checks that it does.
#
# The binary needs libcuda.so.1 (the driver's, from the system), libcublas.so.13,
# libcublasLt.so.13, libcurand.so.10, libnvrtc.so.13, libcudart.so.13 (and libcudnn.so.9 for
# the cuDNN build), recorded by name at link time (candle's cudarc uses dynamic linking). The
# pip wheels keep them under site-packages/nvidia/cu13/lib (CUDA 13 wheels) or
# site-packages/nvidia/<library>/lib (older layouts), found here through `import nvidia`.
# GRANULARITY_CUDA_LIBS, when set, is used instead of that search. Where cuRAND alone is missing,
# .gpu/fallback (a stub that lets candle open the device and fails any generation call) is
# appended, with a warning.
_granularity_bin=${1:-.gpu/empirical}
_granularity_py=${PYTHON:-python3}
if [ -z "${GRANULARITY_CUDA_LIBS:-}" ]; then
    GRANULARITY_CUDA_LIBS=$("$_granularity_py" - <<'PY' 2>/dev/null || true
import os
try:
    import nvidia
except ImportError:
    raise SystemExit(0)
want = ("libcublas.so", "libcublasLt.so", "libcurand.so", "libnvrtc.so", "libcudart.so", "libcudnn.so")
dirs = []
for base in nvidia.__path__:
    for root, _, files in os.walk(base):
        if any(f.startswith(want) for f in files):
            dirs.append(root)
print(":".join(sorted(set(dirs))))
PY
)
fi
export GRANULARITY_CUDA_LIBS
export LD_LIBRARY_PATH=${GRANULARITY_CUDA_LIBS}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
if [ -e "$_granularity_bin" ] && ldd "$_granularity_bin" | grep -q "libcurand.so.10 => not found"; then
    echo "env.sh: WARNING: no libcurand.so.10 in the pip packages; using the stub in .gpu/fallback (candle opens the device with it; any random generation on the GPU fails loudly)" >&2
    export LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$PWD/.gpu/fallback
fi
# Prints what is still missing (nothing when the binary will load).
granularity_missing_libs() {
    ldd "${1:-$_granularity_bin}" 2>&1 | awk '/not found/ {print $1}'
}
