"""Time causal linear attention against causal softmax attention as T grows: ``python -m ropebook.bench_linear``.

All run under ``torch.no_grad()`` on the same (B, H, T, D) inputs, with RoPE
(``lrpe.Rotation``) on queries and keys: ``attention.linear_attention``
(chunked, O(T)); ``attention.softmax_attention``, the book's reference, which
builds the T×T scores, masks them and takes their softmax (O(T²) time and
memory); and PyTorch's fused ``scaled_dot_product_attention`` on the rotated q
and k (``"sdpa"``: O(T²) time, no T×T tensor in Python), the softmax attention
a model actually calls. For each length: a warm-up call, then the three alternate for ``repeats`` rounds
(a noisy neighbour slows both alike) and the fastest call is kept (as ``timeit``
does). With one thread (the default) the clock is the thread's CPU time
(``time.thread_time``): on a machine shared with other processes, wall-clock time
also counts the time slices the scheduler gave to them, which inflates long calls
more than short ones and so the ratio below. With several threads it is
wall-clock time. Printed: the
times, time(8n)/time(n) for linear attention (≈ 8 when linear, 64 when
quadratic; the two lengths alternate call by call) and the crossovers, the first
measured T from which linear attention is faster than each softmax attention.

Chapter: ``ch-linear-attention``.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import time

import torch
import torch.nn.functional as F

from ropebook import lrpe
from ropebook.attention import linear_attention, softmax_attention

__all__ = ["IMPLEMENTATIONS", "time_attention", "crossover", "scaling_ratio", "main"]

IMPLEMENTATIONS = {  # the keys of time_attention's result, and what each times
    "linear": "linear attention (chunked, O(T))",
    "softmax": "softmax attention, the book's reference (T×T scores, O(T²))",
    "sdpa": "softmax attention, PyTorch's fused scaled_dot_product_attention (O(T²))",
}


@contextlib.contextmanager
def _threads(n: int | None):
    """Run the body with ``torch.set_num_threads(n)`` (None: leave it), then restore the old value."""
    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _clock(threads):
    """CPU time of this thread when torch runs on it alone, else wall-clock time."""
    return time.thread_time if threads == 1 else time.perf_counter


def time_attention(lengths, *, batch: int = 1, heads: int = 4, head_dim: int = 64, repeats: int = 5,
                   chunk_size: int = 64, seed: int = 0, threads: int | None = 1) -> dict:
    """Fastest-of-``repeats`` seconds of causal linear, reference softmax and fused softmax attention (with RoPE).

    ``threads=1`` (the default) times one CPU thread by its CPU time, which is far
    steadier on a shared machine; None keeps torch's threads and uses wall-clock time.

    Returns ``{"lengths": [...], "linear": [...], "softmax": [...], "sdpa": [...], "shape": ...}``, a time for
    each length under each of the three (``IMPLEMENTATIONS``).

    >>> r = time_attention([16, 32], repeats=1, heads=1, head_dim=8)
    >>> sorted(r), len(r["sdpa"])
    (['chunk_size', 'clock', 'lengths', 'linear', 'sdpa', 'shape', 'softmax', 'threads'], 2)
    """
    lengths = [int(t) for t in lengths]
    if not lengths or any(t <= 0 for t in lengths) or repeats <= 0:
        raise ValueError(f"time_attention: lengths must be positive and repeats ≥ 1, got lengths={lengths}, repeats={repeats}")
    enc = lrpe.Rotation(head_dim)
    g = torch.Generator().manual_seed(seed)
    clock = _clock(threads)
    out = {"lengths": lengths, **{name: [] for name in IMPLEMENTATIONS}, "shape": [batch, heads, None, head_dim],
           "chunk_size": chunk_size, "threads": threads, "clock": clock.__name__}
    with torch.no_grad(), _threads(threads):
        for T in lengths:
            q, k, v = torch.randn(3, batch, heads, T, head_dim, generator=g).unbind(0)  # (B, H, T, D) each
            positions = torch.arange(T)  # (T,)
            fns = {"linear": lambda: linear_attention(q, k, v, causal=True, encoding=enc, chunk_size=chunk_size),
                   "softmax": lambda: softmax_attention(q, k, v, causal=True, encoding=enc),
                   "sdpa": lambda: F.scaled_dot_product_attention(enc(q, positions), enc(k, positions), v, is_causal=True)}
            times = {name: [] for name in fns}
            for fn in fns.values():
                fn()  # warm-up
            for _ in range(repeats):
                for name, fn in fns.items():
                    t0 = clock()
                    fn()
                    times[name].append(clock() - t0)
            for name in fns:
                out[name].append(min(times[name]))
    return out


def crossover(result: dict, against: str = "softmax") -> int | None:
    """The first measured length from which linear attention is faster than ``against`` (``"softmax"``, the
    reference, or ``"sdpa"``, the fused one) at every longer length, or None.

    A single noisy point where linear attention happens to win (at a short length)
    does not count: the crossover is where softmax attention stops winning.

    >>> crossover({"lengths": [1, 2, 4, 8], "linear": [1.0, 3.0, 3.0, 3.0], "softmax": [2.0, 1.0, 4.0, 9.0]})
    4
    """
    if against not in ("softmax", "sdpa"):
        raise ValueError(f"crossover: against must be 'softmax' or 'sdpa', got against={against!r}")
    found = None
    for T, lin, soft in zip(result["lengths"], result["linear"], result[against]):
        if lin < soft:
            found = T if found is None else found
        else:
            found = None
    return found


def scaling_ratio(n: int, *, factor: int = 8, batch: int = 1, heads: int = 4, head_dim: int = 64,
                  repeats: int = 9, chunk_size: int = 64, seed: int = 0, threads: int | None = 1) -> float:
    """time(factor·n) / time(n) for causal linear attention with RoPE: ≈ factor when linear in T.

    The two lengths alternate call by call (a noisy neighbour slows both alike) and
    the fastest of ``repeats`` calls of each is kept.

    >>> scaling_ratio(16, factor=2, repeats=1, heads=1, head_dim=8) > 0
    True
    """
    if n <= 0 or factor <= 0 or repeats <= 0:
        raise ValueError(f"scaling_ratio: n, factor and repeats must be positive, got n={n}, factor={factor}, repeats={repeats}")
    enc = lrpe.Rotation(head_dim)
    g = torch.Generator().manual_seed(seed)
    inputs = [torch.randn(3, batch, heads, T, head_dim, generator=g).unbind(0) for T in (n, factor * n)]  # (B, H, T, D)
    best = [math.inf, math.inf]
    clock = _clock(threads)
    with torch.no_grad(), _threads(threads):
        for i in range(repeats + 1):  # the first round is a warm-up
            for j, (q, k, v) in enumerate(inputs):
                t0 = clock()
                linear_attention(q, k, v, causal=True, encoding=enc, chunk_size=chunk_size)
                if i:
                    best[j] = min(best[j], clock() - t0)
    return best[1] / best[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ropebook.bench_linear", description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=512, help="the n in time(8n)/time(n)")
    parser.add_argument("--lengths", type=int, nargs="+", default=[64, 128, 256, 512, 1024, 2048, 4096])
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--chunk-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    args = parser.parse_args(argv)
    kw = dict(heads=args.heads, head_dim=args.head_dim, repeats=args.repeats, chunk_size=args.chunk_size,
              threads=args.threads or None)
    r = time_attention(args.lengths, **kw)
    print(f"causal attention with RoPE, (B, H, T, D) = (1, {args.heads}, T, {args.head_dim}), "
          f"{args.threads or torch.get_num_threads()} thread(s), fastest of {args.repeats}, clock: {r['clock']}")
    for name, what in IMPLEMENTATIONS.items():
        print(f"  {name:<8} {what}")
    print(f"{'T':>7} {'linear ms':>10} {'softmax ms':>11} {'sdpa ms':>9}")
    for T, lin, soft, sdpa in zip(r["lengths"], r["linear"], r["softmax"], r["sdpa"]):
        print(f"{T:>7} {lin * 1e3:>10.2f} {soft * 1e3:>11.2f} {sdpa * 1e3:>9.2f}")
    for against in ("softmax", "sdpa"):
        c = crossover(r, against)
        print(f"{against} crossover: linear attention is faster from T = {c}" if c else
              f"{against} crossover: not reached up to T = {r['lengths'][-1]}")
    ratio = scaling_ratio(args.n, factor=8, **{**kw, "repeats": max(args.repeats, 9)})
    print(f"linear attention time(8n)/time(n) at n = {args.n}: {ratio:.2f} (linear: 8, quadratic: 64; target ≤ 9)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
