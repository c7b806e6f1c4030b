"""Time the decay bound and the explorers' live redraw; write the base-bound table: ``python -m ropebook.bench_decay``.

Subcommands:

- ``bench`` (default): ``rb.decay_bound`` for d = 128 over 4,096 distances (target < 20 ms)
  and one live redraw of each explorer after a slider change (target < 150 ms). Medians
  over ``--repeats`` runs after a warm-up, on the CPU.
- ``table --out book/data/min_base.json``: ``rb.min_base`` for context lengths 2^10 … 2^17
  (d = 128), with the settings used, for the chapter to plot.

Chapter: ``ch-long-term-decay``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy as np

__all__ = ["bench", "table", "main"]

TABLE_LENGTHS = [2**p for p in range(10, 18)]  # 1,024 … 131,072


def _median_ms(fn, repeats: int) -> tuple[float, float]:
    """Median wall-clock and CPU (this process) milliseconds per call, after one warm-up call.

    On a shared machine the wall time includes waiting for a core; the CPU time does not.
    """
    fn()  # warm-up
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.process_time() - c0) * 1e3)
    return statistics.median(wall), statistics.median(cpu)


def bench(args: argparse.Namespace) -> int:
    """Median times of decay_bound (d=128, 4,096 distances) and of a live redraw of each explorer."""
    from ropebook.decay import decay_bound
    from ropebook import widgets

    r = np.arange(4096, dtype=np.float64)
    bound_ms, bound_cpu = _median_ms(lambda: decay_bound(r, 128, 10000.0), args.repeats)
    print(f"cpu: {platform.processor() or platform.machine()}, {os.cpu_count()} logical cores, "
          f"load average {os.getloadavg()[0]:.1f}; median of {args.repeats} runs, wall-clock (CPU time)")
    print(f"decay_bound(d=128, 4096 distances): {bound_ms:.2f} ms ({bound_cpu:.2f} ms CPU); target < 20 ms: "
          f"{'OK' if bound_ms < 20 else 'over'}")
    worst = 0.0
    for name, make in [("decay", widgets.decay_explorer), ("rotation", widgets.rotation_explorer),
                       ("frequency", widgets.frequency_explorer)]:
        box = make(live=True)
        slider = box.children[0].children[0]
        values = [slider.min, slider.max] if not hasattr(slider, "base") else [10**slider.min, 10**slider.max]
        state = {"i": 0}

        def move():  # a slider change triggers observe → redraw, synchronously
            state["i"] += 1
            slider.value = values[state["i"] % 2]

        ms, cpu = _median_ms(move, args.repeats)
        worst = max(worst, ms)
        print(f"live redraw, {name} explorer: {ms:.1f} ms ({cpu:.1f} ms CPU); target < 150 ms: "
              f"{'OK' if ms < 150 else 'over'}")
    return 0 if bound_ms < 20 and worst < 150 else 1


def table(args: argparse.Namespace) -> int:
    """Compute rb.min_base for context lengths 2^10 … 2^17 (d = 128) and write them as JSON."""
    from ropebook.decay import min_base

    rows = []
    for L in TABLE_LENGTHS:
        t0 = time.perf_counter()
        b = min_base(L, 128)
        rows.append({"context_length": L, "min_base": b, "seconds": round(time.perf_counter() - t0, 2)})
        print(f"L = {L:>7}: min_base = {b:.4g} ({rows[-1]['seconds']} s)", flush=True)
    data = {"command": "python -m ropebook.bench_decay table --out book/data/min_base.json",
            "dim": 128, "per_decade": 96, "rtol": 1e-3, "rows": rows}
    with open(args.out, "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
    return 0


SUBCOMMANDS = {"bench": bench, "table": table}


def main(argv: list[str] | None = None) -> int:
    """Parse the subcommand (``bench`` unless told) and run it; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m ropebook.bench_decay", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    p = sub.add_parser("bench", help=bench.__doc__)
    p.add_argument("--repeats", type=int, default=15, help="timed runs (median reported)")
    p = sub.add_parser("table", help=table.__doc__)
    p.add_argument("--out", default="book/data/min_base.json", help="where to write the JSON")
    args = parser.parse_args(argv if argv is not None else sys.argv[1:] or ["bench"])
    return SUBCOMMANDS[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
