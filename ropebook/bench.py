"""Benchmark ``rb.apply_rope`` against the Hugging Face eager formula: ``python -m ropebook.bench cpu``.

Two comparisons per shape and dtype, both under ``torch.no_grad()``:

- one call: ``rb.apply_rope(x)`` (angles formed in float64 inside the call) against Hugging Face's
  ``LlamaRotaryEmbedding`` (cos/sin) followed by its formula ``x·cos + rotate_half(x)·sin``;
- cached tables, q and k: ``rb.RotaryEmbedding(q, k)`` against ``apply_rotary_pos_emb(q, k, cos, sin)``
  with cos/sin computed once beforehand (how a model shares them across layers).

Timing: warm-up calls, then the two contenders alternate for ``--repeats`` rounds (so a noisy
neighbour slows both alike) and the median of each is reported. ``speedup`` is HF time / ours.
The ``gpu`` subcommand is the hook for the fused-kernel benchmark in ``ropebook.kernels``.

Chapter: ``ch-rope-gpu``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

import ropebook as rb

__all__ = ["main", "SHAPES"]

# (B, H, T, D), dtype: the Llama-7B-like head shape first
SHAPES = [
    ((1, 32, 2048, 128), torch.float32),
    ((1, 32, 2048, 128), torch.bfloat16),
    ((1, 32, 2048, 128), torch.float16),
    ((4, 8, 1024, 64), torch.float32),
    ((1, 32, 4096, 128), torch.bfloat16),
]


def _hf():
    """Hugging Face's rotary embedding and formula, or the same formula written out if transformers is absent."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from transformers import LlamaConfig
        from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb, rotate_half
    except ImportError:
        return None
    return LlamaConfig, LlamaRotaryEmbedding, apply_rotary_pos_emb, rotate_half


def _time_pair(fa, fb, *, repeats: int, warmup: int = 3, sync=lambda: None) -> tuple[float, float]:
    """Median milliseconds of fa and fb, run alternately."""
    for _ in range(warmup):
        fa(), fb()
    ta, tb = [], []
    for _ in range(repeats):
        for f, ts in ((fa, ta), (fb, tb)):
            sync()
            t0 = time.perf_counter()
            f()
            sync()
            ts.append(time.perf_counter() - t0)
    return statistics.median(ta) * 1e3, statistics.median(tb) * 1e3


def cpu(args: argparse.Namespace) -> int:
    """Print the CPU table (see the module docstring)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    hf = _hf()
    if hf is None:
        print("transformers is not installed: nothing to compare against", file=sys.stderr)
        return 1
    LlamaConfig, LlamaRotaryEmbedding, apply_rotary_pos_emb, rotate_half = hf
    print(f"ropebook.bench cpu: torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"median of {args.repeats} alternating runs, no_grad, times in ms")
    header = f"{'B,H,T,D':>16} {'dtype':>9} | {'HF call':>8} {'rb call':>8} {'speedup':>7} | {'HF q,k':>8} {'rb q,k':>8} {'speedup':>7}"
    print(header)
    print("-" * len(header))
    worst = float("inf")
    shapes = SHAPES[:2] if args.quick else SHAPES
    for (B, H, T, D), dtype in shapes:
        g = torch.Generator().manual_seed(0)
        q = torch.randn(B, H, T, D, generator=g).to(dtype)  # (B, H, T, D)
        k = torch.randn(B, H, T, D, generator=g).to(dtype)
        config = LlamaConfig(hidden_size=H * D, num_attention_heads=H, head_dim=D, max_position_embeddings=max(T, 2048))
        hf_rope, rb_rope = LlamaRotaryEmbedding(config), rb.RotaryEmbedding(D)
        position_ids = torch.arange(T)[None].expand(B, T)  # (B, T)

        def hf_call():
            cos, sin = hf_rope(q, position_ids)  # (B, T, D)
            return q * cos.unsqueeze(1) + rotate_half(q) * sin.unsqueeze(1)

        cos, sin = hf_rope(q, position_ids)
        with torch.no_grad():
            hf_ms, rb_ms = _time_pair(hf_call, lambda: rb.apply_rope(q), repeats=args.repeats)
            hf2_ms, rb2_ms = _time_pair(lambda: apply_rotary_pos_emb(q, k, cos, sin), lambda: rb_rope(q, k),
                                        repeats=args.repeats)
        worst = min(worst, hf_ms / rb_ms, hf2_ms / rb2_ms)
        name = str(dtype).removeprefix("torch.")
        print(f"{f'{B},{H},{T},{D}':>16} {name:>9} | {hf_ms:8.2f} {rb_ms:8.2f} {hf_ms / rb_ms:6.2f}x"
              f" | {hf2_ms:8.2f} {rb2_ms:8.2f} {hf2_ms / rb2_ms:6.2f}x")
    print(f"slowest speedup: {worst:.2f}x ({'never slower than HF' if worst >= 1 else 'SLOWER than HF somewhere'})")
    return 0


def gpu(args: argparse.Namespace) -> int:
    """Hook for the fused Triton kernel's benchmark: ``ropebook.kernels.bench.gpu(args)`` when it exists."""
    try:
        from ropebook.kernels import bench as kernel_bench
    except ModuleNotFoundError as e:  # ropebook.kernels needs Triton; any other missing module is a bug to see
        if e.name != "triton":
            raise
        print("ropebook.bench gpu: triton is not installed, so the kernel did not run: GPU numbers were NOT measured.")
        return 0
    return kernel_bench.gpu(args)


def linear(args: argparse.Namespace) -> int:
    """Causal linear against softmax attention as T grows: time(8n)/time(n) and the crossover (``ropebook.bench_linear``)."""
    from ropebook import bench_linear

    quick = ["--lengths", "64", "128", "256", "512", "1024", "--n", "128"] if args.quick else []
    return bench_linear.main(["--repeats", str(args.repeats), "--threads", str(args.threads or 1), *quick])


def decay(args: argparse.Namespace) -> int:
    """The decay bound (d=128, 4,096 distances) and the explorers' live redraw (``ropebook.bench_decay``)."""
    from ropebook import bench_decay

    return bench_decay.main(["bench", "--repeats", str(args.repeats)])


SUBCOMMANDS = {"cpu": cpu, "gpu": gpu, "linear": linear, "decay": decay}


def main(argv: list[str] | None = None) -> int:
    """Parse ``cpu``/``gpu`` and run it; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m ropebook.bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, fn in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=fn.__doc__.splitlines()[0])
        p.add_argument("--repeats", type=int, default=15, help="timed runs of each contender (median reported)")
        p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
        p.add_argument("--quick", action="store_true", help="only the first two shapes")
    args = parser.parse_args(argv)
    return SUBCOMMANDS[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
