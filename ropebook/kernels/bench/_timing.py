"""Timing on the GPU: CUDA-graph replays with the L2 flushed (or warm), ``do_bench`` for the eager column, the host
time of a call, and the loop that times every contender of a case in interleaved rounds and prints its table."""

from __future__ import annotations

import statistics
import time

import torch

from . import _config


def _graph_ms(fn, flush: torch.Tensor | None, n: int = 20, replays: int = 15) -> float:
    """Median GPU milliseconds per call from CUDA-graph replays of n calls (launch gaps removed).

    With ``flush``, every call is preceded by zeroing that buffer (twice the L2), so inputs come
    from DRAM; the time of a graph of the flushes alone is subtracted.
    """
    def graph(body):
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            body()  # warm-up outside the graph
        torch.cuda.current_stream().wait_stream(s)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            body()
        return g

    def timed(g):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        g.replay()
        out = []
        for _ in range(replays):
            start.record()
            g.replay()
            end.record()
            end.synchronize()
            out.append(start.elapsed_time(end))
        return out

    def calls():
        for _ in range(n):
            if flush is not None:
                flush.zero_()
            fn()

    g_fn = graph(calls)
    if flush is None:
        return statistics.median(timed(g_fn)) / n
    g_flush = graph(lambda: [flush.zero_() for _ in range(n)])
    both, only = timed(g_fn), timed(g_flush)
    return (statistics.median(both) - statistics.median(only)) / n


def _time(fn, decode: bool, rep: int = 300) -> float:
    fn()
    torch.cuda.synchronize()
    return _graph_ms(fn, None if decode else _FLUSH[0], replays=15 if rep >= 300 else 5)


def _time_or_eager(fn, decode: bool) -> tuple[float, str]:
    try:
        return _time(fn, decode), "graph"
    except Exception as e:  # a contender that cannot be captured is timed eagerly, and the row says so
        if torch.cuda.is_available():  # (the tests run this loop on the CPU: there, a row's own error goes on)
            torch.cuda.synchronize()
        return _eager_ms(fn), f"eager (graph capture failed: {type(e).__name__})"


_FLUSH: list = [None]


def _eager_ms(fn) -> float:
    """do_bench median: L2 flushed before each call, Python launch overhead included where it exceeds the flush."""
    import triton.testing as tt

    return tt.do_bench(fn, warmup=25, rep=200, return_mode="median")


def _host_us(fn, n=100, batches=7) -> float:
    """Wall-clock microseconds of Python per call (launch overhead), GPU work queued behind: the median
    over batches of n calls (one batch alone moved by 3x when the machine's CPU was busy elsewhere)."""
    per_call = []
    for _ in range(batches):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        per_call.append((time.perf_counter() - t0) / n * 1e6)
    torch.cuda.synchronize()
    return statistics.median(per_call)


def _time_contenders(contenders: dict, inputs: tuple, decode: bool, error) -> dict:
    """Every contender timed in ``ROUNDS`` rounds (its first round also measures its error, ``error(outputs)``,
    its eager time and, for decode, its host time), on fresh copies of ``inputs`` each time: in-place contenders
    rotate them thousands of times, and with bf16 cos/sin each rotation scales the norm by about 1 ± 2^-8. A
    contender that fails is reported, not hidden; one whose result cannot be compared is timed, and its note says
    why. Returns name -> results (``us``: the median of the rounds)."""
    saved = [x.clone() for x in inputs]
    results = {}
    for rnd in range(_config.ROUNDS):  # every contender once per round: slow drifts of the GPU hit all of them alike
        for cname, (fn, note, outputs) in contenders.items():
            if rnd and "rounds_us" not in results[cname]:  # it failed in the first round
                continue
            for x, x0 in zip(inputs, saved):
                x.copy_(x0)
            try:
                if rnd:
                    results[cname]["rounds_us"].append(_time_or_eager(fn, decode=decode)[0] * 1e3)
                    continue
                err = None
                if outputs is not None:
                    try:
                        err = error(outputs)
                    except Exception as e:  # its result not compared, and the row says so; its time still taken
                        note = f"{note}; error not measured: {type(e).__name__}: {str(e)[:120]}"
                for x, x0 in zip(inputs, saved):  # (outputs() may have turned them in place)
                    x.copy_(x0)
                ms, how = _time_or_eager(fn, decode=decode)
                note = note if how == "graph" else f"{note}; timed {how}"
                eager = _eager_ms(fn)
                host = _host_us(fn) if decode else None
                results[cname] = dict(rounds_us=[ms * 1e3], eager_us=eager * 1e3, note=note, max_abs_err=err,
                                      host_us_per_call=host)
            except Exception as e:  # a contender that fails here is reported, not hidden
                results[cname] = dict(us=None, note=f"failed: {type(e).__name__}: {str(e)[:160]}")
    for r in results.values():
        if "rounds_us" in r:
            r["us"] = statistics.median(r["rounds_us"])
    return results


def _print_case(title: str, results: dict, nbytes: int, decode: bool) -> None:
    """The table of one case; adds GB/s and the percentage of the copy's bandwidth to each result."""
    copy_us = results["device copy (same bytes)"]["us"]
    print(f"\n{title}, q+k read+write {nbytes / 1e6:.2f} MB"
          f" ({'CUDA-graph replays, L2-warm' if decode else 'CUDA-graph replays, L2 flushed before each call'})")
    print(f"{'contender':<52} {'time us':>9} {'range':>15} {'GB/s':>7} {'% copy':>7} {'max err':>9} {'eager us':>9}"
          + (f" {'host us':>8}" if decode else ""))
    for cname, r in results.items():
        if r["us"] is None:
            print(f"{cname:<52} {r['note']}")
            continue
        r["GBps"] = nbytes / (r["us"] * 1e-6) / 1e9
        r["pct_of_copy"] = 100.0 * copy_us / r["us"]
        err = "" if r.get("max_abs_err") is None else f"{r['max_abs_err']:.2e}"
        host = "" if r.get("host_us_per_call") is None else f" {r['host_us_per_call']:8.1f}"
        spread = f"{min(r['rounds_us']):.2f}-{max(r['rounds_us']):.2f}"
        print(f"{cname:<52} {r['us']:9.2f} {spread:>15} {r['GBps']:7.0f} {r['pct_of_copy']:6.1f}% {err:>9} {r['eager_us']:9.2f}{host}")
