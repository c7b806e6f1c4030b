"""Figures for the CRoPE chapter: the toy offset task and the position-scheme comparison.

Chapter: ``ch-crope``.
"""

from __future__ import annotations

from collections import defaultdict
from itertools import cycle  # more series than colours: the colours repeat, no series is dropped
from typing import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from ropebook._validate import _check_positive_int, _check_positive_number, _is_real, _short_repr
from ropebook.plotting._checks import _array, _mapping, _real_number, _require_keys
from ropebook.plotting._style import COLORS, new_figure

__all__ = ["offset_task_figure", "comparison_figure", "summarize_comparison"]

_RUN_KEYS = ("position", "seed", "parameters", "final_val_loss", "val_steps", "val_loss", "train_loss")


def offset_task_figure(losses: dict, attention: dict, *, chance: float | None = None) -> Figure:
    """Left: training loss per model. Right: the marker's attention against the offset n − m.

    Args:
        losses: label → loss per step.
        attention: label → ``(offsets, weights)``, the mean attention weight at each offset.
        chance: a horizontal line for the loss of uniform guessing.

    >>> fig = offset_task_figure({"a": [2.0, 1.0]}, {"NEXT": ([-1, 0, 1], [0.1, 0.1, 0.8])})
    >>> len(fig.axes)
    2
    """
    fn = "offset_task_figure"
    _mapping(fn, "losses", losses)
    losses = {label: _array(fn, f"losses[{label!r}]", curve, nonnegative=True) for label, curve in losses.items()}
    _mapping(fn, "attention", attention)
    bars = {}
    for label, pair in attention.items():
        name = f"attention[{label!r}]"
        if isinstance(pair, (str, bytes, Mapping)) or not isinstance(pair, Sequence) or len(pair) != 2:
            raise ValueError(f"{fn}: {name} must be a pair (offsets, weights), got {name}={_short_repr(pair)}")
        offsets = _array(fn, f"{name}[0]", pair[0])  # the offsets
        weights = _array(fn, f"{name}[1]", pair[1], nonnegative=True)  # the weights
        if weights.shape != offsets.shape:
            raise ValueError(f"{fn}: {name}[1] must have one weight per offset, len({name}[0])={len(offsets)}, "
                             f"got {name}[1].shape={weights.shape}")
        if weights.max() > 1 + 1e-6:  # the axis stops at 1.05: a larger value would be cut off unseen
            raise ValueError(f"{fn}: {name}[1] must be attention weights in [0, 1], got max({name}[1])={weights.max():g} "
                             f"({name}[1].shape={weights.shape})")
        bars[label] = (offsets, weights)
    _check_positive_number(fn, chance, "chance", optional=True)  # a line on a log axis
    fig, (left, right) = new_figure(1, 2, width=9.0, height=3.4)
    for color, (label, curve) in zip(cycle(COLORS), losses.items()):
        left.plot(np.arange(1, len(curve) + 1), curve, color=color, label=label, lw=1.5)
    if chance is not None:
        left.axhline(chance, color="0.4", ls=":", lw=1, label="uniform guess")
    left.set(xlabel="training step", ylabel="loss at the marker (nats, log scale)", yscale="log", title="Training")
    left.legend(frameon=False, fontsize=8)
    width = 0.8 / max(1, len(attention))
    for k, (color, (label, (offsets, weights))) in enumerate(zip(cycle(COLORS), bars.items())):
        right.bar(offsets + (k - (len(attention) - 1) / 2) * width, weights, width=width, color=color, label=label)
    right.set(xlabel="offset n − m of the key from the marker", ylabel="mean attention weight", ylim=(0, 1.05),
              title="Where the marker looks")
    right.legend(frameon=False, fontsize=8)
    return fig


def summarize_comparison(results: dict) -> dict:
    """position → dict(parameters, final (seeds,), mean, std, steps, val (seeds, n_eval), train (seeds, steps)).

    ``std`` is the sample standard deviation over seeds (ddof=1; 0 with one seed).

    >>> runs = [{"position": "rope", "seed": s, "parameters": {"total": 10}, "final_val_loss": v,
    ...          "val_steps": [1], "val_loss": [v], "train_loss": [v]} for s, v in enumerate([1.0, 3.0])]
    >>> summarize_comparison({"runs": runs})["rope"]["mean"], summarize_comparison({"runs": runs})["rope"]["std"]
    (2.0, 1.4142135623730951)
    """
    fn = "summarize_comparison"
    _require_keys(fn, "results", results, ("runs",))
    if isinstance(results["runs"], (str, bytes, Mapping)) or not isinstance(results["runs"], Sequence) or not results["runs"]:
        raise ValueError(f"{fn}: results['runs'] must be a non-empty list of runs, got results['runs']="
                         f"{_short_repr(results['runs'])}")
    grouped = defaultdict(list)
    for i, run in enumerate(results["runs"]):
        name = f"results['runs'][{i}]"
        _require_keys(fn, name, run, _RUN_KEYS)
        _require_keys(fn, f"{name}['parameters']", run["parameters"], ("total",))
        if not _is_real(run["final_val_loss"]):  # NaN or inf allowed: a diverged run is data to summarise
            raise ValueError(f"{fn}: {name}['final_val_loss'] must be a number, got {_short_repr(run['final_val_loss'])}")
        steps = _array(fn, f"{name}['val_steps']", run["val_steps"], nonempty=False)
        val = _array(fn, f"{name}['val_loss']", run["val_loss"], nonempty=False, finite=False)
        _array(fn, f"{name}['train_loss']", run["train_loss"], finite=False)
        if val.shape != steps.shape:
            raise ValueError(f"{fn}: {name}['val_loss'] must have one loss per step, len(val_steps)={len(steps)}, "
                             f"got {name}['val_loss'].shape={val.shape}")
        grouped[run["position"]].append(run)
    for position, runs in grouped.items():  # the seeds of one scheme are stacked: one length each
        for key in ("val_steps", "train_loss"):
            lengths = {len(r[key]) for r in runs}
            if len(lengths) > 1:
                raise ValueError(f"{fn}: every run of position {position!r} must have one length of {key!r}, "
                                 f"got lengths {sorted(lengths)} (seeds {[r['seed'] for r in runs]})")
    summary = {}
    for position, runs in grouped.items():
        runs = sorted(runs, key=lambda r: r["seed"])
        final = np.array([r["final_val_loss"] for r in runs])
        summary[position] = {
            "parameters": runs[0]["parameters"]["total"],
            "seeds": [r["seed"] for r in runs],
            "final": final,
            "mean": float(final.mean()),
            "std": float(final.std(ddof=1)) if len(final) > 1 else 0.0,
            "steps": np.array(runs[0]["val_steps"]),
            "val": np.array([r["val_loss"] for r in runs]),
            "train": np.array([r["train_loss"] for r in runs]),
        }
    return summary


def comparison_figure(results: dict, *, smooth: int = 25) -> Figure:
    """Left: training loss (moving average) per scheme, mean over seeds with the min–max band.
    Right: final validation loss, one dot per seed, with the mean.

    >>> runs = [{"position": p, "seed": s, "parameters": {"total": 10}, "final_val_loss": 1.0 + s / 10,
    ...          "val_steps": [2], "val_loss": [1.0], "train_loss": [2.0, 1.0]} for p in ("rope", "crope") for s in (0, 1)]
    >>> len(comparison_figure({"runs": runs}, smooth=1).axes)
    2
    """
    fn = "comparison_figure"
    smooth = _check_positive_int(fn, smooth, "smooth")
    summary = summarize_comparison(results)
    for i, run in enumerate(results["runs"]):  # summarized, a diverged run is fine; drawn, its NaN is not
        _array(fn, f"results['runs'][{i}]['train_loss']", run["train_loss"])
        _real_number(fn, f"results['runs'][{i}]['final_val_loss']", run["final_val_loss"])
    fig, (left, right) = new_figure(1, 2, width=9.5, height=3.6, gridspec_kw={"width_ratios": [1.6, 1]})
    for k, (color, (position, s)) in enumerate(zip(cycle(COLORS), summary.items())):
        train = s["train"]  # (seeds, steps)
        window = max(1, min(smooth, train.shape[1]))
        kernel = np.ones(window) / window
        curves = np.array([np.convolve(c, kernel, mode="valid") for c in train])  # (seeds, steps - window + 1)
        x = np.arange(window, train.shape[1] + 1)
        left.plot(x, curves.mean(0), color=color, lw=1.4, label=f"{position} ({s['parameters']:,} params)")
        left.fill_between(x, curves.min(0), curves.max(0), color=color, alpha=0.2, lw=0)
        jitter = np.linspace(-0.12, 0.12, len(s["final"]))
        right.scatter(k + jitter, s["final"], color=color, s=18, zorder=3)
        right.hlines(s["mean"], k - 0.25, k + 0.25, color=color, lw=2)
    left.set(xlabel="step", ylabel=f"training loss, {smooth}-step mean (nats/byte)", title="Training (band: min–max over seeds)")
    tail = np.concatenate([s["train"][:, len(s["train"][0]) // 4:].ravel() for s in summary.values()])
    left.set_ylim(np.percentile(tail, 0.5) - 0.05, np.percentile(tail, 99.5) + 0.05)
    left.legend(frameon=False, fontsize=8)
    right.set_xticks(range(len(summary)), list(summary), rotation=20)
    right.set(ylabel="final validation loss (nats/byte)", title="Final validation loss (dot: one seed)")
    return fig
