"""Figures about RoPE's cost on a GPU: time per call against tokens a call, with the floors that bound it.

Pure: a benchmark's results (the dict ``ropebook.bench gpu`` writes, ``book/data/gpu_bench.json``) in,
a matplotlib ``Figure`` out. Chapter: ``ch-rope-gpu``.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from ropebook._validate import _is_int, _is_real, _short_repr
from ropebook.plotting._checks import _check_size
from ropebook.plotting._style import COLORS, new_figure

__all__ = ["latency_bandwidth_fit", "rope_time_model", "GPU_CONTENDERS"]

COPY = "device copy (same bytes)"
# (label in the figure, the benchmark's row for prefill, its row for decode): each contender's default call
GPU_CONTENDERS = (
    ("ropebook (default)", "ropebook rope_qk, angles=kernel", "ropebook rope_qk, angles=table"),
    ("Liger-Kernel (in place)", "Liger-Kernel rope (in place)", "Liger-Kernel rope (in place)"),
    ("flash-attn (2 calls)", "flash-attn apply_rotary (2 calls)", "flash-attn apply_rotary (2 calls)"),
    ("torch.compile(HF)", "torch.compile(HF formula)", "torch.compile(HF formula)"),
    ("HF eager", "HF eager formula", "HF eager formula"),
)
_CASE_KEYS = ("case", "B", "T", "Hq", "Hk", "D", "bytes", "results")


def _toy_case(B: int, T: int, copy_us: float) -> dict:
    """A benchmark case with one head of q and of k of 2 features in bf16 (16 bytes a token), for examples."""
    return dict(case=f"B={B}, T={T}", B=B, T=T, Hq=1, Hk=1, D=2, bytes=16 * B * T, results={COPY: dict(us=copy_us)})


def _cases(fn: str, bench: Mapping) -> list[Mapping]:
    """The benchmark's cases, checked for what the figure reads; sorted by tokens a call (B·T)."""
    cases = bench.get("cases") if isinstance(bench, Mapping) else None
    if not cases:
        raise ValueError(f"{fn}: bench must be a benchmark's results with a non-empty 'cases' list "
                         f"(book/data/gpu_bench.json), got {type(bench).__name__} with keys "
                         f"{sorted(bench) if isinstance(bench, Mapping) else None}")
    if isinstance(cases, (str, bytes, Mapping)) or not isinstance(cases, Sequence):
        raise ValueError(f"{fn}: bench['cases'] must be a list of cases, got bench['cases']={_short_repr(cases)}")
    for i, c in enumerate(cases):
        if not isinstance(c, Mapping):
            raise ValueError(f"{fn}: every case must be a dict, got bench['cases'][{i}]={_short_repr(c)}")
        missing = [k for k in _CASE_KEYS if k not in c]
        if missing:
            raise ValueError(f"{fn}: every case needs keys {_CASE_KEYS}, got case {c.get('case')!r} without {missing}")
        for key in ("B", "T", "Hq", "Hk", "D", "bytes"):
            if not _is_int(c[key]) or c[key] < 1:
                raise ValueError(f"{fn}: every case's {key!r} must be a positive integer, got case {c['case']!r} "
                                 f"with {key}={c[key]!r}")
        if not isinstance(c["results"], Mapping):
            raise ValueError(f"{fn}: every case's 'results' must be a dict of rows, got case {c['case']!r} "
                             f"with results={_short_repr(c['results'])}")
        if COPY not in c["results"] or not isinstance(c["results"][COPY], Mapping) or "us" not in c["results"][COPY]:
            raise ValueError(f"{fn}: every case needs the row {COPY!r} with 'us', got case {c['case']!r} "
                             f"with rows {sorted(c['results'])}")
        us = c["results"][COPY]["us"]
        if not _is_real(us) or not math.isfinite(us) or us <= 0:
            raise ValueError(f"{fn}: every case's {COPY!r} time 'us' must be a positive finite number, "
                             f"got case {c['case']!r} with us={us!r}")
    return sorted(cases, key=lambda c: c["B"] * c["T"])


def latency_bandwidth_fit(bench: Mapping) -> tuple[float, float]:
    """The two-parameter model of a device copy, t = t0 + bytes / W, through two measured copies.

    ``W`` comes from the copy of the most tokens (where the fixed cost t0 is a small share) and ``t0``
    from the copy of the fewest (where it is most of the time); the cases between are a check of the
    model, not part of the fit.

    Returns: ``(t0 in µs, W in GB/s)``.

    >>> bench = {"cases": [_toy_case(1, 1, 2.000016), _toy_case(1, 10**6, 18.0)]}  # 16 bytes a token
    >>> latency_bandwidth_fit(bench)  # 2 µs, then 1000 GB/s = 10^6 bytes a µs
    (2.0, 1000.0)
    """
    cases = _cases("latency_bandwidth_fit", bench)
    if len(cases) < 2 or cases[0]["B"] * cases[0]["T"] == cases[-1]["B"] * cases[-1]["T"]:
        raise ValueError(f"latency_bandwidth_fit: needs cases of at least two sizes, got "
                         f"{[(c['case'], c['B'] * c['T']) for c in cases]}")
    small, large = cases[0], cases[-1]
    t_s, t_l = small["results"][COPY]["us"], large["results"][COPY]["us"]
    bandwidth = (large["bytes"] - small["bytes"]) / (t_l - t_s) / 1e3  # bytes per µs / 1e3 = GB/s
    if not bandwidth > 0:
        raise ValueError(f"latency_bandwidth_fit: the larger copy must take longer, got {t_s} µs for "
                         f"{small['bytes']} bytes and {t_l} µs for {large['bytes']} bytes")
    t0 = t_l - large["bytes"] / (bandwidth * 1e3)
    return round(t0, 12), round(bandwidth, 9)


def rope_time_model(bench: Mapping, *, tokens: int | None = None, heads: tuple[int, int] | None = None,
                    head_dim: int | None = None, element_bytes: int = 2, max_tokens: int = 65536,
                    contenders: Sequence[tuple[str, str, str]] = GPU_CONTENDERS,
                    width: float = 6.4, height: float = 3.8) -> Figure:
    """Time per call against tokens a call (B·T, log–log): the floors and the measured points.

    Draws the bandwidth floor ``bytes / W`` and the copy model ``t0 + bytes / W``
    (:func:`latency_bandwidth_fit`), with bytes from equation ``eq-rope-bytes`` for ``heads`` (q, k)
    of ``head_dim`` features of ``element_bytes`` bytes. The measured points of the copy and of each
    contender are drawn only when that shape is the benchmark's (its bytes are the ones measured).

    Args:
        bench: a benchmark's results (``book/data/gpu_bench.json``).
        tokens: if given, a vertical line there and the model's time, written in the figure.
        heads, head_dim: the shape to model (default: the benchmark's).
        contenders: ``(label, prefill row, decode row)`` of the benchmark's results to draw.

    >>> bench = {"cases": [_toy_case(1, 1, 2.000016), _toy_case(1, 10**6, 18.0)]}
    >>> fig = rope_time_model(bench, tokens=64, max_tokens=10**6)
    >>> [ln.get_label() for ln in fig.axes[0].lines if not ln.get_label().startswith("_")][:3]
    ['bandwidth floor: bytes / W', 'copy model: t0 + bytes / W', 'device copy, measured']
    """
    fn = "rope_time_model"
    cases = _cases(fn, bench)
    shape = (cases[0]["Hq"], cases[0]["Hk"], cases[0]["D"])
    if heads is not None and (isinstance(heads, (str, bytes)) or not isinstance(heads, Sequence) or len(heads) != 2):
        raise ValueError(f"{fn}: heads must be None or a pair (query heads, key heads), got heads={heads!r}")
    if (isinstance(contenders, (str, bytes)) or not isinstance(contenders, Sequence)
            or not all(isinstance(row, Sequence) and not isinstance(row, str) and len(row) == 3
                       and all(isinstance(x, str) for x in row) for row in contenders)):
        raise ValueError(f"{fn}: contenders must be a sequence of (label, prefill row, decode row) string triples, "
                         f"got contenders={_short_repr(contenders)}")
    _check_size(fn, width, height)
    hq, hk = shape[:2] if heads is None else heads
    d = shape[2] if head_dim is None else head_dim
    for name, v in (("heads[0]", hq), ("heads[1]", hk), ("head_dim", d), ("element_bytes", element_bytes),
                    ("max_tokens", max_tokens)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{fn}: {name} must be a positive int, got {name}={v!r}")
    if tokens is not None and (isinstance(tokens, bool) or not isinstance(tokens, (int, np.integer))
                               or not 1 <= tokens <= max_tokens):
        raise ValueError(f"{fn}: tokens must be an int in [1, max_tokens={max_tokens}], got tokens={tokens!r}")
    measured_shape = (hq, hk, d) == shape and all(element_bytes * 2 * c["B"] * c["T"] * (c["Hq"] + c["Hk"]) * c["D"]
                                                   == c["bytes"] for c in cases)
    t0, bandwidth = latency_bandwidth_fit(bench)
    per_token = 2 * (hq + hk) * d * element_bytes  # bytes read and written a token

    def model(n):
        return t0 + n * per_token / (bandwidth * 1e3)

    fig, ax = new_figure(width=width, height=height)
    n = np.geomspace(1, max_tokens, 200)
    ax.plot(n, n * per_token / (bandwidth * 1e3), color="0.55", lw=1.2, ls=":", label="bandwidth floor: bytes / W")
    ax.plot(n, model(n), color=COLORS[7], lw=1.4, ls="--", label="copy model: t0 + bytes / W")
    ax.axhline(t0, color="0.7", lw=0.8)
    ax.annotate(f"t0 = {t0:.2f} µs", (1.3, t0), xytext=(0, 3), textcoords="offset points", fontsize=7, color="0.4")
    if measured_shape:
        x = [c["B"] * c["T"] for c in cases]
        ax.plot(x, [c["results"][COPY]["us"] for c in cases], "s", color=COLORS[7], ms=6, mfc="none",
                label="device copy, measured")
        markers = "ov^Dx<>"
        for j, (label, prefill, decode) in enumerate(contenders):
            pts = [(c["B"] * c["T"], c["results"].get(decode if c["T"] == 1 else prefill, {}).get("us")) for c in cases]
            pts = [(a, b) for a, b in pts if b is not None]
            if pts:
                ax.plot(*zip(*pts), markers[j % len(markers)], color=COLORS[j % len(COLORS)], ms=5, label=label)
    else:
        ax.text(0.98, 0.97, f"(measured points: {shape[0]} q and {shape[1]} k heads of {shape[2]} only)",
                transform=ax.transAxes, ha="right", va="top", fontsize=7, color="0.4")
    if tokens is not None:
        t = model(tokens)
        ax.axvline(tokens, color=COLORS[1], lw=1.0)
        right = tokens > max_tokens ** 0.6
        ax.annotate(f"{tokens} tokens: model {t:.3g} µs,\n{100 * t0 / t:.0f} % of it t0", (tokens, t0 / 3),
                    xytext=(-5 if right else 5, 0), textcoords="offset points", fontsize=8, color=COLORS[1],
                    ha="right" if right else "left", va="center")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlim(1, max_tokens)
    ax.set_ylim(bottom=t0 / 6)  # below that only the bandwidth floor of a few tokens, which no call reaches
    ax.set_xlabel(f"tokens a call, B·T ({hq} q, {hk} k heads of {d}, {element_bytes} bytes each)")
    ax.set_ylabel("µs per call")
    ax.legend(fontsize=7, loc="upper left", framealpha=0.9)
    return fig
