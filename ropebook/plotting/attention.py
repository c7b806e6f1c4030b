"""Figures for the linear-attention chapter: timings, attention weights, LRPE scores, the copy experiment.

Every function takes numbers (lists, arrays, the JSON dictionaries the
experiment and benchmark write) and returns a Figure.

Chapter: ``ch-linear-attention``.
"""

from __future__ import annotations

from itertools import cycle  # more series than colours: the colours repeat, no series is dropped
from typing import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from ropebook._validate import _check_positive_number, _short_repr
from ropebook.plotting._checks import _array, _mapping, _real_number, _require_keys
from ropebook.plotting._style import COLORS, new_figure

__all__ = ["plot_attention_times", "plot_weight_rows", "plot_offset_scores", "plot_copy_results"]


def plot_attention_times(result: dict, *, crossover: int | None = None) -> Figure:
    """Log–log time against T for causal linear and softmax attention, with slope-1 and slope-2 guides.

    ``result`` is what ``ropebook.bench_linear.time_attention`` returns; its ``"sdpa"`` times (PyTorch's
    fused softmax attention), when present, are drawn too. ``crossover`` marks a length with a dashed line.

    >>> fig = plot_attention_times({"lengths": [64, 128], "linear": [1e-3, 2e-3], "softmax": [1e-4, 4e-4]})
    >>> fig.axes[0].get_xscale()
    'log'
    """
    fn = "plot_attention_times"
    _require_keys(fn, "result", result, ("lengths",))
    series = [name for name in ("linear", "softmax", "sdpa") if name in result]
    if not series:
        raise ValueError(f"{fn}: result must have at least one of the keys 'linear', 'softmax', 'sdpa', "
                         f"got keys {sorted(map(str, result))}")
    T = _array(fn, "result['lengths']", result["lengths"], positive=True)  # log axes: T > 0
    times = {}
    for name in series:
        times[name] = _array(fn, f"result[{name!r}]", result[name], positive=True)
        if times[name].shape != T.shape:
            raise ValueError(f"{fn}: result[{name!r}] must have one time per length, len(result['lengths'])={len(T)}, "
                             f"got result[{name!r}].shape={times[name].shape}")
    _check_positive_number(fn, crossover, "crossover", optional=True)
    fig, ax = new_figure()
    for name, color, label, slope in (("linear", COLORS[0], "linear attention (chunked, O(T))", 1),
                                      ("softmax", COLORS[1], "softmax attention, reference (T×T, O(T²))", 2),
                                      ("sdpa", COLORS[2], "softmax attention, PyTorch's fused SDPA", None)):
        if name not in result:
            continue
        t = times[name] * 1e3
        ax.plot(T, t, "o-", color=color, label=label)
        if slope is not None:
            ax.plot(T, t[-1] * (T / T[-1]) ** slope, ":", color=color, alpha=0.7, label=f"slope {slope} guide")
    if crossover is not None:
        ax.axvline(crossover, color="gray", ls="--", lw=1)
        ax.annotate(f"crossover T = {crossover}", (crossover, ax.get_ylim()[1]), xytext=(4, -14),
                    textcoords="offset points", fontsize=9, color="gray")
    ax.set(xscale="log", yscale="log", xlabel="sequence length T", ylabel="time per call (ms)")
    ax.legend(fontsize=8, frameon=False)
    return fig


def _curves(fn: str, x_name: str, x, name: str, curves, one: str) -> tuple[np.ndarray, dict]:
    """x, 1-D, and a dict of curves over it, each of x's length (``one``: "value per key"), as float arrays."""
    x = _array(fn, x_name, x)
    _mapping(fn, name, curves)
    checked = {}
    for label, y in curves.items():
        y = checked[label] = _array(fn, f"{name}[{label!r}]", y, nonempty=False)
        if y.shape != x.shape:
            raise ValueError(f"{fn}: {name}[{label!r}] must have one {one}, len({x_name})={len(x)}, got {name}[{label!r}].shape={y.shape}")
    return x, checked


def plot_weight_rows(keys, rows: dict) -> Figure:
    """The weights a_mn of one query m against key position n, one line per variant, with the zero line.

    >>> fig = plot_weight_rows(range(3), {"plain": [0.2, 0.3, 0.5], "RoPE": [0.4, -0.1, 0.3]})
    >>> len(fig.axes[0].lines)
    3
    """
    x, checked = _curves("plot_weight_rows", "keys", keys, "rows", rows, "value per key")
    fig, ax = new_figure()
    for (label, w), color in zip(checked.items(), cycle(COLORS)):
        ax.plot(x, w, ".-", color=color, label=f"{label} (row sum {w.sum():.3f})")
    ax.axhline(0, color="black", lw=0.8)
    ax.set(xlabel="key position n", ylabel="weight $a_{mn}$")
    ax.legend(fontsize=8, frameon=False)
    return fig


def plot_offset_scores(offsets, scores: dict) -> Figure:
    """Score qᵀ M_{n−m} k against the offset n − m, one panel per LRPE member.

    >>> fig = plot_offset_scores(range(4), {"a": [1, 2, 3, 4], "b": [0, 1, 0, 1]})
    >>> len(fig.axes)
    2
    """
    x, checked = _curves("plot_offset_scores", "offsets", offsets, "scores", scores, "score per offset")
    n = len(scores)
    fig, axes = new_figure(n, 1, width=6.4, height=1.5 * n + 0.6, sharex=True)
    axes = np.atleast_1d(axes)
    for ax, (label, s), color in zip(axes, checked.items(), cycle(COLORS)):
        ax.plot(x, s, color=color, lw=1.2)
        ax.set_ylabel(label, fontsize=9)
    axes[-1].set_xlabel("offset n − m")
    return fig


def plot_copy_results(results: dict, *, names: dict | None = None) -> Figure:
    """Held-out accuracy of the copy-with-offset task: mean ± std over seeds, seeds as dots, chance as a line.

    ``results`` is the JSON of ``python -m ropebook.experiments.lrpe_recall`` (``{"by_offset": {k: run}}``)
    or one run (``{"config", "runs", "chance"}``).

    >>> run = {"config": {"offset": 3}, "chance": 0.1, "runs": [{"encoding": "none", "seed": 0, "accuracy": 0.2}]}
    >>> len(plot_copy_results(run).axes)
    1
    """
    fn = "plot_copy_results"
    _mapping(fn, "results", results)
    if "by_offset" in results:
        by_offset = _mapping(fn, "results['by_offset']", results["by_offset"])
        where = {offset: f"results['by_offset'][{offset!r}]" for offset in by_offset}
    else:
        _require_keys(fn, "results", results, ("config", "runs", "chance"))
        _require_keys(fn, "results['config']", results["config"], ("offset",))
        by_offset = {str(results["config"]["offset"]): results}
        where = {offset: "results" for offset in by_offset}
    for offset, run in by_offset.items():
        _require_keys(fn, where[offset], run, ("runs", "chance"))
        chance = _real_number(fn, f"{where[offset]}['chance']", run["chance"])
        if not 0 <= chance <= 1:
            raise ValueError(f"{fn}: {where[offset]}['chance'] must be an accuracy in [0, 1], got {chance!r}")
        if isinstance(run["runs"], (str, bytes, Mapping)) or not isinstance(run["runs"], Sequence) or not run["runs"]:
            raise ValueError(f"{fn}: {where[offset]}['runs'] must be a non-empty list of runs, "
                             f"got {where[offset]}['runs']={_short_repr(run['runs'])}")
        for i, r in enumerate(run["runs"]):
            _require_keys(fn, f"{where[offset]}['runs'][{i}]", r, ("encoding", "accuracy"))
            acc = _real_number(fn, f"{where[offset]}['runs'][{i}]['accuracy']", r["accuracy"])
            if not 0 <= acc <= 1:
                raise ValueError(f"{fn}: {where[offset]}['runs'][{i}]['accuracy'] must be in [0, 1], got {where[offset]}['runs'][{i}]['accuracy']={acc!r}")
    if names is not None:
        _mapping(fn, "names", names, nonempty=False)
    names = names or {}
    fig, axes = new_figure(1, len(by_offset), width=3.4 * len(by_offset) + 0.6, height=3.4, sharey=True)
    axes = np.atleast_1d(axes)
    for ax, (offset, run) in zip(axes, by_offset.items()):
        encodings = list(dict.fromkeys(r["encoding"] for r in run["runs"]))
        for i, (enc, color) in enumerate(zip(encodings, cycle(COLORS))):
            acc = np.array([r["accuracy"] for r in run["runs"] if r["encoding"] == enc])
            ax.bar(i, acc.mean(), yerr=acc.std(ddof=1) if len(acc) > 1 else None, color=color, alpha=0.6, capsize=4)
            ax.plot(np.full(len(acc), i) + np.linspace(-0.15, 0.15, len(acc)), acc, "k.", ms=5)
        ax.axhline(run["chance"], color="gray", ls="--", lw=1)
        ax.text(len(encodings) - 0.5, run["chance"], "chance", ha="right", va="bottom", fontsize=8, color="gray")
        ax.set_xticks(range(len(encodings)), [names.get(e, e) for e in encodings], fontsize=8, rotation=20)
        ax.set_title(f"offset Δ = {offset}", fontsize=10)
        ax.set_ylim(0, 1.05)
    axes[0].set_ylabel("held-out accuracy")
    return fig
