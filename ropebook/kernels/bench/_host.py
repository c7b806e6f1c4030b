"""The host's side of a decoding call (up to the GPU launch, on any machine), and what the benchmark does
without CUDA."""

from __future__ import annotations

import importlib.util
import os
import platform
import subprocess
import sys
import time

import torch

from . import _config
from ._config import DECODE_B, HK, HQ, OPERATOR_ROW, D, moved_bytes


def host_to_launch_us(batches: int = 30, calls: int = 200) -> dict:
    """Host time of a decoding step's call (B=64, our head counts, bf16, offsets per sequence), up to the
    GPU launch: the launcher records the launch instead of making it (``rope_triton._capture``), so this
    runs on CPU tensors, with or without a GPU, and leaves out only Triton's launch itself. ``first``: the
    call's signature is new (the plan cache emptied before every call: all checks, all of the launch's
    arithmetic); ``repeat``: seen before (``ropebook.kernels.autograd``'s plans). The last row calls the
    custom operator as code compiled by ``torch.compile`` does, through PyTorch's dispatcher
    (``ropebook.kernels.op``; its body keeps plans too). Microseconds a call, the fastest of ``batches``
    batches of ``calls`` calls (the least disturbed by the rest of the machine)."""
    from ropebook import kernels as K
    from ropebook.kernels import autograd, op, rope_triton

    q = torch.randn(DECODE_B, 1, HQ, D, dtype=torch.bfloat16).transpose(1, 2)  # (B, H, 1, D) views, as benchmarked
    k = torch.randn(DECODE_B, 1, HK, D, dtype=torch.bfloat16).transpose(1, 2)
    cache = K.rope_cache(D, max_positions=4096)
    offsets = torch.randint(0, 4095, (DECODE_B,), dtype=torch.int32)
    c, s = cache.cos[offsets.long()][:, None], cache.sin[offsets.long()][:, None]  # (B, 1, D/2)
    c_hf, s_hf = torch.cat((c, c), -1).bfloat16(), torch.cat((s, s), -1).bfloat16()  # Hugging Face's (B, 1, D)
    cases = {
        "rope_qk, angles=table": lambda: K.rope_qk(q, k, cache, offsets=offsets, angles="table"),
        "rope_qk, angles=kernel": lambda: K.rope_qk(q, k, cache, offsets=offsets, angles="kernel"),
        "rope_qk, angles=table, in place": lambda: K.rope_qk(q, k, cache, offsets=offsets, angles="table", inplace=True),
        "rope_qk_cos_sin": lambda: K.rope_qk_cos_sin(q, k, c, s),
        "hf_apply_rotary_pos_emb": lambda: K.hf_apply_rotary_pos_emb(q, k, c_hf, s_hf),
        # what code compiled by torch.compile calls in each layer: the operator, through PyTorch's dispatcher
        OPERATOR_ROW: lambda: torch.ops.ropebook.rope.default(q, k, cache.cos, cache.sin, None, None, offsets, None,
                                                              D // 2, "half", 1.0, 0, None, False),
    }
    out = {name: {"first": float("inf"), "repeat": float("inf")} for name in cases}
    before, rope_triton._capture = rope_triton._capture, []
    try:
        with torch.no_grad():
            for _ in range(batches):  # round-robin: a slow spell of the machine spreads over every row
                for name, call in cases.items():
                    for kind in ("first", "repeat"):
                        autograd._plans.clear()
                        op._plans.clear()
                        call()  # a first call (its signature new); every repeat below finds its plan
                        t0 = time.perf_counter()
                        for _ in range(calls):
                            if kind == "first":
                                autograd._plans.clear()
                                op._plans.clear()
                            call()
                            rope_triton._capture.clear()
                        out[name][kind] = min(out[name][kind], (time.perf_counter() - t0) / calls * 1e6)
    finally:
        rope_triton._capture = before
        autograd._plans.clear()
        op._plans.clear()
    return out


def _print_host_to_launch(rows: dict) -> None:
    print(f"\nhost µs a decoding call, up to the launch (this machine's CPU: {_cpu_name()})")
    print(f"{'call':<36} {'first':>8} {'repeat':>8}")
    for name, r in rows.items():
        print(f"{name:<36} {r['first']:8.1f} {r['repeat']:8.1f}")


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def _cpu_part(args) -> int:
    print("ropebook.bench gpu: no CUDA device here: GPU numbers were NOT measured.")
    for name, B, T in _config.shapes(args.quick):
        print(f"  {name:>16}: q+k read+write = {moved_bytes(B, T) / 1e6:8.2f} MB")
    if importlib.util.find_spec("triton") is None:
        print("triton is not installed: the kernel was not run.")
        return 0
    _print_host_to_launch(host_to_launch_us(batches=10 if args.quick else 30))
    code = ("import torch, ropebook as rb; from ropebook import kernels as K; q, k = torch.randn(1, 4, 5, 16), torch.randn(1, 2, 5, 16);"
            "a, b = K.rope_qk(q, k, K.rope_cache(16), offsets=7);"
            "torch.testing.assert_close(a, rb.apply_rope(q, offset=7)); torch.testing.assert_close(b, rb.apply_rope(k, offset=7));"
            "print('kernel under TRITON_INTERPRET=1 agrees with rb.apply_rope on a (1, 4, 5, 16) input')")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    return subprocess.run([sys.executable, "-c", code], env=env).returncode
