"""Bad arguments to the figure functions (``ropebook.plotting``): each is refused with an error that names the
function and the argument and shows what it got, before numpy or matplotlib fail deep inside (a KeyError, "x and
y must have same first dimension") or draw a wrong figure silently (NaN gaps, a 1-point axis, a clipped bar).

``CASES``: (id, call, pattern the message must match). ``VALID``: one valid call per public function, which must
still return a Figure. Cases already in test_plotting_foundations.py, test_plotting_gpu.py and test_decay.py are
not repeated here.
"""

from __future__ import annotations

import cmath
import math

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from ropebook import plotting
from ropebook.plotting import gpu
from ropebook.positions import alibi_bias, shaw_relative_index, sinusoidal_encoding, t5_relative_bucket

NAN, INF = math.nan, math.inf
TIMES = {"lengths": [64, 128], "linear": [1e-3, 2e-3], "softmax": [1e-4, 4e-4]}
COPY_RUN = {"config": {"offset": 3}, "chance": 0.1,
            "runs": [{"encoding": "none", "seed": s, "accuracy": a} for s, a in enumerate((0.2, 0.3))]}
RUNS = [{"position": p, "seed": s, "parameters": {"total": 10}, "final_val_loss": 1.0 + s / 10,
         "val_steps": [2], "val_loss": [1.0], "train_loss": [2.0, 1.0]} for p in ("rope", "crope") for s in (0, 1)]
BENCH = {"cases": [gpu._toy_case(1, 1, 2.000016), gpu._toy_case(1, 10**6, 18.0)]}
R = torch.arange(-20, 21)
T5 = (R, t5_relative_bucket(R), t5_relative_bucket(R, bidirectional=False))
ATTENTION = {"NEXT": ([-1, 0, 1], [0.1, 0.1, 0.8])}


def _runs(**change):
    return {"runs": [dict(r, **change) if i == 0 else r for i, r in enumerate(RUNS)]}


def _case(**change):
    return {"cases": [dict(gpu._toy_case(1, 1, 2.0), **change), gpu._toy_case(1, 4, 3.0)]}


VALID = [
    ("plot_attention_times", lambda: plotting.plot_attention_times(TIMES, crossover=100)),
    ("plot_weight_rows", lambda: plotting.plot_weight_rows(range(3), {"plain": [0.2, 0.3, 0.5], "RoPE": torch.tensor([0.4, -0.1, 0.3])})),
    ("plot_offset_scores", lambda: plotting.plot_offset_scores(range(-2, 2), {"a": [1, 2, 3, 4], "b": np.zeros(4)})),
    ("plot_copy_results", lambda: plotting.plot_copy_results({"by_offset": {"1": COPY_RUN, "3": COPY_RUN}}, names={"none": "no position"})),
    ("offset_task_figure", lambda: plotting.offset_task_figure({"a": [2.0, 1.0]}, ATTENTION, chance=math.log(6))),
    ("comparison_figure", lambda: plotting.comparison_figure({"runs": RUNS}, smooth=1)),
    ("decay_curves", lambda: plotting.decay_curves(dim=np.int64(64), max_distance=1000, log_x=True, n_points=50)),
    ("random_score_band", lambda: plotting.random_score_band([0, 1], [0.1, -0.2], [8.0, 8.0], [0.2, 0.2], dim=64)),
    ("pair_cosines", lambda: plotting.pair_cosines(dim=16, pairs=(0, 7), max_distance=100)),
    ("min_base_curve", lambda: plotting.min_base_curve([1024, 2048], [4.3e3, 1.4e4], fit=(0.0424, 1.628))),
    ("sinusoidal_figure", lambda: plotting.sinusoidal_figure(sinusoidal_encoding(160, 16), starts=np.array([0, 40]))),
    ("shaw_figure", lambda: plotting.shaw_figure(shaw_relative_index(8, 2), 2)),
    ("t5_bucket_figure", lambda: plotting.t5_bucket_figure(*T5, max_distance=16)),
    ("alibi_figure", lambda: plotting.alibi_figure(alibi_bias(12, 4), head=np.int64(1), max_distance=5)),
    ("complex_product", lambda: plotting.complex_product(cmath.rect(1.2, 0.5), np.complex128(cmath.rect(0.9, 1.1)))),
    ("rotation_2d", lambda: plotting.rotation_2d(torch.tensor([0.9, 0.3]), [0.5, 0.7], 3, 1, theta=0.5)),
    ("wavelengths", lambda: plotting.wavelengths(dims=(64,), bases=(1e4,), context_length=np.int64(4096))),
    ("angle_errors", lambda: plotting.angle_errors(torch.arange(4), {"bf16": np.array([0.0, 0.1, 0.05, 1.0])})),
    ("rope_time_model", lambda: plotting.rope_time_model(BENCH, tokens=64, heads=[2, 1], max_tokens=10**6)),
]


@pytest.mark.parametrize("name,make", VALID, ids=[v[0] for v in VALID])
def test_a_valid_call_still_returns_a_figure(name, make):
    fig = make()
    try:
        assert isinstance(fig, Figure)
        assert fig.get_facecolor() == (1.0, 1.0, 1.0, 1.0)
    finally:
        plt.close(fig)


def test_summaries_and_fits_of_valid_results_are_unchanged():
    summary = plotting.summarize_comparison({"runs": RUNS})
    assert summary["rope"]["mean"] == pytest.approx(1.05) and summary["rope"]["seeds"] == [0, 1]
    assert plotting.latency_bandwidth_fit(BENCH) == (2.0, 1000.0)


CASES = [
    # plot_attention_times: the dict of time_attention, crossover
    ("times: not a dict", lambda: plotting.plot_attention_times("x"), r"^plot_attention_times: result must be a dict, got result='x'"),
    ("times: no lengths", lambda: plotting.plot_attention_times({"linear": [1.0]}),
     r"^plot_attention_times: result must have the keys \('lengths',\), got result without \['lengths'\]"),
    ("times: no series", lambda: plotting.plot_attention_times({"lengths": [64, 128]}),
     r"^plot_attention_times: result must have at least one of the keys 'linear', 'softmax', 'sdpa', got keys \['lengths'\]"),
    ("times: one time short", lambda: plotting.plot_attention_times({"lengths": [64, 128], "linear": [1e-3]}),
     r"^plot_attention_times: result\['linear'\] must have one time per length, len\(result\['lengths'\]\)=2, got result\['linear'\]\.shape=\(1,\)"),
    ("times: empty", lambda: plotting.plot_attention_times({"lengths": [], "linear": []}),
     r"^plot_attention_times: result\['lengths'\] must not be empty, got result\['lengths'\].shape=\(0,\)"),
    ("times: nan", lambda: plotting.plot_attention_times({"lengths": [64, 128], "linear": [1e-3, NAN]}),
     r"^plot_attention_times: result\['linear'\] must be finite everywhere, got result\['linear'\]\[1\]=nan"),
    ("times: zero time on a log axis", lambda: plotting.plot_attention_times({"lengths": [64, 128], "linear": [1e-3, 0.0]}),
     r"^plot_attention_times: result\['linear'\] must be > 0 everywhere, got result\['linear'\]\[1\]=0.0"),
    ("times: 2-d lengths", lambda: plotting.plot_attention_times({"lengths": [[64, 128]], "linear": [[1e-3, 2e-3]]}),
     r"^plot_attention_times: result\['lengths'\] must be 1-D, got result\['lengths'\].shape=\(1, 2\)"),
    ("times: str crossover", lambda: plotting.plot_attention_times(TIMES, crossover="128"),
     r"^plot_attention_times: crossover must be None or a positive finite number, got crossover='128'"),
    ("times: negative crossover", lambda: plotting.plot_attention_times(TIMES, crossover=-5),
     r"^plot_attention_times: crossover must be .* got crossover=-5"),
    # plot_weight_rows: keys against rows
    ("rows: one weight short", lambda: plotting.plot_weight_rows(range(3), {"a": [0.5, 0.5]}),
     r"^plot_weight_rows: rows\['a'\] must have one value per key, len\(keys\)=3, got rows\['a'\]\.shape=\(2,\)"),
    ("rows: a 2-d row", lambda: plotting.plot_weight_rows(range(3), {"a": [[0.2, 0.3, 0.5]]}),
     r"^plot_weight_rows: rows\['a'\] must be 1-D, got rows\['a'\].shape=\(1, 3\)"),
    ("rows: none", lambda: plotting.plot_weight_rows(range(3), {}), r"^plot_weight_rows: rows must have at least one entry, got rows=\{\}"),
    ("rows: a list", lambda: plotting.plot_weight_rows(range(3), [0.2, 0.3, 0.5]),
     r"^plot_weight_rows: rows must be a dict, got rows=\[0.2, 0.3, 0.5\] \(a list\)"),
    ("rows: a count for keys", lambda: plotting.plot_weight_rows(3, {"a": [0.2, 0.3, 0.5]}),
     r"^plot_weight_rows: keys must be 1-D, got keys.shape=\(\)"),
    ("rows: nan weight", lambda: plotting.plot_weight_rows(range(3), {"a": [0.2, NAN, 0.5]}),
     r"^plot_weight_rows: rows\['a'\] must be finite everywhere, got rows\['a'\]\[1\]=nan"),
    ("rows: str row", lambda: plotting.plot_weight_rows(range(3), {"a": "abc"}),
     r"^plot_weight_rows: rows\['a'\] must be an array of real numbers, got rows\['a'\]='abc'"),
    # plot_offset_scores: offsets against scores
    ("scores: one score short", lambda: plotting.plot_offset_scores(range(3), {"a": [1, 2]}),
     r"^plot_offset_scores: scores\['a'\] must have one score per offset, len\(offsets\)=3, got scores\['a'\]\.shape=\(2,\)"),
    ("scores: none", lambda: plotting.plot_offset_scores(range(3), {}),
     r"^plot_offset_scores: scores must have at least one entry, got scores=\{\}"),
    ("scores: inf", lambda: plotting.plot_offset_scores(range(3), {"a": [1, INF, 3]}),
     r"^plot_offset_scores: scores\['a'\] must be finite everywhere, got scores\['a'\]\[1\]=inf"),
    ("scores: empty offsets", lambda: plotting.plot_offset_scores([], {"a": []}),
     r"^plot_offset_scores: offsets must not be empty, got offsets.shape=\(0,\)"),
    # plot_copy_results: the experiment's JSON
    ("copy: empty dict", lambda: plotting.plot_copy_results({}), r"^plot_copy_results: results must have at least one entry"),
    ("copy: no config offset", lambda: plotting.plot_copy_results({"config": {}, "runs": [], "chance": 0.1}),
     r"^plot_copy_results: results\['config'\] must have the keys \('offset',\), got results\['config'\] without \['offset'\]"),
    ("copy: no chance", lambda: plotting.plot_copy_results({"config": {"offset": 3}, "runs": COPY_RUN["runs"]}),
     r"^plot_copy_results: results must have the keys \('config', 'runs', 'chance'\), got results without \['chance'\]"),
    ("copy: no offsets", lambda: plotting.plot_copy_results({"by_offset": {}}),
     r"^plot_copy_results: results\['by_offset'\] must have at least one entry"),
    ("copy: no runs", lambda: plotting.plot_copy_results(dict(COPY_RUN, runs=[])),
     r"^plot_copy_results: results\['runs'\] must be a non-empty list of runs, got results\['runs'\]=\[\]"),
    ("copy: run without accuracy", lambda: plotting.plot_copy_results(dict(COPY_RUN, runs=[{"encoding": "x"}])),
     r"^plot_copy_results: results\['runs'\]\[0\] must have the keys \('encoding', 'accuracy'\), got results\['runs'\]\[0\] without \['accuracy'\]"),
    ("copy: nan accuracy", lambda: plotting.plot_copy_results({"by_offset": {"1": dict(COPY_RUN, runs=[{"encoding": "x", "accuracy": NAN}])}}),
     r"^plot_copy_results: results\['by_offset'\]\['1'\]\['runs'\]\[0\]\['accuracy'\] must be a finite number, got .*=nan"),
    ("copy: accuracy in percent", lambda: plotting.plot_copy_results(dict(COPY_RUN, runs=[{"encoding": "x", "accuracy": 87.5}])),
     r"^plot_copy_results: results\['runs'\]\[0\]\['accuracy'\] must be in \[0, 1\], got results\['runs'\]\[0\]\['accuracy'\]=87.5"),
    ("copy: str chance", lambda: plotting.plot_copy_results(dict(COPY_RUN, chance="1/16")),
     r"^plot_copy_results: results\['chance'\] must be a finite number, got results\['chance'\]='1/16'"),
    ("copy: names a list", lambda: plotting.plot_copy_results(COPY_RUN, names=["none"]),
     r"^plot_copy_results: names must be a dict, got names=\['none'\] \(a list\)"),
    # offset_task_figure: losses, attention pairs, chance
    ("task: weights short", lambda: plotting.offset_task_figure({"a": [2.0, 1.0]}, {"N": ([-1, 0, 1], [0.2, 0.8])}),
     r"^offset_task_figure: attention\['N'\]\[1\] must have one weight per offset, len\(attention\['N'\]\[0\]\)=3, got attention\['N'\]\[1\]\.shape=\(2,\)"),
    ("task: weights only", lambda: plotting.offset_task_figure({"a": [2.0, 1.0]}, {"N": [0.2, 0.8, 0.0]}),
     r"^offset_task_figure: attention\['N'\] must be a pair \(offsets, weights\), got attention\['N'\]=\[0.2, 0.8, 0.0\]"),
    ("task: weight above 1", lambda: plotting.offset_task_figure({"a": [2.0, 1.0]}, {"N": ([0, 1], [0.5, 3.0])}),
     r"^offset_task_figure: attention\['N'\]\[1\] must be attention weights in \[0, 1\], got max\(attention\['N'\]\[1\]\)=3"),
    ("task: empty loss", lambda: plotting.offset_task_figure({"a": []}, ATTENTION),
     r"^offset_task_figure: losses\['a'\] must not be empty, got losses\['a'\].shape=\(0,\)"),
    ("task: nan loss", lambda: plotting.offset_task_figure({"a": [2.0, NAN]}, ATTENTION),
     r"^offset_task_figure: losses\['a'\] must be finite everywhere, got losses\['a'\]\[1\]=nan"),
    ("task: negative loss on a log axis", lambda: plotting.offset_task_figure({"a": [2.0, -1.0]}, ATTENTION),
     r"^offset_task_figure: losses\['a'\] must be >= 0 everywhere, got losses\['a'\]\[1\]=-1.0"),
    ("task: losses a list", lambda: plotting.offset_task_figure([2.0, 1.0], ATTENTION),
     r"^offset_task_figure: losses must be a dict, got losses=\[2.0, 1.0\] \(a list\)"),
    ("task: no attention", lambda: plotting.offset_task_figure({"a": [2.0, 1.0]}, {}),
     r"^offset_task_figure: attention must have at least one entry"),
    ("task: negative chance", lambda: plotting.offset_task_figure({"a": [2.0, 1.0]}, ATTENTION, chance=-1.0),
     r"^offset_task_figure: chance must be None or a positive finite number, got chance=-1.0"),
    # summarize_comparison, comparison_figure: the comparison's JSON, smooth
    ("summary: no runs key", lambda: plotting.summarize_comparison({"run": RUNS}),
     r"^summarize_comparison: results must have the keys \('runs',\), got results without \['runs'\]"),
    ("summary: no runs", lambda: plotting.summarize_comparison({"runs": []}),
     r"^summarize_comparison: results\['runs'\] must be a non-empty list of runs, got results\['runs'\]=\[\]"),
    ("summary: run without seed", lambda: plotting.summarize_comparison({"runs": [{"position": "rope"}]}),
     r"^summarize_comparison: results\['runs'\]\[0\] must have the keys .* without \['seed', 'parameters'"),
    ("summary: seeds of two lengths", lambda: plotting.summarize_comparison(_runs(train_loss=[1.0])),
     r"^summarize_comparison: every run of position 'rope' must have one length of 'train_loss', got lengths \[1, 2\]"),
    ("summary: val_loss against val_steps", lambda: plotting.summarize_comparison(_runs(val_loss=[1.0, 2.0])),
     r"^summarize_comparison: results\['runs'\]\[0\]\['val_loss'\] must have one loss per step, len\(val_steps\)=1, got results\['runs'\]\[0\]\['val_loss'\]\.shape=\(2,\)"),
    # summarized, a diverged run is data (see the test below); drawn, its NaN is refused
    ("comparison: nan final loss", lambda: plotting.comparison_figure(_runs(final_val_loss=NAN)),
     r"^comparison_figure: results\['runs'\]\[0\]\['final_val_loss'\] must be a finite number, got .*=nan"),
    ("comparison: smooth 0", lambda: plotting.comparison_figure({"runs": RUNS}, smooth=0),
     r"^comparison_figure: smooth must be a positive integer, got smooth=0"),
    ("comparison: smooth float", lambda: plotting.comparison_figure({"runs": RUNS}, smooth=2.5),
     r"^comparison_figure: smooth must be a positive integer, got smooth=2.5"),
    ("comparison: empty training curves", lambda: plotting.comparison_figure({"runs": [dict(r, train_loss=[]) for r in RUNS]}),
     r"^summarize_comparison: results\['runs'\]\[0\]\['train_loss'\] must not be empty"),
    ("comparison: nan training loss", lambda: plotting.comparison_figure(_runs(train_loss=[2.0, NAN])),
     r"^comparison_figure: results\['runs'\]\[0\]\['train_loss'\] must be finite everywhere, got .*\[1\]=nan"),
    # decay_curves: dim and base named by decay_curves (not decay_bound), flags, grid, size
    ("decay: odd dim", lambda: plotting.decay_curves(dim=7), r"^decay_curves: dim must be a positive even integer, got dim=7$"),
    ("decay: base 1", lambda: plotting.decay_curves(base=1.0), r"^decay_curves: base must be a finite number > 1, got base=1.0$"),
    ("decay: flag as str", lambda: plotting.decay_curves(normalise="yes"), r"^decay_curves: normalise must be True or False, got normalise='yes'$"),
    ("decay: flag as int", lambda: plotting.decay_curves(log_x=1), r"^decay_curves: log_x must be True or False, got log_x=1$"),
    ("decay: one point", lambda: plotting.decay_curves(n_points=1), r"^decay_curves: n_points must be at least 2 .* got n_points=1$"),
    ("decay: distance below 1", lambda: plotting.decay_curves(max_distance=0.4), r"^decay_curves: max_distance must be at least 1, got max_distance=0.4$"),
    ("decay: log axis without distances", lambda: plotting.decay_curves(max_distance=0.5, log_x=True),
     r"^decay_curves: max_distance must be at least 2 on a log axis .* got max_distance=0.5$"),
    ("decay: negative height", lambda: plotting.decay_curves(height=-1), r"^decay_curves: height must be a positive finite number, got height=-1$"),
    # random_score_band: four arrays of one length, dim
    ("band: empty", lambda: plotting.random_score_band([], [], [], []), r"^random_score_band: distance must not be empty, got distance.shape=\(0,\)"),
    ("band: nan mean", lambda: plotting.random_score_band([0, 1], [0.1, NAN], [8.0, 8.0], [0.2, 0.2]),
     r"^random_score_band: mean must be finite everywhere, got mean\[1\]=nan"),
    ("band: negative std", lambda: plotting.random_score_band([0, 1], [0.1, 0.2], [8.0, -8.0], [0.2, 0.2]),
     r"^random_score_band: std must be >= 0 everywhere, got std\[1\]=-8.0"),
    ("band: dim 0", lambda: plotting.random_score_band([0, 1], [0.1, 0.2], [8.0, 8.0], [0.2, 0.2], dim=0),
     r"^random_score_band: dim must be a positive integer, got dim=0$"),
    ("band: negative dim", lambda: plotting.random_score_band([0, 1], [0.1, 0.2], [8.0, 8.0], [0.2, 0.2], dim=-4),
     r"^random_score_band: dim must be a positive integer, got dim=-4$"),
    # pair_cosines: size (the rest is in test_decay.py)
    ("pair cosines: width 0", lambda: plotting.pair_cosines(dim=16, pairs=(0,), width=0),
     r"^pair_cosines: width must be a positive finite number, got width=0$"),
    # min_base_curve: arrays, fit
    ("min base: empty", lambda: plotting.min_base_curve([], []), r"^min_base_curve: context_lengths must not be empty"),
    ("min base: nan base", lambda: plotting.min_base_curve([1024, 2048], [4e3, NAN]),
     r"^min_base_curve: bases must be finite everywhere, got bases\[1\]=nan"),
    ("min base: fit of one number", lambda: plotting.min_base_curve([1024, 2048], [4e3, 1e4], fit=(1.0,)),
     r"^min_base_curve: fit must be None or a pair \(c, p\) of the power law c·L\^p, got fit=\(1.0,\)"),
    ("min base: negative c", lambda: plotting.min_base_curve([1024, 2048], [4e3, 1e4], fit=(-1.0, 1.6)),
     r"^min_base_curve: fit\[0\] must be a positive finite number, got fit\[0\]=-1.0"),
    # sinusoidal_figure: the table, starts, max_offset
    ("sinusoidal: str table", lambda: plotting.sinusoidal_figure("pe"), r"^sinusoidal_figure: pe must be an array of real numbers, got pe='pe'"),
    ("sinusoidal: None", lambda: plotting.sinusoidal_figure(None), r"^sinusoidal_figure: pe must be an array of real numbers, got pe=None"),
    ("sinusoidal: nan table", lambda: plotting.sinusoidal_figure(np.full((160, 16), NAN)),
     r"^sinusoidal_figure: pe must be finite everywhere, got pe\[0, 0\]=nan \(pe.shape=\(160, 16\)\)"),
    ("sinusoidal: one start", lambda: plotting.sinusoidal_figure(sinusoidal_encoding(160, 16), starts=5),
     r"^sinusoidal_figure: starts must be a sequence of integer positions, got starts=5$"),
    ("sinusoidal: float start", lambda: plotting.sinusoidal_figure(sinusoidal_encoding(160, 16), starts=(1.5,)),
     r"^sinusoidal_figure: starts must be a sequence of integer positions, got starts=\(1.5,\)$"),
    ("sinusoidal: float max_offset", lambda: plotting.sinusoidal_figure(sinusoidal_encoding(160, 16), max_offset=2.5),
     r"^sinusoidal_figure: max_offset must be an integer ≥ 0, got max_offset=2.5$"),
    # shaw_figure: κ, the index table
    ("shaw: str kappa", lambda: plotting.shaw_figure(shaw_relative_index(8, 2), "2"),
     r"^shaw_figure: max_relative_position must be a positive integer, got max_relative_position='2'$"),
    ("shaw: kappa 0", lambda: plotting.shaw_figure(shaw_relative_index(8, 2), 0),
     r"^shaw_figure: max_relative_position must be a positive integer, got max_relative_position=0$"),
    ("shaw: bool kappa", lambda: plotting.shaw_figure(shaw_relative_index(8, 2), True),
     r"^shaw_figure: max_relative_position must be a positive integer, got max_relative_position=True$"),
    ("shaw: empty", lambda: plotting.shaw_figure(np.zeros((0, 0)), 2), r"^shaw_figure: index must not be empty, got index.shape=\(0, 0\)$"),
    ("shaw: non-integer index", lambda: plotting.shaw_figure(np.full((4, 4), 1.5), 2),
     r"^shaw_figure: index must hold integers .* got 1.5 in index of shape \(4, 4\)$"),
    # t5_bucket_figure: three arrays of one length, max_distance
    ("t5: bidirectional short", lambda: plotting.t5_bucket_figure(T5[0], T5[1][:5], T5[2], max_distance=16),
     r"^t5_bucket_figure: buckets_bidirectional must have one bucket per offset, len\(relative\)=41, got buckets_bidirectional\.shape=\(5,\)$"),
    ("t5: causal short", lambda: plotting.t5_bucket_figure(T5[0], T5[1], T5[2][:5], max_distance=16),
     r"^t5_bucket_figure: buckets_causal must have one bucket per offset, len\(relative\)=41, got buckets_causal\.shape=\(5,\)$"),
    ("t5: a batch of rows", lambda: plotting.t5_bucket_figure(*(t[None] for t in T5), max_distance=16),
     r"^t5_bucket_figure: relative must be 1-D, got relative.shape=\(1, 41\)$"),
    ("t5: empty", lambda: plotting.t5_bucket_figure([], [], [], max_distance=16), r"^t5_bucket_figure: relative must not be empty"),
    ("t5: max_distance None", lambda: plotting.t5_bucket_figure(*T5, max_distance=None),
     r"^t5_bucket_figure: max_distance must be a positive integer, got max_distance=None$"),
    ("t5: negative max_distance", lambda: plotting.t5_bucket_figure(*T5, max_distance=-3),
     r"^t5_bucket_figure: max_distance must be a positive integer, got max_distance=-3$"),
    # alibi_figure: (H, T, T), head, max_distance
    ("alibi: one head's matrix", lambda: plotting.alibi_figure(alibi_bias(4, 2)[0]),
     r"^alibi_figure: bias must be a non-empty \(H, T, T\) array, .* got bias.shape=\(4, 4\)$"),
    ("alibi: not square", lambda: plotting.alibi_figure(np.zeros((2, 3, 4))), r"^alibi_figure: bias must be .* got bias.shape=\(2, 3, 4\)$"),
    ("alibi: no positions", lambda: plotting.alibi_figure(np.zeros((2, 0, 0))), r"^alibi_figure: bias must be .* got bias.shape=\(2, 0, 0\)$"),
    ("alibi: nan bias", lambda: plotting.alibi_figure(np.full((1, 2, 2), NAN)), r"^alibi_figure: bias must be finite or −inf .* got nan in bias of shape \(1, 2, 2\)$"),
    ("alibi: float head", lambda: plotting.alibi_figure(alibi_bias(4, 2), head=1.5), r"^alibi_figure: head must be an integer in \[0, 2\), got head=1.5$"),
    ("alibi: bool head", lambda: plotting.alibi_figure(alibi_bias(4, 2), head=True), r"^alibi_figure: head must be an integer in \[0, 2\), got head=True$"),
    ("alibi: negative max_distance", lambda: plotting.alibi_figure(alibi_bias(4, 2), max_distance=-2),
     r"^alibi_figure: max_distance must be an integer >= 0, got max_distance=-2$"),
    ("alibi: float max_distance", lambda: plotting.alibi_figure(alibi_bias(4, 2), max_distance=1.5),
     r"^alibi_figure: max_distance must be an integer >= 0, got max_distance=1.5$"),
    # complex_product: z, w of another type
    ("complex: str", lambda: plotting.complex_product("1+2j", 1j), r"^complex_product: z must be a complex number \(or a real one\), got z='1\+2j' \(a str\)$"),
    ("complex: None", lambda: plotting.complex_product(1j, None), r"^complex_product: w must be a complex number .* got w=None \(a NoneType\)$"),
    ("complex: a pair", lambda: plotting.complex_product([1, 2], 1j), r"^complex_product: z must be a complex number .* got z=\[1, 2\] \(a list\)$"),
    # rotation_2d: vectors of another type, size
    ("rotation: str q", lambda: plotting.rotation_2d("ab", [0, 1], 3, 1), r"^rotation_2d: q must be 2 finite numbers, got q='ab'$"),
    ("rotation: theta nan", lambda: plotting.rotation_2d([1, 0], [0, 1], 3, 1, theta=NAN),
     r"^rotation_2d: theta must be a finite number, got theta=nan$"),
    ("rotation: width 0", lambda: plotting.rotation_2d([1, 0], [0, 1], 3, 1, width=0), r"^rotation_2d: width must be a positive finite number, got width=0$"),
    # wavelengths: context_length
    ("wavelengths: inf context", lambda: plotting.wavelengths(context_length=INF),
     r"^wavelengths: context_length must be None or a positive finite number, got context_length=inf$"),
    ("wavelengths: bool context", lambda: plotting.wavelengths(context_length=True),
     r"^wavelengths: context_length must be None or a positive finite number, got context_length=True$"),
    # angle_errors: errors a list, str or NaN values, floor
    ("angle errors: a list", lambda: plotting.angle_errors(np.arange(4), [np.zeros(4)]),
     r"^angle_errors: errors must be a dict, got errors=\[array\(.*\)\] \(a list\)$"),
    ("angle errors: str positions", lambda: plotting.angle_errors("0123", {"a": np.zeros(4)}),
     r"^angle_errors: positions must be an array of real numbers, got positions='0123'"),
    ("angle errors: nan error", lambda: plotting.angle_errors(np.arange(4), {"bf16": [0.0, NAN, 0.0, 0.0]}),
     r"^angle_errors: errors\['bf16'\] must be finite everywhere, got errors\['bf16'\]\[1\]=nan \(errors\['bf16'\].shape=\(4,\)\)$"),
    ("angle errors: inf floor", lambda: plotting.angle_errors(np.arange(4), {"a": np.zeros(4)}, floor=INF),
     r"^angle_errors: floor must be a positive finite number, got floor=inf$"),
    # latency_bandwidth_fit, rope_time_model: malformed cases, heads, contenders, size
    ("gpu: cases a str", lambda: plotting.latency_bandwidth_fit({"cases": "abc"}),
     r"^latency_bandwidth_fit: bench\['cases'\] must be a list of cases, got bench\['cases'\]='abc'$"),
    ("gpu: case a number", lambda: plotting.latency_bandwidth_fit({"cases": [1, 2]}),
     r"^latency_bandwidth_fit: every case must be a dict, got bench\['cases'\]\[0\]=1$"),
    ("gpu: results None", lambda: plotting.latency_bandwidth_fit(_case(results=None)),
     r"^latency_bandwidth_fit: every case's 'results' must be a dict of rows, got case 'B=1, T=1' with results=None$"),
    ("gpu: str time", lambda: plotting.latency_bandwidth_fit(_case(results={gpu.COPY: {"us": "2.0"}})),
     r"^latency_bandwidth_fit: every case's 'device copy \(same bytes\)' time 'us' must be a positive finite number, got case 'B=1, T=1' with us='2.0'$"),
    ("gpu: negative time", lambda: plotting.latency_bandwidth_fit(_case(results={gpu.COPY: {"us": -1.0}})),
     r"^latency_bandwidth_fit: .* time 'us' must be a positive finite number, got case 'B=1, T=1' with us=-1.0$"),
    ("gpu: str batch", lambda: plotting.latency_bandwidth_fit(_case(B="1")),
     r"^latency_bandwidth_fit: every case's 'B' must be a positive integer, got case 'B=1, T=1' with B='1'$"),
    ("gpu: negative bytes", lambda: plotting.latency_bandwidth_fit(_case(bytes=-16)),
     r"^latency_bandwidth_fit: every case's 'bytes' must be a positive integer, got case 'B=1, T=1' with bytes=-16$"),
    ("gpu: heads an int", lambda: plotting.rope_time_model(BENCH, heads=8),
     r"^rope_time_model: heads must be None or a pair \(query heads, key heads\), got heads=8$"),
    ("gpu: three heads", lambda: plotting.rope_time_model(BENCH, heads=(1, 2, 3)),
     r"^rope_time_model: heads must be None or a pair .* got heads=\(1, 2, 3\)$"),
    ("gpu: contender pair", lambda: plotting.rope_time_model(BENCH, contenders=[("label", "row")]),
     r"^rope_time_model: contenders must be a sequence of \(label, prefill row, decode row\) string triples, got contenders=\[\('label', 'row'\)\]$"),
    ("gpu: width 0", lambda: plotting.rope_time_model(BENCH, width=0), r"^rope_time_model: width must be a positive finite number, got width=0$"),
]


@pytest.mark.parametrize("call,pattern", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_argument_is_refused_by_name(call, pattern):
    try:
        with pytest.raises(ValueError, match=pattern):
            call()
    finally:
        plt.close("all")


def test_the_case_ids_are_unique():
    assert len({c[0] for c in CASES}) == len(CASES)


def test_a_diverged_run_is_summarized():
    """A run whose loss went to NaN is data to summarize (its mean is NaN), though not drawable."""
    runs = _runs(final_val_loss=NAN, train_loss=[2.0, NAN])
    summary = plotting.summarize_comparison(runs)
    assert any(math.isnan(s["mean"]) for s in summary.values())
