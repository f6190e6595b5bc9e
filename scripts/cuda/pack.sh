#!/usr/bin/env bash
# Compresses the stripped CUDA binaries of .gpu/ with xz (.gpu/NAME.xz) so that they travel to
# the GPU machine beside the CIFAR-100 subset within the 64 MiB the device tool carries;
# scripts/gpu-check.sh unpacks them there. Prints what travels.
set -euo pipefail
cd "$(dirname "$0")/../.."
for b in .gpu/empirical .gpu/empirical-cudnn; do
    [ -e "$b" ] || continue
    python3 -c "import lzma, shutil, sys; shutil.copyfileobj(open(sys.argv[1], 'rb'), lzma.open(sys.argv[2], 'wb', preset=9))" "$b" "$b.xz.tmp"
    mv "$b.xz.tmp" "$b.xz"
done
echo "carry: .gpu/empirical.xz .gpu/empirical-cudnn.xz .gpu/fallback .gpu/cifar100-subset"
du -bc .gpu/*.xz .gpu/fallback .gpu/cifar100-subset 2>/dev/null | awk '{printf "%8.1f MiB %s\n", $1 / 1048576, $2}'
