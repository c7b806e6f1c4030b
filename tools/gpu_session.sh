#!/usr/bin/env bash
# The GPU measurements behind ch-rope-gpu's tables, one stage per call: each stage fits in ten
# minutes, the most one command may run on a lent GPU machine (../.library/device). Run in the
# repository root of a CUDA machine whose Python has torch, triton and transformers; that machine
# reaches no package index, so Liger-Kernel comes from a wheel and flash-attn's Triton rotary kernel
# from its source file, both carried in .whl/ (ignored by git):
#
#   .whl/liger_kernel-0.8.5-py3-none-any.whl
#   .whl/fa/flash_attn_rotary.py     (flash_attn/ops/triton/rotary.py of the flash-attn 2.8.3.post2 sdist)
#
# Usage: bash tools/gpu_session.sh STAGE, with $OUT the folder whose files come back
#   fetch           on a machine that reaches PyPI (not the GPU one): fills .whl/ as above, then
#                   carry .whl to the GPU machine with the other stages (the device tool's `carry`)
#   tests           tests/test_kernels.py, test_kernels_hf.py, test_kernel_bench.py natively -> $OUT/tests.log
#   bench           python -m ropebook.bench gpu, every contender and case     -> $OUT/gpu_bench.json, bench.log
#   sweep CASES     the kernel's tile and angle sweep for CASES (decode, T=1024, T=16384; comma-separated)
#                   -> $OUT/gpu_sweep.json (rows of the other cases kept from book/data/gpu_sweep.json)
#
# Then copy the files over book/data/, rebuild the rope-gpu page and read what its guarded cells say:
# some fail on purpose when new data lands, so that the prose is rewritten from it.
set -euo pipefail
cd "$(dirname "$0")/.."
stage=${1:?"usage: bash tools/gpu_session.sh fetch|tests|bench|sweep CASES"}
python=${PYTHON:-python3}

if [ "$stage" = fetch ]; then  # the two contenders' files, by the versions the committed data names
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    "$python" -m pip download -q --no-deps -d "$tmp" liger_kernel==0.8.5
    # the sdist's metadata step imports its setup.py, which compiles CUDA code unless told not to
    FLASH_ATTENTION_SKIP_CUDA_BUILD=TRUE "$python" -m pip download -q --no-deps --no-binary :all: --no-build-isolation \
        -d "$tmp" flash-attn==2.8.3.post2
    mkdir -p .whl/fa
    cp "$tmp/liger_kernel-0.8.5-py3-none-any.whl" .whl/
    tar -xzf "$tmp/flash_attn-2.8.3.post2.tar.gz" -C "$tmp" flash_attn-2.8.3.post2/flash_attn/ops/triton/rotary.py
    cp "$tmp/flash_attn-2.8.3.post2/flash_attn/ops/triton/rotary.py" .whl/fa/flash_attn_rotary.py
    sha256sum .whl/liger_kernel-0.8.5-py3-none-any.whl .whl/fa/flash_attn_rotary.py
    exit 0
fi

out=${OUT:?"OUT must name the folder whose files come back"}
mkdir -p "$out"

"$python" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: these stages measure a GPU')"
site=/tmp/site  # (the committed data's recorded command names it)
if [ ! -d "$site/liger_kernel" ]; then
    "$python" -m pip install -q --no-deps --no-index --target "$site" .whl/liger_kernel-0.8.5-py3-none-any.whl
fi
export PYTHONPATH="$site:$PWD" HF_HUB_OFFLINE=1
export ROPEBOOK_FLASH_ROTARY=.whl/fa/flash_attn_rotary.py ROPEBOOK_FLASH_ROTARY_VERSION=2.8.3.post2-sdist-file
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv | tee "$out/device.txt"

case "$stage" in
    tests)
        "$python" -m pytest -q -p no:cacheprovider tests/test_kernels.py tests/test_kernels_hf.py tests/test_kernel_bench.py 2>&1 | tee "$out/tests.log"
        ;;
    bench)
        ROPEBOOK_BENCH_COMMAND="PYTHONPATH=$site:\$PWD HF_HUB_OFFLINE=1 ROPEBOOK_FLASH_ROTARY=$ROPEBOOK_FLASH_ROTARY \
ROPEBOOK_FLASH_ROTARY_VERSION=$ROPEBOOK_FLASH_ROTARY_VERSION ROPEBOOK_BENCH_JSON=\$OUT/gpu_bench.json python3 -m ropebook.bench gpu \
(tools/gpu_session.sh bench)" ROPEBOOK_BENCH_JSON="$out/gpu_bench.json" "$python" -m ropebook.bench gpu 2>&1 | tee "$out/bench.log"
        ;;
    sweep)
        cases=${2:?"sweep needs its cases, say decode or T=1024"}
        cp book/data/gpu_sweep.json "$out/gpu_sweep.json"  # the sweep keeps the rows of cases it does not run
        ROPEBOOK_BENCH_SWEEP=only ROPEBOOK_SWEEP_CASES="$cases" ROPEBOOK_SWEEP_JSON="$out/gpu_sweep.json" \
            "$python" -m ropebook.bench gpu 2>&1 | tee "$out/sweep.log"
        ;;
    *)
        echo "unknown stage '$stage': fetch, tests, bench or sweep CASES" >&2
        exit 2
        ;;
esac
