"""Bad arguments to the public API: each one raises an error that names it, never a silent answer.

The project's standard: bad input gets a ValueError (or TypeError) whose message starts with the
function's name and says which argument was wrong, what was expected and what it got
(``apply_rope: head_dim must be even, got x.shape=(2, 4, 16, 63)``). A call that returns, or that
fails with a raw error from torch or numpy internals (an IndexError, "could not convert string to
float"), fails its row here.

Two tables:

- ``SPECS``: a valid call per function and the kind of each scalar argument. One row per (function,
  argument) states a property: every bad value of that kind (``BAD``: a str for a number, a float or
  a bool for an int, NaN, inf, zero, negative, an unknown option, an int where a bool is meant, ...)
  substituted for it raises, and the message holds ``"<function>: "`` and ``"<argument>=<repr>"``.
  The valid call itself must return (``test_valid_baseline``), so a row tests only its argument.
- ``ROWS``: hand-written cases for tensors, shapes, dtypes and arguments that disagree with each other:
  (id, callable, args builder, exception types, words the message must contain).

Values a documented contract accepts are left out (``_bad_values``): ``truncate=None`` in YaRN,
``max_base=inf`` in ``min_base``; ``beta_fast``/``beta_slow`` of None or 0 (Hugging Face's defaults) and
a 1-d ``offset`` in ``apply_rope`` (broadcast over T) are not in the table at all.

Kernel rows (``ropebook.kernels``) run under Triton's interpreter on the CPU, as in ``test_kernels.py``;
they are few and small, and they fail before any launch.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import math
from fractions import Fraction

import numpy as np
import pytest
import sympy as sp
import torch

import ropebook as rb
from kernel_cases import interpret_on_cpu
from ropebook import attention, crope, data, decay, lrpe, model, positions, reference, scaling
from ropebook.experiments import lrpe_recall, offset_task

NAN, INF = math.nan, math.inf
HAS_TRITON = importlib.util.find_spec("triton") is not None
CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
ERRORS = (ValueError, TypeError)  # what bad input may raise


@pytest.fixture(autouse=True)
def _interpreter_on_cpu(monkeypatch):
    """As in test_kernels.py: without CUDA the kernel rows run under Triton's interpreter."""
    interpret_on_cpu(monkeypatch)


# ----------------------------------------------------------------------------- bad values by kind

BAD = {
    "positive int": [("str", "8"), ("float", 8.0), ("zero", 0), ("negative", -2), ("bool", True)],
    "even int": [("str", "8"), ("float", 8.0), ("zero", 0), ("negative", -2), ("bool", True), ("odd", 7),
                 ("0-d tensor", torch.tensor(8))],
    # b = 1 makes every θ_i 1, b < 1 turns the frequencies upside down: base > 1 everywhere
    "base": [("str", "1e4"), ("nan", NAN), ("inf", INF), ("zero", 0.0), ("negative", -1.0), ("bool", True),
             ("one", 1.0), ("below one", 0.5), ("0-d tensor", torch.tensor(1e4))],
    "positive number": [("str", "1"), ("nan", NAN), ("inf", INF), ("zero", 0.0), ("negative", -1.0), ("bool", True)],
    "factor": [("str", "2"), ("nan", NAN), ("inf", INF), ("below one", 0.5), ("bool", True), ("Fraction", Fraction(2))],
    "layout": [("neox", "neox"), ("None", None), ("upper case", "HALF")],
    "flag": [("str", "yes"), ("int", 1), ("None", None)],
    "seq_len": [("str", "16"), ("nan", NAN), ("inf", INF), ("bool", True)],
    "scaling": [("by name", "linear"), ("number", 2.0)],
    "float dtype": [("int64", torch.int64), ("bool", torch.bool), ("str", "float32")],
    "freq dtype": [("bf16", torch.bfloat16), ("fp16", torch.float16), ("int64", torch.int64), ("str", "float32")],
    "finite real": [("str", "1"), ("nan", NAN), ("inf", INF), ("bool", True), ("complex", 1j)],
    "seed": [("str", "0"), ("float", 1.5), ("bool", True)],
}


def _x(*shape, dtype=torch.float32):
    return torch.randn(*shape, dtype=dtype, generator=torch.Generator().manual_seed(0))


@functools.lru_cache(maxsize=None)
def _copy_model():
    torch.manual_seed(0)
    return lrpe_recall.CopyModel(lrpe_recall.TaskConfig(vocab=10, dim=16, heads=2, seq_len=8), "rope")


@functools.lru_cache(maxsize=None)
def _offset_model():
    torch.manual_seed(0)
    return offset_task.OffsetModel(4, 16)  # ids 0 … 5: four content tokens, NEXT and NEXT2


@functools.lru_cache(maxsize=None)
def _tiny_lm():
    torch.manual_seed(0)
    return model.TinyLM(model.ModelConfig(vocab_size=10, dim=16, n_layers=1, n_heads=2, max_seq_len=8))


def _generator():
    return torch.Generator().manual_seed(0)


_DYN = scaling.DynamicNTK(2.0, original_max_positions=4)

# (function label as its messages name it, callable, valid keyword arguments, {argument: kind})
SPECS = [
    # ropebook.rope
    ("rope_frequencies", rb.rope_frequencies, lambda: dict(dim=8),
     {"dim": "even int", "base": "base", "dtype": "freq dtype", "scaling": "scaling"}),
    ("rope_frequencies", rb.rope_frequencies, lambda: dict(dim=8, scaling=_DYN), {"seq_len": "seq_len"}),
    ("rope_cos_sin", rb.rope_cos_sin, lambda: dict(positions=torch.arange(3), dim=8),
     {"dim": "even int", "base": "base", "dtype": "float dtype", "scaling": "scaling", "seq_len": "seq_len"}),
    ("apply_rope", rb.apply_rope, lambda: dict(x=_x(2, 3, 8)),
     {"base": "base", "layout": "layout", "scaling": "scaling", "rotary_dim": "even int", "seq_len": "seq_len"}),
    ("apply_rope_complex", rb.apply_rope_complex, lambda: dict(x=_x(2, 3, 8)),
     {"base": "base", "layout": "layout", "scaling": "scaling", "rotary_dim": "even int", "seq_len": "seq_len"}),
    # ropebook.rotary
    ("RotaryEmbedding", rb.RotaryEmbedding, lambda: dict(dim=8),
     {"dim": "even int", "base": "base", "layout": "layout", "scaling": "scaling", "rotary_dim": "even int",
      "max_positions": "positive int"}),
    ("RotaryEmbedding.cos_sin", lambda **kw: rb.RotaryEmbedding(8).cos_sin(**kw), lambda: dict(positions=torch.arange(3)),
     {"dtype": "float dtype", "seq_len": "seq_len"}),
    ("layout_permutation", rb.layout_permutation, lambda: dict(head_dim=8), {"head_dim": "even int"}),
    ("interleaved_to_half_weights", rb.interleaved_to_half_weights, lambda: dict(w=_x(16, 3), n_heads=2),
     {"n_heads": "positive int", "head_dim": "even int"}),
    # ropebook.scaling
    ("Linear", scaling.Linear, lambda: dict(factor=2.0), {"factor": "factor"}),
    ("Linear.inv_freq", lambda **kw: scaling.Linear(2.0).inv_freq(**kw), lambda: dict(dim=8),
     {"dim": "even int", "base": "base", "dtype": "freq dtype"}),
    ("NTKAware", scaling.NTKAware, lambda: dict(factor=2.0), {"factor": "factor"}),
    ("DynamicNTK", scaling.DynamicNTK, lambda: dict(factor=2.0, original_max_positions=4),
     {"factor": "factor", "original_max_positions": "positive int"}),
    ("DynamicNTK.inv_freq", lambda **kw: _DYN.inv_freq(**kw), lambda: dict(dim=8),
     {"seq_len": "seq_len", "dtype": "freq dtype"}),
    ("YaRN", scaling.YaRN, lambda: dict(factor=2.0, original_max_positions=64),
     {"factor": "factor", "original_max_positions": "positive int", "attention_factor": "positive number",
      "truncate": "flag"}),
    ("Llama3", scaling.Llama3, lambda: dict(factor=2.0, original_max_positions=64),
     {"factor": "factor", "original_max_positions": "positive int"}),
    ("LongRoPE", scaling.LongRoPE, lambda: dict(short_factor=[1.0, 1.0], long_factor=[1.0, 2.0], original_max_positions=4,
                                                max_positions=8),
     {"original_max_positions": "positive int", "max_positions": "positive int", "factor": "factor",
      "attention_factor": "positive number"}),
    # ropebook.reference
    ("reference.rope_frequencies", reference.rope_frequencies, lambda: dict(dim=8),
     {"dim": "even int", "base": "base", "scaling": "scaling"}),
    ("rotation_matrix_2d", reference.rotation_matrix_2d, lambda: dict(angle=0.5), {"angle": "finite real"}),
    ("pair_indices", reference.pair_indices, lambda: dict(i=1, dim=8), {"dim": "even int", "layout": "layout"}),
    ("rope_matrix", reference.rope_matrix, lambda: dict(m=3, dim=8),
     {"m": "finite real", "dim": "even int", "base": "base", "layout": "layout"}),
    ("apply_rope_reference", reference.apply_rope_reference, lambda: dict(x=np.ones((3, 8))),
     {"base": "base", "layout": "layout", "rotary_dim": "even int", "attention_factor": "positive number",
      "scaling": "scaling"}),
    # ropebook.positions
    ("sinusoidal_encoding", positions.sinusoidal_encoding, lambda: dict(seq_len=4, dim=8),
     {"seq_len": "positive int", "dim": "even int", "base": "base", "dtype": "float dtype"}),
    ("shaw_relative_index", positions.shaw_relative_index, lambda: dict(seq_len=4, max_relative_position=2),
     {"seq_len": "positive int", "max_relative_position": "positive int"}),
    ("t5_relative_bucket", positions.t5_relative_bucket, lambda: dict(relative_position=torch.arange(-3, 4)),
     {"bidirectional": "flag", "num_buckets": "even int", "max_distance": "positive int"}),
    ("alibi_slopes", positions.alibi_slopes, lambda: dict(n_heads=4), {"n_heads": "positive int"}),
    ("alibi_bias", positions.alibi_bias, lambda: dict(seq_len=4, n_heads=2),
     {"seq_len": "positive int", "n_heads": "positive int"}),
    # ropebook.attention
    ("softmax_attention", attention.softmax_attention, lambda: dict(q=_x(5, 4), k=_x(5, 4), v=_x(5, 3)),
     {"causal": "flag", "scale": "positive number"}),
    ("linear_attention_weights", attention.linear_attention_weights, lambda: dict(q=_x(5, 4), k=_x(5, 4)),
     {"causal": "flag"}),
    ("linear_attention", attention.linear_attention, lambda: dict(q=_x(5, 4), k=_x(5, 4), v=_x(5, 3), causal=True),
     {"causal": "flag", "chunk_size": "positive int"}),
    # ropebook.lrpe
    ("dct_matrix", lrpe.dct_matrix, lambda: dict(head_dim=4), {"head_dim": "even int"}),
    ("Rotation", lrpe.Rotation, lambda: dict(head_dim=4), {"head_dim": "even int", "base": "base", "layout": "layout"}),
    ("Rotation.matrix", lambda **kw: lrpe.Rotation(4).matrix(**kw), lambda: dict(m=2), {"m": "finite real"}),
    ("Unitary", lrpe.Unitary, lambda: dict(head_dim=4, basis="householder"),
     {"head_dim": "even int", "base": "base", "seed": "seed"}),
    ("LearnedHouseholder", lrpe.LearnedHouseholder, lambda: dict(head_dim=4), {"head_dim": "even int", "seed": "seed"}),
    ("Permutation", lrpe.Permutation, lambda: dict(head_dim=3), {"head_dim": "positive int", "seed": "seed"}),
    # ropebook.crope
    ("ComplexLinear", crope.ComplexLinear, lambda: dict(in_features=4, out_features=4),
     {"in_features": "even int", "out_features": "even int"}),
    ("RoPEAttention", crope.RoPEAttention, lambda: dict(dim=8, n_heads=2),
     {"dim": "even int", "n_heads": "positive int", "base": "base", "rope": "flag", "causal": "flag"}),
    ("CRoPEAttention", crope.CRoPEAttention, lambda: dict(dim=8, n_heads=2), {"rope": "flag", "causal": "flag"}),
    # ropebook.data
    ("stdlib_corpus", data.stdlib_corpus, lambda: dict(max_bytes=1000), {"max_bytes": "positive int"}),
    ("random_windows", data.random_windows,
     lambda: dict(data=torch.arange(20), batch_size=2, seq_len=4, generator=_generator()),
     {"batch_size": "positive int", "seq_len": "positive int"}),
    ("validation_windows", data.validation_windows, lambda: dict(data=torch.arange(20), n_windows=3, seq_len=4),
     {"n_windows": "positive int", "seq_len": "positive int"}),
    ("next_token_task", data.next_token_task,
     lambda: dict(batch_size=2, seq_len=6, n_content=4, generator=_generator()),
     {"batch_size": "positive int", "seq_len": "positive int", "n_content": "positive int"}),
    # ropebook.model
    ("ModelConfig", model.ModelConfig, lambda: dict(),
     {"vocab_size": "positive int", "dim": "positive int", "n_heads": "positive int", "position": "layout",
      "base": "base"}),
    # ropebook.decay
    ("decay_bound", rb.decay_bound, lambda: dict(distance=[0, 10], dim=8), {"dim": "even int", "base": "base"}),
    ("relative_scores", decay.relative_scores, lambda: dict(q=[1.0, 1.0], k=[1.0, 0.0], distance=[0.0, 1.0]),
     {"base": "base"}),
    ("random_score_stats", decay.random_score_stats, lambda: dict(distance=[0, 10], dim=8, n_samples=10),
     {"dim": "even int", "base": "base", "n_samples": "positive int", "seed": "seed"}),
    ("cos_sum", decay.cos_sum, lambda: dict(distance=[0, 10], dim=8), {"dim": "even int", "base": "base"}),
    ("satisfies_base_bound", decay.satisfies_base_bound, lambda: dict(base=1e4, context_length=64, dim=8),
     {"base": "base", "context_length": "positive int", "dim": "even int"}),
    ("min_base", rb.min_base, lambda: dict(context_length=64, dim=8),
     {"context_length": "positive int", "dim": "even int", "per_decade": "positive int", "max_base": "positive number"}),
]


def _bad_values(fn_label: str, arg: str, kind: str):
    """BAD[kind], adjusted where an argument's contract is narrower or wider than its kind."""
    values = BAD[kind]
    if (fn_label, arg) == ("ModelConfig", "position"):
        return [("unknown", "alibi"), ("None", None), ("upper case", "ROPE")]
    if (fn_label, arg) == ("YaRN", "truncate"):
        return [v for v in values if v[0] != "None"]  # None: no truncation, as in Hugging Face
    if (fn_label, arg) == ("random_score_stats", "seed"):
        return values + [("negative", -1)]  # numpy seeds are non-negative
    if fn_label == "next_token_task" and arg in ("seq_len", "n_content"):
        return [v for v in values if v[0] != "zero"] + [("too small", 2 if arg == "seq_len" else 1)]
    if (fn_label, arg) == ("min_base", "max_base"):
        return [v for v in values if v[0] != "inf"]  # inf: no limit
    if (fn_label, arg) == ("stdlib_corpus", "max_bytes"):
        return [v for v in values if v[0] != "zero"] + [("one", 1)]
    return values


def _spec_rows():
    """One row per (function, argument): its args builder takes the bad value, and the row's values are all of
    that argument's kind, each of which must be rejected with ``"<function>: "`` and ``"<argument>=<repr>"``."""
    rows = []
    for label, fn, valid, kinds in SPECS:
        for arg, kind in kinds.items():
            def args(value, valid=valid, arg=arg):
                return (), {**valid(), arg: value}

            values = _bad_values(label, arg, kind)
            rows.append(pytest.param(fn, args, values, (f"{label}: ", f"{arg}={{value!r}}"), id=f"{label}-{arg}"))
    return rows


@pytest.mark.parametrize("label, fn, valid", [pytest.param(s[0], s[1], s[2], id=f"{s[0]}-{i}") for i, s in enumerate(SPECS)])
def test_valid_baseline(label, fn, valid):
    """The call every crossed row starts from is itself valid: a row then tests only the argument it replaces."""
    fn(**valid())


# ----------------------------------------------------------------------------- hand-written rows

X = lambda: _x(2, 3, 8)  # noqa: E731  (B·H, T, D)
Q4 = lambda: _x(1, 2, 3, 8)  # noqa: E731  (B, H, T, D)
K4 = lambda: _x(1, 1, 3, 8)  # noqa: E731
QKV = lambda: (_x(5, 4), _x(5, 4), _x(5, 3))  # noqa: E731
I64 = torch.int64


def call(*args, **kwargs):
    """An args builder for arguments made once, with the table (no row changes its inputs)."""
    return lambda: (args, kwargs)


def lazy(fn):
    """An args builder that makes its arguments when the row runs: ``lambda: (args, kwargs)``."""
    return fn


def _rotary_forward(q, k, positions=None, **kw):
    return rb.RotaryEmbedding(8)(q, k, positions, **kw)


def _lm(idx, targets=None):
    return _tiny_lm()(idx, targets)


# (id, callable, args builder, exception types, words the message must contain)
ROWS = [
    # --- apply_rope / apply_rope_complex: x, positions, offset, rotary_dim against x
    ("apply_rope x str", rb.apply_rope, call("abc"), ERRORS, ("apply_rope: ", "x must", "type(x)=str")),
    ("apply_rope x int", rb.apply_rope, lazy(lambda: ((torch.zeros(2, 3, 8, dtype=I64),), {})), ERRORS,
     ("apply_rope: ", "x must", "torch.int64")),
    ("apply_rope x 1-d", rb.apply_rope, lazy(lambda: ((_x(8),), {})), ERRORS, ("apply_rope: ", "x.shape=(8,)")),
    ("apply_rope x complex", rb.apply_rope, lazy(lambda: ((torch.zeros(3, 8, dtype=torch.complex64),), {})), ERRORS,
     ("apply_rope: ", "x must", "complex64")),
    ("apply_rope odd head_dim", rb.apply_rope, lazy(lambda: ((torch.zeros(2, 4, 16, 63),), {})), ERRORS,
     ("apply_rope: head_dim must be even", "x.shape=(2, 4, 16, 63)")),
    ("apply_rope rotary_dim > head_dim", rb.apply_rope, lazy(lambda: ((X(),), dict(rotary_dim=10))), ERRORS,
     ("apply_rope: ", "rotary_dim=10", "head_dim=8")),
    ("apply_rope positions shape", rb.apply_rope, lazy(lambda: ((X(), torch.arange(5)), {})), ERRORS,
     ("apply_rope: ", "positions.shape=(5,)")),
    ("apply_rope positions nan", rb.apply_rope, lazy(lambda: ((X(), torch.tensor([0.0, NAN, 2.0])), {})), ERRORS,
     ("apply_rope: ", "positions must be finite", "nan")),
    ("apply_rope positions inf list", rb.apply_rope, call(_x(2, 3, 8), [0.0, 1.0, INF]), ERRORS,
     ("apply_rope: ", "positions must be finite", "inf")),
    ("apply_rope positions bool", rb.apply_rope, lazy(lambda: ((X(), torch.ones(3, dtype=torch.bool)), {})), ERRORS,
     ("apply_rope: ", "positions", "torch.bool")),
    ("apply_rope positions complex", rb.apply_rope, lazy(lambda: ((X(), torch.zeros(3, dtype=torch.complex64)), {})),
     ERRORS, ("apply_rope: ", "positions", "complex64")),
    ("apply_rope positions str", rb.apply_rope, call(_x(2, 3, 8), "abc"), ERRORS, ("apply_rope: ", "positions='abc'")),
    ("apply_rope positions ragged list", rb.apply_rope, call(_x(2, 3, 8), [[0, 1], [2]]), ERRORS,
     ("apply_rope: ", "positions=")),
    ("apply_rope offset str", rb.apply_rope, call(_x(2, 3, 8), offset="3"), ERRORS, ("apply_rope: ", "offset='3'")),
    ("apply_rope offset nan", rb.apply_rope, call(_x(2, 3, 8), offset=NAN), ERRORS, ("apply_rope: ", "offset=nan")),
    ("apply_rope offset inf", rb.apply_rope, call(_x(2, 3, 8), offset=-INF), ERRORS, ("apply_rope: ", "offset=-inf")),
    ("apply_rope offset bool", rb.apply_rope, call(_x(2, 3, 8), offset=True), ERRORS, ("apply_rope: ", "offset=True")),
    ("apply_rope offset None", rb.apply_rope, call(_x(2, 3, 8), offset=None), ERRORS, ("apply_rope: ", "offset=None")),
    ("apply_rope offset shape", rb.apply_rope, lazy(lambda: ((X(),), dict(offset=torch.zeros(4, 1, dtype=I64)))),
     ERRORS, ("apply_rope: ", "offset.shape=(4, 1)")),
    ("apply_rope offset bool tensor", rb.apply_rope, lazy(lambda: ((X(),), dict(offset=torch.tensor(True)))), ERRORS,
     ("apply_rope: ", "offset", "torch.bool")),
    ("apply_rope offset nan tensor", rb.apply_rope, lazy(lambda: ((X(),), dict(offset=torch.tensor(NAN)))), ERRORS,
     ("apply_rope: ", "offset must be finite")),
    ("apply_rope backend", rb.apply_rope, call(_x(2, 3, 8), backend="cuda"), ERRORS, ("apply_rope: ", "backend='cuda'")),
    ("apply_rope backend None", rb.apply_rope, call(_x(2, 3, 8), backend=None), ERRORS, ("apply_rope: ", "backend=None")),
    ("apply_rope seq_len list", rb.apply_rope, call(_x(2, 3, 8), seq_len=[3]), ERRORS, ("apply_rope: ", "seq_len=[3]")),
    ("apply_rope seq_len tensor of 2", rb.apply_rope, lazy(lambda: ((X(),), dict(seq_len=torch.tensor([3, 4])))), ERRORS,
     ("apply_rope: ", "seq_len")),
    ("apply_rope_complex x int", rb.apply_rope_complex, lazy(lambda: ((torch.zeros(3, 8, dtype=I64),), {})), ERRORS,
     ("apply_rope_complex: ", "x must", "torch.int64")),
    ("apply_rope_complex odd head_dim", rb.apply_rope_complex, lazy(lambda: ((torch.zeros(3, 5),), {})), ERRORS,
     ("apply_rope_complex: head_dim must be even", "x.shape=(3, 5)")),
    ("apply_rope_complex positions shape", rb.apply_rope_complex, lazy(lambda: ((X(), torch.arange(4)), {})), ERRORS,
     ("apply_rope_complex: ", "positions.shape=(4,)")),
    ("apply_rope_complex positions str", rb.apply_rope_complex, call(_x(2, 3, 8), "abc"), ERRORS,
     ("apply_rope_complex: ", "positions='abc'")),
    ("apply_rope_complex offset nan", rb.apply_rope_complex, call(_x(2, 3, 8), offset=NAN), ERRORS,
     ("apply_rope_complex: ", "offset=nan")),
    # positions in float16/bfloat16 have been rounded before they arrive (bf16: 257 → 256): refused, as are float32
    # positions past 2^24, the last integer float32 holds exactly
    ("apply_rope positions bf16", rb.apply_rope, lazy(lambda: ((X(), torch.arange(3).bfloat16()), {})), ERRORS,
     ("apply_rope: positions must be integers or float32/float64", "positions.dtype=torch.bfloat16",
      "bfloat16 holds integers exactly only up to 256")),
    ("apply_rope positions fp16", rb.apply_rope, lazy(lambda: ((X(), torch.arange(3).half()), {})), ERRORS,
     ("apply_rope: ", "positions.dtype=torch.float16", "float16 holds integers exactly only up to 2048")),
    ("apply_rope offset bf16 tensor", rb.apply_rope, lazy(lambda: ((X(),), dict(offset=torch.tensor(300.0).bfloat16()))),
     ERRORS, ("apply_rope: offset must be integers or float32/float64", "offset.dtype=torch.bfloat16")),
    ("apply_rope positions float32 past 2^24", rb.apply_rope,
     lazy(lambda: ((X(), torch.tensor([0.0, 1.0, 2.0**24 + 2])), {})), ERRORS,
     ("apply_rope: float32 positions must be at most 2**24", "got 16777218", "pass int64 or float64")),
    ("apply_rope_complex positions bf16", rb.apply_rope_complex, lazy(lambda: ((X(), torch.arange(3).bfloat16()), {})),
     ERRORS, ("apply_rope_complex: ", "positions.dtype=torch.bfloat16")),
    # Hugging Face's position_ids are (B, T); x is (B, H, T, D)
    ("apply_rope positions (B, T)", rb.apply_rope, lazy(lambda: ((_x(2, 4, 3, 8), torch.arange(3).expand(2, 3)), {})),
     ERRORS, ("apply_rope: ", "positions.shape=(2, 3)", "positions[:, None, :]")),
    ("rope_angles positions bf16", rb.rope.rope_angles,
     lazy(lambda: ((torch.arange(3).bfloat16(), rb.rope_frequencies(8)), {})), ERRORS,
     ("rope_angles: ", "positions.dtype=torch.bfloat16")),
    ("rope_angles inv_freq list", rb.rope.rope_angles, call(torch.arange(3), [1.0, 0.1]), ERRORS,
     ("rope_angles: ", "inv_freq must be", "type(inv_freq)=list")),
    # --- rope_cos_sin
    ("rope_cos_sin positions str", rb.rope_cos_sin, call("abc", 8), ERRORS, ("rope_cos_sin: ", "positions='abc'")),
    ("rope_cos_sin positions bf16", rb.rope_cos_sin, lazy(lambda: ((torch.arange(3).bfloat16(), 8), {})), ERRORS,
     ("rope_cos_sin: ", "positions.dtype=torch.bfloat16")),
    ("rope_cos_sin positions nan", rb.rope_cos_sin, call([0.0, NAN], 8), ERRORS, ("rope_cos_sin: ", "positions must be finite")),
    ("rope_cos_sin positions bool", rb.rope_cos_sin, lazy(lambda: ((torch.tensor([True]), 8), {})), ERRORS,
     ("rope_cos_sin: ", "positions", "torch.bool")),
    # --- packed_positions
    ("packed_positions cu_seqlens float", rb.packed_positions, call([0.0, 2.0]), ERRORS,
     ("packed_positions: ", "cu_seqlens must be B + 1 integers", "cu_seqlens.dtype=torch.float64")),
    ("packed_positions cu_seqlens one start", rb.packed_positions, call([0]), ERRORS,
     ("packed_positions: ", "cu_seqlens must be B + 1 integers", "cu_seqlens.shape=(1,)")),
    ("packed_positions cu_seqlens 2-d", rb.packed_positions, lazy(lambda: ((torch.tensor([[0, 2], [2, 4]]),), {})),
     ERRORS, ("packed_positions: ", "cu_seqlens.shape=(2, 2)")),
    ("packed_positions cu_seqlens decreasing", rb.packed_positions, call([0, 3, 2]), ERRORS,
     ("packed_positions: ", "cu_seqlens must start at 0 and be non-decreasing", "cu_seqlens=[0, 3, 2]")),
    ("packed_positions cu_seqlens from 1", rb.packed_positions, call([1, 3]), ERRORS,
     ("packed_positions: ", "start at 0", "cu_seqlens=[1, 3]")),
    ("packed_positions cu_seqlens str", rb.packed_positions, call("0, 3"), ERRORS,
     ("packed_positions: ", "cu_seqlens must be", "cu_seqlens='0, 3'")),
    ("packed_positions offsets per sequence", rb.packed_positions, call([0, 2, 5], offsets=[1, 2, 3]), ERRORS,
     ("packed_positions: ", "offsets must be", "(B,) = (2,)", "offsets.shape=(3,)")),
    ("packed_positions offsets float", rb.packed_positions, call([0, 2], offsets=1.5), ERRORS,
     ("packed_positions: ", "offsets must be", "offsets.dtype=torch.float64")),
    ("packed_positions offsets bool", rb.packed_positions, call([0, 2], offsets=True), ERRORS,
     ("packed_positions: ", "offsets=True")),
    # --- RotaryEmbedding
    ("RotaryEmbedding rotary_dim > dim", rb.RotaryEmbedding, call(8, rotary_dim=10), ERRORS,
     ("RotaryEmbedding: ", "rotary_dim=10", "dim=8")),
    ("RotaryEmbedding.cos_sin positions str", lambda p: rb.RotaryEmbedding(8).cos_sin(p), call("abc"), ERRORS,
     ("RotaryEmbedding.cos_sin: ", "positions='abc'")),
    ("RotaryEmbedding.cos_sin positions nan", lambda p: rb.RotaryEmbedding(8).cos_sin(p), call([0.0, NAN]), ERRORS,
     ("RotaryEmbedding.cos_sin: ", "positions must be finite")),
    ("RotaryEmbedding q str", _rotary_forward, lazy(lambda: (("abc", K4()), {})), ERRORS, ("RotaryEmbedding: ", "q")),
    ("RotaryEmbedding q int", _rotary_forward, lazy(lambda: ((torch.zeros(1, 2, 3, 8, dtype=I64), K4()), {})), ERRORS,
     ("RotaryEmbedding: ", "q", "torch.int64")),
    ("RotaryEmbedding q head_dim", _rotary_forward, lazy(lambda: ((_x(1, 2, 3, 6), K4()), {})), ERRORS,
     ("RotaryEmbedding: ", "q.shape=(1, 2, 3, 6)")),
    ("RotaryEmbedding k tokens", _rotary_forward, lazy(lambda: ((Q4(), _x(1, 1, 4, 8)), {})), ERRORS,
     ("RotaryEmbedding: ", "k.shape=(1, 1, 4, 8)")),
    ("RotaryEmbedding positions shape", _rotary_forward, lazy(lambda: ((Q4(), K4(), torch.arange(4)), {})), ERRORS,
     ("RotaryEmbedding: ", "positions.shape=(4,)")),
    ("RotaryEmbedding positions str", _rotary_forward, lazy(lambda: ((Q4(), K4(), "abc"), {})), ERRORS,
     ("RotaryEmbedding: ", "positions='abc'")),
    ("RotaryEmbedding offset per row", _rotary_forward, lazy(lambda: ((Q4(), K4()), dict(offset=torch.tensor([1, 2])))),
     ERRORS, ("RotaryEmbedding: ", "offset.shape=(2,)")),
    ("RotaryEmbedding offset nan", _rotary_forward, lazy(lambda: ((Q4(), K4()), dict(offset=NAN))), ERRORS,
     ("RotaryEmbedding: ", "offset=nan")),
    ("RotaryEmbedding positions bf16", _rotary_forward, lazy(lambda: ((Q4(), K4(), torch.arange(3).bfloat16()), {})),
     ERRORS, ("RotaryEmbedding: ", "positions.dtype=torch.bfloat16")),
    ("RotaryEmbedding.cos_sin positions fp16", lambda p: rb.RotaryEmbedding(8).cos_sin(p), lazy(lambda: ((torch.arange(3).half(),), {})),
     ERRORS, ("RotaryEmbedding.cos_sin: ", "positions.dtype=torch.float16")),
    ("RotaryEmbedding positions (B, T)", _rotary_forward,
     lazy(lambda: ((_x(2, 2, 3, 8), _x(2, 1, 3, 8), torch.arange(3).expand(2, 3).contiguous() + 1), {})), ERRORS,
     ("RotaryEmbedding: ", "positions.shape=(2, 3)", "positions[:, None, :]")),
    ("RotaryEmbedding dim 0-d tensor", rb.RotaryEmbedding, lazy(lambda: ((torch.tensor(8),), {})), ERRORS,
     ("RotaryEmbedding: dim must be a positive even integer", "dim=tensor(8) (a Tensor, not a Python or numpy number)")),
    # --- layout converters
    ("interleaved_to_half_weights w str", rb.interleaved_to_half_weights, call("w", 2), ERRORS,
     ("interleaved_to_half_weights: ", "type(w)=str")),
    ("interleaved_to_half_weights w 0-d", rb.interleaved_to_half_weights, lazy(lambda: ((torch.tensor(1.0), 1), {})),
     ERRORS, ("interleaved_to_half_weights: ", "w.shape=()")),
    ("interleaved_to_half_weights not a divisor", rb.interleaved_to_half_weights, lazy(lambda: ((_x(16, 3), 3), {})),
     ERRORS, ("interleaved_to_half_weights: ", "n_heads=3", "w.shape[0]=16")),
    ("interleaved_to_half_weights odd head_dim", rb.interleaved_to_half_weights, lazy(lambda: ((_x(6, 4), 2), {})),
     ERRORS, ("interleaved_to_half_weights: ", "head_dim", "w.shape=(6, 4)", "n_heads=2")),
    # grouped-query attention: W_k has 2 key/value heads of 8, and the 4 query heads divide its 16 rows as well
    ("interleaved_to_half_weights W_k with the query heads", rb.interleaved_to_half_weights,
     lazy(lambda: ((_x(16, 32), 4), dict(head_dim=8))), ERRORS,
     ("interleaved_to_half_weights: ", "n_heads * head_dim = 4 * 8 = 32", "w.shape=(16, 32)", "w.shape[0] // n_heads = 4",
      "number of key/value heads")),
    ("interleaved_to_half_weights w stored (in, out)", rb.interleaved_to_half_weights,
     lazy(lambda: ((_x(64, 32), 4), dict(head_dim=8))), ERRORS,
     ("interleaved_to_half_weights: ", "w.shape=(64, 32)", "(out_features, in_features)")),
    ("interleaved_to_half_weights n_heads 0-d tensor", rb.interleaved_to_half_weights,
     lazy(lambda: ((_x(16, 3), torch.tensor(2)), {})), ERRORS,
     ("interleaved_to_half_weights: ", "n_heads=tensor(2) (a Tensor, not a Python or numpy number)")),
    # --- scaling rules
    ("NTKAware.inv_freq dim 2", lambda **kw: scaling.NTKAware(2.0).inv_freq(**kw), call(dim=2), ERRORS,
     ("NTKAware", "dim=2")),
    ("YaRN beta_fast str", scaling.YaRN, call(2.0, 64, beta_fast="32"), ERRORS, ("YaRN: ", "beta_fast='32'")),
    ("YaRN beta_slow nan", scaling.YaRN, call(2.0, 64, beta_slow=NAN), ERRORS, ("YaRN: ", "beta_slow=nan")),
    ("YaRN beta_slow > beta_fast", scaling.YaRN, call(2.0, 64, beta_fast=2.0, beta_slow=4.0), ERRORS,
     ("YaRN: ", "beta_fast=2.0", "beta_slow=4.0")),
    ("YaRN mscale negative", scaling.YaRN, call(2.0, 64, mscale=-1.0), ERRORS, ("YaRN: ", "mscale=-1.0")),
    ("YaRN.inv_freq base 1", lambda **kw: scaling.YaRN(2.0, 64).inv_freq(**kw), call(dim=8, base=1.0), ERRORS,
     ("YaRN.inv_freq: ", "base=1.0")),
    ("Llama3 low_freq_factor str", scaling.Llama3, call(2.0, 64, low_freq_factor="1"), ERRORS,
     ("Llama3: ", "low_freq_factor='1'")),
    ("Llama3 high <= low", scaling.Llama3, call(2.0, 64, low_freq_factor=4.0, high_freq_factor=2.0), ERRORS,
     ("Llama3: ", "low_freq_factor=4.0", "high_freq_factor=2.0")),
    ("LongRoPE short_factor str", scaling.LongRoPE, call("abc", [1.0], 4), ERRORS, ("LongRoPE: ", "short_factor='abc'")),
    ("LongRoPE short_factor entries str", scaling.LongRoPE, call(["1.0", "2.0"], [1.0, 1.0], 4), ERRORS,
     ("LongRoPE: ", "short_factor")),
    ("LongRoPE short_factor bool entry", scaling.LongRoPE, call([True, 1.0], [1.0, 1.0], 4), ERRORS,
     ("LongRoPE: ", "short_factor")),
    ("LongRoPE long_factor zero", scaling.LongRoPE, call([1.0], [0.0], 4), ERRORS, ("LongRoPE: ", "long_factor")),
    ("LongRoPE long_factor nan", scaling.LongRoPE, call([1.0], [NAN], 4), ERRORS, ("LongRoPE: ", "long_factor")),
    ("LongRoPE long_factor number", scaling.LongRoPE, call([1.0], 2.0, 4), ERRORS, ("LongRoPE: ", "long_factor=2.0")),
    ("LongRoPE.inv_freq factor count", lambda **kw: scaling.LongRoPE([1.0] * 3, [1.0] * 3, 4, factor=1.0).inv_freq(**kw),
     call(dim=8), ERRORS, ("LongRoPE", "short_factor", "dim // 2 = 4")),
    # --- reference
    ("pair_indices i past the pairs", reference.pair_indices, call(4, 8), ERRORS, ("pair_indices: ", "i=4")),
    ("pair_indices i negative", reference.pair_indices, call(-1, 8), ERRORS, ("pair_indices: ", "i=-1")),
    ("pair_indices i float", reference.pair_indices, call(1.5, 8), ERRORS, ("pair_indices: ", "i=1.5")),
    ("pair_indices i bool", reference.pair_indices, call(True, 8), ERRORS, ("pair_indices: ", "i=True")),
    ("rope_matrix inv_freq shape", reference.rope_matrix, call(1, 8, inv_freq=[1.0, 0.1]), ERRORS,
     ("rope_matrix: ", "inv_freq", "(4,)")),
    ("rope_matrix inv_freq nan", reference.rope_matrix, call(1, 4, inv_freq=[NAN, 1.0]), ERRORS,
     ("rope_matrix: ", "inv_freq", "finite")),
    ("reference.rope_frequencies seq_len", reference.rope_frequencies, call(8, scaling=_DYN, seq_len="x"), ERRORS,
     ("seq_len='x'",)),
    ("apply_rope_reference x str", reference.apply_rope_reference, call("abc"), ERRORS,
     ("apply_rope_reference: ", "x")),
    ("apply_rope_reference x complex", reference.apply_rope_reference,
     lazy(lambda: ((torch.ones(3, 4, dtype=torch.complex64),), {})), ERRORS, ("apply_rope_reference: ", "x", "complex")),
    ("apply_rope_reference x complex array", reference.apply_rope_reference, call(np.ones((3, 4), dtype=complex)),
     ERRORS, ("apply_rope_reference: ", "x", "complex")),
    ("apply_rope_reference x 1-d", reference.apply_rope_reference, call(np.ones(4)), ERRORS,
     ("apply_rope_reference: ", "x.shape=(4,)")),
    ("apply_rope_reference odd head_dim", reference.apply_rope_reference, call(np.ones((3, 5))), ERRORS,
     ("apply_rope_reference: head_dim must be even", "(3, 5)")),
    ("apply_rope_reference positions shape", reference.apply_rope_reference, call(np.ones((3, 4)), [0, 1]), ERRORS,
     ("apply_rope_reference: ", "positions.shape=(2,)")),
    ("apply_rope_reference positions nan", reference.apply_rope_reference, call(np.ones((3, 4)), [0.0, NAN, 1.0]),
     ERRORS, ("apply_rope_reference: ", "positions must be finite")),
    ("apply_rope_reference positions str", reference.apply_rope_reference, call(np.ones((3, 4)), "abc"), ERRORS,
     ("apply_rope_reference: ", "positions")),
    ("apply_rope_reference inv_freq shape", reference.apply_rope_reference, call(np.ones((3, 4)), inv_freq=[1.0]),
     ERRORS, ("apply_rope_reference: ", "inv_freq", "(2,)")),
    ("apply_rope_reference inv_freq nan", reference.apply_rope_reference, call(np.ones((3, 4)), inv_freq=[1.0, NAN]),
     ERRORS, ("apply_rope_reference: ", "inv_freq", "finite")),
    ("apply_rope_reference seq_len", reference.apply_rope_reference, call(np.ones((3, 4)), scaling=_DYN, seq_len="x"),
     ERRORS, ("apply_rope_reference: ", "seq_len='x'")),
    # --- positions
    ("t5_relative_bucket float", positions.t5_relative_bucket, lazy(lambda: ((torch.tensor([0.5]),), {})), ERRORS,
     ("t5_relative_bucket: ", "relative_position", "float32")),
    ("t5_relative_bucket bool", positions.t5_relative_bucket, lazy(lambda: ((torch.tensor([True]),), {})), ERRORS,
     ("t5_relative_bucket: ", "relative_position", "torch.bool")),
    ("t5_relative_bucket str", positions.t5_relative_bucket, call("abc"), ERRORS,
     ("t5_relative_bucket: ", "relative_position='abc'")),
    ("t5_relative_bucket max_distance small", positions.t5_relative_bucket, call([1], num_buckets=32, max_distance=8),
     ERRORS, ("t5_relative_bucket: ", "max_distance=8")),
    # --- attention
    ("feature_map x str", attention.feature_map, call("abc"), ERRORS, ("feature_map: ", "x")),
    ("feature_map x int", attention.feature_map, lazy(lambda: ((torch.arange(3),), {})), ERRORS,
     ("feature_map: ", "x", "torch.int64")),
    ("feature_map name", attention.feature_map, lazy(lambda: ((_x(3),), dict(name="softmax"))), ERRORS,
     ("feature_map: ", "name='softmax'")),
    ("softmax_attention q str", attention.softmax_attention, lazy(lambda: (("q", *QKV()[1:]), {})), ERRORS,
     ("softmax_attention: ", "type(q)=str")),
    ("softmax_attention k int", attention.softmax_attention,
     lazy(lambda: ((QKV()[0], torch.zeros(5, 4, dtype=I64), QKV()[2]), {})), ERRORS, ("softmax_attention: ", "k.dtype=torch.int64")),
    ("softmax_attention q k shapes", attention.softmax_attention, lazy(lambda: ((_x(5, 4), _x(5, 6), _x(5, 3)), {})),
     ERRORS, ("softmax_attention: ", "k.shape=(5, 6)")),
    ("softmax_attention v tokens", attention.softmax_attention, lazy(lambda: ((_x(5, 4), _x(5, 4), _x(4, 3)), {})),
     ERRORS, ("softmax_attention: ", "v.shape=(4, 3)")),
    ("softmax_attention v dtype", attention.softmax_attention,
     lazy(lambda: ((_x(5, 4), _x(5, 4), _x(5, 3, dtype=torch.float64)), {})), ERRORS, ("softmax_attention: ", "torch.float64")),
    ("softmax_attention encoding", attention.softmax_attention, lazy(lambda: (QKV(), dict(encoding="rope"))), ERRORS,
     ("softmax_attention: ", "encoding='rope'")),
    ("softmax_attention positions shape", attention.softmax_attention, lazy(lambda: (QKV(), dict(positions=torch.arange(4)))),
     ERRORS, ("softmax_attention: ", "positions.shape=(4,)")),
    ("softmax_attention positions bool", attention.softmax_attention,
     lazy(lambda: (QKV(), dict(positions=torch.ones(5, dtype=torch.bool)))), ERRORS,
     ("softmax_attention: ", "positions", "torch.bool")),
    ("softmax_attention positions str", attention.softmax_attention, lazy(lambda: (QKV(), dict(positions="abcde"))), ERRORS,
     ("softmax_attention: ", "positions='abcde'")),
    ("linear_attention_weights feature_map", attention.linear_attention_weights,
     lazy(lambda: (QKV()[:2], dict(feature_map="softmax"))), ERRORS, ("linear_attention_weights: ", "feature_map='softmax'")),
    ("linear_attention_weights positions shape", attention.linear_attention_weights,
     lazy(lambda: (QKV()[:2], dict(positions=torch.arange(6)))), ERRORS, ("linear_attention_weights: ", "positions.shape=(6,)")),
    ("linear_attention_quadratic v str", attention.linear_attention_quadratic, lazy(lambda: ((*QKV()[:2], "v"), {})),
     ERRORS, ("linear_attention_quadratic: ", "type(v)=str")),
    ("linear_attention_quadratic causal", attention.linear_attention_quadratic, lazy(lambda: (QKV(), dict(causal="no"))),
     ERRORS, ("linear_attention_quadratic: ", "causal='no'")),
    ("linear_attention encoding", attention.linear_attention, lazy(lambda: (QKV(), dict(encoding=3))), ERRORS,
     ("linear_attention: ", "encoding=3")),
    # --- lrpe
    ("householder_matrix v str", lrpe.householder_matrix, call("v"), ERRORS, ("householder_matrix: ", "type(v)=str")),
    ("householder_matrix v 2-d", lrpe.householder_matrix, lazy(lambda: ((_x(2, 2),), {})), ERRORS,
     ("householder_matrix: ", "v.shape=(2, 2)")),
    ("householder_matrix v int", lrpe.householder_matrix, lazy(lambda: ((torch.tensor([1, 0]),), {})), ERRORS,
     ("householder_matrix: ", "v.dtype=torch.int64")),
    ("householder_matrix v zero", lrpe.householder_matrix, lazy(lambda: ((torch.zeros(3),), {})), ERRORS,
     ("householder_matrix: ", "non-zero")),
    ("householder_matrix v nan", lrpe.householder_matrix, lazy(lambda: ((torch.tensor([NAN, 1.0]),), {})), ERRORS,
     ("householder_matrix: ", "v", "finite")),
    ("Rotation x head_dim", lambda x, p=None: lrpe.Rotation(4)(x, p), lazy(lambda: ((_x(3, 6),), {})), ERRORS,
     ("Rotation: ", "x.shape=(3, 6)")),
    ("Rotation positions float", lambda x, p=None: lrpe.Rotation(4)(x, p),
     lazy(lambda: ((_x(3, 4), torch.tensor([0.0, 1.5, 2.0])), {})), ERRORS, ("Rotation: ", "positions", "torch.float32")),
    ("Rotation positions str", lambda x, p=None: lrpe.Rotation(4)(x, p), lazy(lambda: ((_x(3, 4), "abc"), {})), ERRORS,
     ("Rotation: ", "positions='abc'")),
    ("Unitary basis name", lrpe.Unitary, call(4, basis="fourier"), ERRORS, ("Unitary: ", "basis='fourier'")),
    ("Unitary basis not orthogonal", lrpe.Unitary, lazy(lambda: ((4,), dict(basis=2 * torch.eye(4)))), ERRORS,
     ("Unitary: ", "basis", "orthogonal")),
    ("Unitary basis shape", lrpe.Unitary, lazy(lambda: ((4,), dict(basis=torch.eye(3)))), ERRORS,
     ("Unitary: ", "basis", "(3, 3)")),
    ("Unitary.forward x int", lambda x: lrpe.Unitary(4)(x), lazy(lambda: ((torch.zeros(3, 4, dtype=I64),), {})), ERRORS,
     ("Unitary: ", "x", "torch.int64")),
    ("Permutation not a permutation", lrpe.Permutation, lazy(lambda: ((3,), dict(permutation=torch.tensor([0, 0, 1])))),
     ERRORS, ("Permutation: ", "permutation")),
    ("Permutation permutation str", lrpe.Permutation, call(3, permutation="abc"), ERRORS,
     ("Permutation: ", "permutation='abc'")),
    ("Permutation forward positions float", lambda x, p: lrpe.Permutation(3)(x, p),
     lazy(lambda: ((_x(2, 3), torch.tensor([0.5, 1.0])), {})), ERRORS, ("Permutation: ", "positions", "torch.float32")),
    ("Permutation.indices positions float", lambda p: lrpe.Permutation(3).indices(p), lazy(lambda: ((torch.tensor([0.5]),), {})),
     ERRORS, ("Permutation.indices: ", "positions", "torch.float32")),
    ("Permutation.matrix m float", lambda m: lrpe.Permutation(3).matrix(m), call(1.5), ERRORS,
     ("Permutation.matrix: ", "m=1.5")),
    ("Unitary.matrix m nan", lambda m: lrpe.Unitary(4).matrix(m), call(NAN), ERRORS, ("Unitary.matrix: ", "m=nan")),
    # --- crope
    ("parameter_count module str", crope.parameter_count, call("model"), ERRORS, ("parameter_count: ", "module")),
    ("ComplexLinear.forward x str", lambda x: crope.ComplexLinear(4, 4)(x), call("x"), ERRORS,
     ("ComplexLinear: ", "type(x)=str")),
    ("ComplexLinear.forward x 0-d", lambda x: crope.ComplexLinear(4, 4)(x), lazy(lambda: ((torch.tensor(1.0),), {})),
     ERRORS, ("ComplexLinear: ", "x.shape=()")),
    ("ComplexLinear.forward x int", lambda x: crope.ComplexLinear(4, 4)(x),
     lazy(lambda: ((torch.zeros(2, 4, dtype=I64),), {})), ERRORS, ("ComplexLinear: ", "torch.int64")),
    ("ComplexLinear.forward in_features", lambda x: crope.ComplexLinear(4, 4)(x), lazy(lambda: ((_x(2, 6),), {})),
     ERRORS, ("ComplexLinear: ", "x.shape=(2, 6)")),
    ("ComplexLinear.forward x float64", lambda x: crope.ComplexLinear(4, 4)(x),
     lazy(lambda: ((_x(2, 4, dtype=torch.float64),), {})), ERRORS,
     ("ComplexLinear: ", "weights' dtype torch.float32", "x.dtype=torch.float64")),
    ("RoPEAttention n_heads not a divisor", crope.RoPEAttention, call(8, 3), ERRORS, ("RoPEAttention: ", "n_heads=3")),
    ("RoPEAttention.forward x 2-d", lambda x: crope.RoPEAttention(8, 2)(x), lazy(lambda: ((_x(3, 8),), {})), ERRORS,
     ("RoPEAttention.forward: ", "x.shape=(3, 8)")),
    ("RoPEAttention.forward x int", lambda x: crope.RoPEAttention(8, 2)(x),
     lazy(lambda: ((torch.zeros(1, 3, 8, dtype=I64),), {})), ERRORS, ("RoPEAttention.forward: ", "torch.int64")),
    ("RoPEAttention.forward positions shape", lambda x, p: crope.RoPEAttention(8, 2)(x, p),
     lazy(lambda: ((_x(1, 3, 8), torch.arange(4)), {})), ERRORS, ("positions.shape=(4,)",)),
    ("CRoPEAttention.scores x str", lambda x: crope.CRoPEAttention(8, 2).scores(x), call("x"), ERRORS,
     ("CRoPEAttention.scores: ", "type(x)=str")),
    # --- data
    ("stdlib_corpus val_fraction str", data.stdlib_corpus, call(val_fraction="0.1"), ERRORS,
     ("stdlib_corpus: ", "val_fraction='0.1'")),
    ("stdlib_corpus val_fraction nan", data.stdlib_corpus, call(val_fraction=NAN), ERRORS,
     ("stdlib_corpus: ", "val_fraction=nan")),
    ("stdlib_corpus val_fraction one", data.stdlib_corpus, call(val_fraction=1.0), ERRORS,
     ("stdlib_corpus: ", "val_fraction=1.0")),
    ("stdlib_corpus val_fraction bool", data.stdlib_corpus, call(val_fraction=True), ERRORS,
     ("stdlib_corpus: ", "val_fraction=True")),
    ("random_windows data list", data.random_windows, lazy(lambda: ((list(range(20)), 2, 4), dict(generator=_generator()))),
     ERRORS, ("random_windows: ", "type(data)=list")),
    ("random_windows data float", data.random_windows, lazy(lambda: ((torch.rand(20), 2, 4), dict(generator=_generator()))),
     ERRORS, ("random_windows: ", "data", "torch.float32")),
    ("random_windows data 2-d", data.random_windows,
     lazy(lambda: ((torch.zeros(4, 20, dtype=I64), 2, 4), dict(generator=_generator()))), ERRORS,
     ("random_windows: ", "data.shape=(4, 20)")),
    ("random_windows data short", data.random_windows, lazy(lambda: ((torch.arange(4), 2, 4), dict(generator=_generator()))),
     ERRORS, ("random_windows: ", "len(data)=4")),
    ("random_windows generator str", data.random_windows, call(torch.arange(20), 2, 4, generator="seed"), ERRORS,
     ("random_windows: ", "generator='seed'")),
    ("validation_windows data float", data.validation_windows, lazy(lambda: ((torch.rand(20), 3, 4), {})), ERRORS,
     ("validation_windows: ", "data", "torch.float32")),
    ("next_token_task generator int", data.next_token_task, call(2, 6, 4, generator=0), ERRORS,
     ("next_token_task: ", "generator=0")),
    # --- model
    ("ModelConfig head_dim odd", model.ModelConfig, call(dim=12, n_heads=4), ERRORS, ("ModelConfig: ", "n_heads=4")),
    ("TinyLM config dict", model.TinyLM, call({"dim": 16}), ERRORS, ("TinyLM: ", "config")),
    ("TinyLM idx float", _lm, lazy(lambda: ((torch.zeros(1, 4),), {})), ERRORS, ("TinyLM: ", "idx", "torch.float32")),
    ("TinyLM idx 1-d", _lm, lazy(lambda: ((torch.zeros(4, dtype=I64),), {})), ERRORS, ("TinyLM: ", "idx.shape=(4,)")),
    ("TinyLM idx str", _lm, call("abc"), ERRORS, ("TinyLM: ", "type(idx)=str")),
    ("TinyLM idx out of vocabulary", _lm, lazy(lambda: ((torch.full((1, 4), 10),), {})), ERRORS,
     ("TinyLM: ", "idx", "vocab_size=10")),
    ("TinyLM idx negative", _lm, lazy(lambda: ((torch.full((1, 4), -1),), {})), ERRORS, ("TinyLM: ", "idx")),
    ("TinyLM idx too long", _lm, lazy(lambda: ((torch.zeros(1, 9, dtype=I64),), {})), ERRORS,
     ("TinyLM: ", "max_seq_len=8", "idx.shape=(1, 9)")),
    ("TinyLM targets shape", _lm, lazy(lambda: ((torch.zeros(1, 4, dtype=I64), torch.zeros(1, 3, dtype=I64)), {})),
     ERRORS, ("TinyLM: ", "targets.shape=(1, 3)")),
    ("TinyLM targets float", _lm, lazy(lambda: ((torch.zeros(1, 4, dtype=I64), torch.zeros(1, 4)), {})), ERRORS,
     ("TinyLM: ", "targets", "torch.float32")),
    ("TinyLM targets int32", _lm, lazy(lambda: ((torch.zeros(1, 4, dtype=I64), torch.zeros(1, 4, dtype=torch.int32)), {})),
     ERRORS, ("TinyLM: ", "targets.dtype=torch.int32")),
    ("TinyLM idx uint8", _lm, lazy(lambda: ((torch.zeros(1, 4, dtype=torch.uint8),), {})), ERRORS,
     ("TinyLM: ", "idx.dtype=torch.uint8")),
    ("TinyLM idx bool", _lm, lazy(lambda: ((torch.zeros(1, 4, dtype=torch.bool),), {})), ERRORS,
     ("TinyLM: ", "idx.dtype=torch.bool")),
    ("TinyLM targets out of vocabulary", _lm, lazy(lambda: ((torch.zeros(1, 4, dtype=I64), torch.full((1, 4), 10)), {})),
     ERRORS, ("TinyLM: ", "targets must hold token ids in [0, vocab_size=10)", "got values in [10, 10]")),
    # --- experiments: the copy task's and the offset task's models
    ("CopyModel cfg dict", lrpe_recall.CopyModel, call({"vocab": 10}, "rope"), ERRORS, ("CopyModel: ", "type(cfg)=dict")),
    ("CopyModel tokens float", lambda t: _copy_model()(t), lazy(lambda: ((torch.zeros(2, 4),), {})), ERRORS,
     ("CopyModel: ", "tokens must be int64 or int32 of shape (B, T)", "tokens.dtype=torch.float32")),
    ("CopyModel tokens bool", lambda t: _copy_model()(t), lazy(lambda: ((torch.ones(2, 4, dtype=torch.bool),), {})),
     ERRORS, ("CopyModel: ", "tokens.dtype=torch.bool")),
    ("CopyModel tokens 1-d", lambda t: _copy_model()(t), lazy(lambda: ((torch.zeros(4, dtype=I64),), {})), ERRORS,
     ("CopyModel: ", "tokens.shape=(4,)")),
    ("CopyModel tokens str", lambda t: _copy_model()(t), call("abc"), ERRORS, ("CopyModel: ", "type(tokens)=str")),
    ("CopyModel tokens out of vocabulary", lambda t: _copy_model()(t), lazy(lambda: ((torch.tensor([[0, 10]]),), {})),
     ERRORS, ("CopyModel: ", "tokens must hold token ids in [0, vocab=10)", "got values in [0, 10]")),
    ("CopyModel tokens negative", lambda t: _copy_model()(t), lazy(lambda: ((torch.tensor([[-3, 1]]),), {})),
     ERRORS, ("CopyModel: ", "tokens", "got values in [-3, 1]")),
    ("OffsetModel tokens float", lambda t, p: _offset_model()(t, p),
     lazy(lambda: ((torch.zeros(2, 6), torch.zeros(2, dtype=I64)), {})), ERRORS,
     ("OffsetModel.forward: ", "tokens must be int64 or int32", "tokens.dtype=torch.float32")),
    ("OffsetModel tokens out of vocabulary", lambda t, p: _offset_model()(t, p),
     lazy(lambda: ((torch.tensor([[0, 6]]), torch.zeros(1, dtype=I64)), {})), ERRORS,
     ("OffsetModel.forward: ", "tokens must hold token ids in [0, n_content + 2=6)", "got values in [0, 6]")),
    ("OffsetModel.marker_attention marker_pos past T", lambda t, p: _offset_model().marker_attention(t, p),
     lazy(lambda: ((torch.zeros(1, 6, dtype=I64), torch.tensor([6])), {})), ERRORS,
     ("OffsetModel.marker_attention: ", "marker_pos must hold positions in [0, T=6)", "got values in [6, 6]")),
    ("OffsetModel marker_pos float", lambda t, p: _offset_model()(t, p),
     lazy(lambda: ((torch.zeros(1, 6, dtype=I64), torch.tensor([1.0])), {})), ERRORS,
     ("OffsetModel.forward: ", "marker_pos must be int64 or int32", "marker_pos.dtype=torch.float32")),
    ("constructed_offset_model sharpness nan", offset_task.constructed_offset_model, call(4, sharpness=NAN), ERRORS,
     ("constructed_offset_model: ", "sharpness=nan")),
    ("offset_accuracy model str", offset_task.offset_accuracy, call("model", n_content=4, seq_len=8, seed=0), ERRORS,
     ("offset_accuracy: ", "type(model)=str")),
    ("train_offset_model lr nan", lambda lr: offset_task.train_offset_model(_offset_model(), lr=lr), call(NAN), ERRORS,
     ("train_offset_model: ", "lr=nan")),
    # --- decay
    ("decay_bound distance str", rb.decay_bound, call("far", 8), ERRORS, ("decay_bound: ", "distance='far'")),
    ("decay_bound distance nan", rb.decay_bound, call([0.0, NAN], 8), ERRORS, ("decay_bound: ", "distance")),
    ("decay_bound distance complex", rb.decay_bound, call(1j, 8), ERRORS, ("decay_bound: ", "distance=1j")),
    ("cos_sum distance str", decay.cos_sum, call("far", 8), ERRORS, ("cos_sum: ", "distance='far'")),
    ("relative_scores q str", decay.relative_scores, call("q", [1.0, 1.0], [0.0]), ERRORS, ("relative_scores: ", "q")),
    ("relative_scores odd d", decay.relative_scores, call([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [0.0]), ERRORS,
     ("relative_scores: ", "q.shape=(3,)")),
    ("relative_scores q k rows", decay.relative_scores, call(np.ones((3, 4)), np.ones((2, 4)), [0.0]), ERRORS,
     ("relative_scores: ", "q.shape=(3, 4)", "k.shape=(2, 4)")),
    ("relative_scores distance 2-d", decay.relative_scores, call([1.0, 1.0], [1.0, 1.0], [[0.0]]), ERRORS,
     ("relative_scores: ", "distance.shape=(1, 1)")),
    ("min_base rtol zero", rb.min_base, call(64, 8, rtol=0.0), ERRORS, ("min_base: ", "rtol=0.0")),
    ("min_base rtol nan", rb.min_base, call(64, 8, rtol=NAN), ERRORS, ("min_base: ", "rtol=nan")),
]


def _kernel_rows():
    """Kernel rows: checks before the launch, so each is fast even under the interpreter."""
    if not HAS_TRITON:
        return []
    from ropebook import kernels as K

    def q4(dtype=torch.float32, *shape):
        return _x(*(shape or (1, 2, 3, 8)), dtype=dtype).to(DEVICE)

    def k4():
        return _x(1, 1, 3, 8).to(DEVICE)

    def cache():
        return K.rope_cache(8, max_positions=16, device=DEVICE)

    def cs(T=3, half=4, dtype=torch.float32):
        c, s = rb.rope_cos_sin(torch.arange(T), 2 * half, dtype=dtype)
        return c.to(DEVICE), s.to(DEVICE)

    def hf_cs(T=3, D=8):
        c, s = cs(T, D // 2)
        return torch.cat((c, c), -1), torch.cat((s, s), -1)

    def pos():  # CLVP's position ids (1, T) of q4's 3 tokens, into a table of 5 rows
        return torch.tensor([[4, 0, 2]], device=DEVICE)

    rows = [
        ("rope_cache max_positions", K.rope_cache, call(8, max_positions=0), ERRORS, ("rope_cache: ", "max_positions=0")),
        ("rope_cache max_positions float", K.rope_cache, call(8, max_positions=16.0), ERRORS,
         ("rope_cache: ", "max_positions=16.0")),
        ("rope_cache seq_len", K.rope_cache, call(8, seq_len="x"), ERRORS, ("rope_cache: ", "seq_len='x'")),
        ("rope_qk q 3-d", K.rope_qk, lazy(lambda: ((q4(torch.float32, 2, 3, 8), None, cache()), {})), ERRORS,
         ("rope_qk: ", "q.shape=(2, 3, 8)")),
        ("rope_qk q int", K.rope_qk, lazy(lambda: ((torch.zeros(1, 2, 3, 8, dtype=I64, device=DEVICE), None, cache()), {})),
         ERRORS, ("rope_qk: ", "q.dtype=torch.int64")),
        ("rope_qk k dtype", K.rope_qk, lazy(lambda: ((q4(), k4().double(), cache()), {})), ERRORS,
         ("rope_qk: ", "k must match q", "torch.float64")),
        ("rope_qk cache str", K.rope_qk, lazy(lambda: ((q4(), k4(), "cache"), {})), ERRORS,
         ("rope_qk: ", "type(cache)=str")),
        ("rope_qk cache too narrow", K.rope_qk, lazy(lambda: ((q4(), k4(), K.rope_cache(16)), {})), ERRORS,
         ("rope_qk: ", "rotary_dim=16", "head_dim=8")),
        ("rope_qk layout", K.rope_qk, lazy(lambda: ((q4(), k4(), cache()), dict(layout="neox"))), ERRORS,
         ("rope_qk: ", "layout='neox'")),
        ("rope_qk offsets float", K.rope_qk, lazy(lambda: ((q4(), k4(), cache()), dict(offsets=1.5))), ERRORS,
         ("rope_qk: ", "offsets=1.5")),
        ("rope_qk offsets bool", K.rope_qk, lazy(lambda: ((q4(), k4(), cache()), dict(offsets=True))), ERRORS,
         ("rope_qk: ", "offsets=True")),
        ("rope_qk offsets negative", K.rope_qk, lazy(lambda: ((q4(), k4(), cache()), dict(offsets=-1))), ERRORS,
         ("rope_qk: ", "offsets=-1")),
        ("rope_qk offsets shape", K.rope_qk,
         lazy(lambda: ((q4(), k4(), cache()), dict(offsets=torch.tensor([0, 1], device=DEVICE)))), ERRORS,
         ("rope_qk: ", "offsets.shape=(2,)")),
        ("rope_qk positions float", K.rope_qk,
         lazy(lambda: ((q4(), k4(), cache()), dict(positions=torch.zeros(1, 3, device=DEVICE)))), ERRORS,
         ("rope_qk: ", "positions.dtype=torch.float32")),
        ("rope_qk angles", K.rope_qk, lazy(lambda: ((q4(), k4(), cache()), dict(angles="tables"))), ERRORS,
         ("rope_qk: ", "angles='tables'")),
        ("rope_qk inplace str", K.rope_qk, lazy(lambda: ((q4(), k4(), cache()), dict(inplace="yes"))), ERRORS,
         ("rope_qk: ", "inplace='yes'")),
        ("rope_qk max_seqlen without cu_seqlens", K.rope_qk, lazy(lambda: ((q4(), k4(), cache()), dict(max_seqlen=3))),
         ERRORS, ("rope_qk: ", "max_seqlen=3", "cu_seqlens")),
        ("rope_qk max_seqlen zero", K.rope_qk,
         lazy(lambda: ((q4(torch.float32, 2, 3, 8), None, cache()),
                       dict(cu_seqlens=torch.tensor([0, 3], dtype=torch.int32, device=DEVICE), max_seqlen=0))),
         ERRORS, ("rope_qk: ", "max_seqlen=0")),
        # flash-attn's packed (N, H, D): 5 tokens of 2 heads, where rope_qk takes (H, N, D)
        ("rope_qk packed (N, H, D)", K.rope_qk,
         lazy(lambda: ((q4(torch.float32, 5, 2, 8), None, cache()), dict(cu_seqlens=torch.tensor([0, 2, 5], dtype=torch.int32)))),
         ERRORS, ("rope_qk: ", "end at q.shape[1]=2", "look like (N, H, D)", "q.transpose(0, 1)")),
        ("rope_qk cu_seqlens float", K.rope_qk,
         lazy(lambda: ((q4(torch.float32, 2, 3, 8), None, cache()), dict(cu_seqlens=torch.tensor([0.0, 3.0], device=DEVICE)))),
         ERRORS, ("rope_qk: ", "cu_seqlens")),
        ("rope_qk_cos_sin cos int", K.rope_qk_cos_sin,
         lazy(lambda: ((q4(), k4(), torch.ones(3, 4, dtype=I64, device=DEVICE), cs()[1]), {})), ERRORS,
         ("rope_qk_cos_sin: ", "cos.dtype=torch.int64")),
        ("rope_qk_cos_sin cos tokens", K.rope_qk_cos_sin, lazy(lambda: ((q4(), k4(), *cs(T=4)), {})), ERRORS,
         ("rope_qk_cos_sin: ", "cos.shape=(4, 4)")),
        ("rope_qk_cos_sin sin shape", K.rope_qk_cos_sin, lazy(lambda: ((q4(), k4(), cs()[0], cs(half=2)[1]), {})), ERRORS,
         ("rope_qk_cos_sin: ", "sin.shape=(3, 2)")),
        ("rope_qk_cos_sin cos wider than head", K.rope_qk_cos_sin, lazy(lambda: ((q4(), k4(), *cs(half=8)), {})), ERRORS,
         ("rope_qk_cos_sin: ", "cos.shape=(3, 8)")),
        ("rope_qk_cos_sin inplace str", K.rope_qk_cos_sin, lazy(lambda: ((q4(), k4(), *cs()), dict(inplace=1))), ERRORS,
         ("rope_qk_cos_sin: ", "inplace=1")),
        ("rope_qk_cos_sin layout", K.rope_qk_cos_sin, lazy(lambda: ((q4(), k4(), *cs()), dict(layout=None))), ERRORS,
         ("rope_qk_cos_sin: ", "layout=None")),
        ("apply_cos_sin cos str", K.apply_cos_sin, lazy(lambda: ((q4(), "cos", cs()[1]), dict(layout="half", rotary_dim=8))),
         ERRORS, ("apply_rope: ", "type(cos)=str")),
        ("apply_cos_sin cos int", K.apply_cos_sin,
         lazy(lambda: ((q4(), torch.ones(3, 4, dtype=I64, device=DEVICE), cs()[1]), dict(layout="half", rotary_dim=8))),
         ERRORS, ("apply_rope: ", "cos.dtype=torch.int64")),
        ("apply_cos_sin rotary_dim", K.apply_cos_sin, lazy(lambda: ((q4(), *cs()), dict(layout="half", rotary_dim=10))),
         ERRORS, ("apply_rope: ", "rotary_dim=10")),
        ("hf_apply_rotary_pos_emb q 3-d", K.hf_apply_rotary_pos_emb,
         lazy(lambda: ((q4(torch.float32, 2, 3, 8), k4(), *hf_cs()), {})), ERRORS,
         ("hf_apply_rotary_pos_emb: ", "q.shape=(2, 3, 8)")),
        ("hf_apply_rotary_pos_emb cos wider than D", K.hf_apply_rotary_pos_emb, lazy(lambda: ((q4(), k4(), *hf_cs(D=10)), {})),
         ERRORS, ("hf_apply_rotary_pos_emb: ", "cos.shape=(3, 10)")),
        ("hf_apply_rotary_pos_emb_pairs cos D", K.hf_apply_rotary_pos_emb_pairs, lazy(lambda: ((q4(), k4(), *hf_cs()), {})),
         ERRORS, ("hf_apply_rotary_pos_emb_pairs: ", "cos.shape=(3, 8)")),
        ("hf_apply_rotary_pos_emb_interleaved cos odd", K.hf_apply_rotary_pos_emb_interleaved,
         lazy(lambda: ((q4(), k4(), *(x[..., :3] for x in hf_cs())), {})), ERRORS,
         ("hf_apply_rotary_pos_emb_interleaved: ", "cos.shape=(3, 3)")),
        ("hf_apply_rotary_pos_emb_cohere cos wider than D", K.hf_apply_rotary_pos_emb_cohere,
         lazy(lambda: ((q4(), k4(), *(x.repeat_interleave(2, -1)[..., :10] for x in hf_cs())), {})), ERRORS,
         ("hf_apply_rotary_pos_emb_cohere: ", "cos.shape=(3, 10)")),
        ("hf_apply_rotary_pos_emb_cohere Llama's cos", K.hf_apply_rotary_pos_emb_cohere,
         lazy(lambda: ((q4(), k4(), *hf_cs()), {})), ERRORS,
         ("hf_apply_rotary_pos_emb_cohere: ", "cos[..., 0::2] == cos[..., 1::2]", "largest difference")),
        ("hf_apply_rotary_pos_emb_interleave k 3-d", K.hf_apply_rotary_pos_emb_interleave,
         lazy(lambda: ((q4(), k4()[0], *hf_cs()), {})), ERRORS,
         ("hf_apply_rotary_pos_emb_interleave: ", "k.shape=(1, 3, 8)")),
        ("hf_apply_rotary_pos_emb_interleave unsqueeze_dim as position_ids", K.hf_apply_rotary_pos_emb_interleave,
         lazy(lambda: ((q4(), k4(), *hf_cs(), None, 3), {})), ERRORS,
         ("hf_apply_rotary_pos_emb_interleave: ", "unsqueeze_dim=3")),
        ("hf_apply_rotary_pos_emb_gptj cos duplicated", K.hf_apply_rotary_pos_emb_gptj,
         lazy(lambda: ((q4().transpose(1, 2), *reversed(hf_cs())), {})), ERRORS,
         ("hf_apply_rotary_pos_emb_gptj: ", "(3, 4)", "tensor of (B, T, H, D) = (1, 3, 2, 8)", "cos.shape=(3, 8)")),
        ("hf_apply_rotary_pos_emb_gptj tensor 3-d", K.hf_apply_rotary_pos_emb_gptj,
         lazy(lambda: ((q4()[0], *reversed(cs())), {})), ERRORS,
         ("hf_apply_rotary_pos_emb_gptj: ", "tensor must be 4-d", "tensor.shape=(2, 3, 8)")),
        ("hf_apply_rotary_pos_emb_pairs_interleaved cos D", K.hf_apply_rotary_pos_emb_pairs_interleaved,
         lazy(lambda: ((q4(), k4(), *hf_cs()), {})), ERRORS,
         ("hf_apply_rotary_pos_emb_pairs_interleaved: ", "one value per pair", "cos.shape=(3, 8)")),
        ("hf_apply_rotary_pos_emb_nanochat cos one value a pair", K.hf_apply_rotary_pos_emb_nanochat,
         lazy(lambda: ((q4(), k4(), *(x[..., :4] for x in hf_cs())), {})), ERRORS,
         ("hf_apply_rotary_pos_emb_nanochat: ", "cos[..., :2] == cos[..., 2:]", "largest difference")),
        ("hf_apply_rotary_pos_emb_deepseek_v4 cos duplicated", K.hf_apply_rotary_pos_emb_deepseek_v4,
         lazy(lambda: ((q4(), *(x.repeat_interleave(2, -1) for x in hf_cs())), {})), ERRORS,
         ("hf_apply_rotary_pos_emb_deepseek_v4: ", "(3, r/2)", "last r features, r at most D = 8",
          "x of (B, H, T, D) = (1, 2, 3, 8)", "cos.shape=(3, 16)")),
        ("hf_apply_rotary_pos_emb_deepseek_v4 x of integers", K.hf_apply_rotary_pos_emb_deepseek_v4,
         lazy(lambda: ((q4().int(), *(x[..., :2] for x in cs())), {})), ERRORS,
         ("hf_apply_rotary_pos_emb_deepseek_v4: ", "x must be a floating-point tensor (B, H, T, D)", "x.shape=(1, 2, 3, 8)",
          "x.dtype=torch.int32")),
        ("hf_apply_rotary_pos_emb_deepseek_v4 x 3-d", K.hf_apply_rotary_pos_emb_deepseek_v4,
         lazy(lambda: ((q4()[0], *cs()), {})), ERRORS,
         ("hf_apply_rotary_pos_emb_deepseek_v4: ", "x must be 4-d", "x.shape=(2, 3, 8)")),
        ("hf_apply_rotary_pos_emb_dinov3 cos 3-d", K.hf_apply_rotary_pos_emb_dinov3,
         lazy(lambda: ((q4(), k4(), *(x[None] for x in hf_cs())), {})), ERRORS,
         ("hf_apply_rotary_pos_emb_dinov3: ", "(P, 8) with 0 < P <= 3", "q of (B, H, T, D) = (1, 2, 3, 8)",
          "cos.shape=(1, 3, 8)")),
        ("hf_apply_rotary_pos_emb_dinov3 more patches than tokens", K.hf_apply_rotary_pos_emb_dinov3,
         lazy(lambda: ((q4(), k4(), *hf_cs(T=4)), {})), ERRORS,
         ("hf_apply_rotary_pos_emb_dinov3: ", "0 < P <= 3", "cos.shape=(4, 8)")),
        ("hf_apply_rotary_pos_emb_dinov3 partial rotary", K.hf_apply_rotary_pos_emb_dinov3,
         lazy(lambda: ((q4(), k4(), *hf_cs(T=2, D=4)), {})), ERRORS,
         ("hf_apply_rotary_pos_emb_dinov3: ", "(P, 8)", "cos.shape=(2, 4)")),
        ("hf_apply_rotary_pos_emb_dinov3 halves differ", K.hf_apply_rotary_pos_emb_dinov3,
         lazy(lambda: ((q4(), k4(), *(x + torch.arange(8, device=DEVICE) for x in hf_cs(T=2))), {})), ERRORS,
         ("hf_apply_rotary_pos_emb_dinov3: ", "cos[..., :4] == cos[..., 4:]", "largest difference")),
        ("hf_apply_rotary_pos_emb_dinov3 k None", K.hf_apply_rotary_pos_emb_dinov3,
         lazy(lambda: ((q4(), None, *hf_cs(T=2)), {})), ERRORS,
         ("hf_apply_rotary_pos_emb_dinov3: ", "type(k)=NoneType")),
        ("hf_apply_rotary_pos_emb_dinov3 k of other tokens", K.hf_apply_rotary_pos_emb_dinov3,
         lazy(lambda: ((q4(), q4(torch.float32, 1, 2, 4, 8), *hf_cs(T=2)), {})), ERRORS,
         ("hf_apply_rotary_pos_emb_dinov3: ", "k must match q", "q.shape=(1, 2, 3, 8)", "k.shape=(1, 2, 4, 8)")),
        ("hf_apply_rotary_pos_emb_dinov3 q of integers", K.hf_apply_rotary_pos_emb_dinov3,
         lazy(lambda: ((q4().int(), k4().int(), *hf_cs(T=2)), {})), ERRORS,
         ("hf_apply_rotary_pos_emb_dinov3: ", "q must be a floating-point tensor (B, H, T, D)", "q.shape=(1, 2, 3, 8)",
          "q.dtype=torch.int32")),
        ("hf_apply_rotary_pos_emb_clvp v None", K.hf_apply_rotary_pos_emb_clvp,
         lazy(lambda: ((q4(), k4(), None, *hf_cs(T=5), pos()), {})), ERRORS,
         ("hf_apply_rotary_pos_emb_clvp: ", "v must be a tensor", "type(v)=NoneType")),
        ("hf_apply_rotary_pos_emb_clvp v of other tokens", K.hf_apply_rotary_pos_emb_clvp,
         lazy(lambda: ((q4(), k4(), q4(torch.float32, 1, 2, 4, 8), *hf_cs(T=5), pos()), {})), ERRORS,
         ("hf_apply_rotary_pos_emb_clvp: ", "v must match q", "q.shape=(1, 2, 3, 8)", "v.shape=(1, 2, 4, 8)")),
        ("hf_apply_rotary_pos_emb_clvp v 3-d", K.hf_apply_rotary_pos_emb_clvp,
         lazy(lambda: ((q4(), k4(), q4()[0], *hf_cs(T=5), pos()), {})), ERRORS,
         ("hf_apply_rotary_pos_emb_clvp: ", "q, k and v must be 4-d (B, H, T, D)", "v.shape=(2, 3, 8)")),
        ("hf_apply_rotary_pos_emb_clvp q of integers", K.hf_apply_rotary_pos_emb_clvp,
         lazy(lambda: ((q4().int(), k4().int(), q4().int(), *hf_cs(T=5), pos()), {})), ERRORS,
         ("hf_apply_rotary_pos_emb_clvp: ", "q must be a floating-point tensor (B, H, T, D)", "q.dtype=torch.int32")),
        ("hf_apply_rotary_pos_emb_clvp q of integers (B, T, H, D)", K.hf_apply_rotary_pos_emb_clvp,
         lazy(lambda: ((*(q4().int().transpose(1, 2) for _ in range(3)), *hf_cs(T=5), pos(), 2), {})), ERRORS,
         ("hf_apply_rotary_pos_emb_clvp: ", "q must be a floating-point tensor (B, T, H, D)", "q.shape=(1, 3, 2, 8)")),
        ("hf_apply_rotary_pos_emb_clvp cos 3-d", K.hf_apply_rotary_pos_emb_clvp,
         lazy(lambda: ((q4(), k4(), q4(), *(x[None] for x in hf_cs(T=5)), pos()), {})), ERRORS,
         ("hf_apply_rotary_pos_emb_clvp: ", "tables of shape (S, 8)", "q (B, H, T, D) = (1, 2, 3, 8)",
          "cos.shape=(1, 5, 8)")),
        ("hf_apply_rotary_pos_emb_clvp partial rotary", K.hf_apply_rotary_pos_emb_clvp,
         lazy(lambda: ((q4(), k4(), q4(), *hf_cs(T=5, D=4), pos()), {})), ERRORS,
         ("hf_apply_rotary_pos_emb_clvp: ", "(S, 8)", "cos.shape=(5, 4)")),
        ("hf_apply_rotary_pos_emb_clvp halves differ", K.hf_apply_rotary_pos_emb_clvp,
         lazy(lambda: ((q4(), k4(), q4(), *(x + torch.arange(8, device=DEVICE) for x in hf_cs(T=5)), pos()), {})),
         ERRORS, ("hf_apply_rotary_pos_emb_clvp: ", "cos[..., :4] == cos[..., 4:]", "largest difference")),
        ("hf_apply_rotary_pos_emb_clvp position_ids 1-d", K.hf_apply_rotary_pos_emb_clvp,
         lazy(lambda: ((q4(), k4(), q4(), *hf_cs(T=5), pos()[0]), {})), ERRORS,
         ("hf_apply_rotary_pos_emb_clvp: ", "position_ids must be an int64 or int32 tensor of shape (1, 3)",
          "position_ids.shape=(3,)")),
        ("hf_apply_rotary_pos_emb_clvp position_ids of floats", K.hf_apply_rotary_pos_emb_clvp,
         lazy(lambda: ((q4(), k4(), q4(), *hf_cs(T=5), pos().float()), {})), ERRORS,
         ("hf_apply_rotary_pos_emb_clvp: ", "position_ids.dtype=torch.float32")),
        ("hf_apply_rotary_pos_emb_clvp position_ids of a mask", K.hf_apply_rotary_pos_emb_clvp,
         lazy(lambda: ((q4(), k4(), q4(), *hf_cs(T=5), pos() > 0), {})), ERRORS,
         ("hf_apply_rotary_pos_emb_clvp: ", "position_ids.dtype=torch.bool")),
        ("hf_apply_rotary_pos_emb_clvp unsqueeze_dim 0", K.hf_apply_rotary_pos_emb_clvp,
         lazy(lambda: ((q4(), k4(), q4(), *hf_cs(T=5), pos(), 0), {})), ERRORS,
         ("hf_apply_rotary_pos_emb_clvp: ", "unsqueeze_dim must be 1", "unsqueeze_dim=0")),
        ("hf_apply_rotary_pos_emb_2d cos a batch of tables", K.hf_apply_rotary_pos_emb_2d,
         lazy(lambda: ((q4(), k4(), *(x.repeat_interleave(2, -1).expand(2, 3, 8) for x in cs())), {})), ERRORS,
         ("hf_apply_rotary_pos_emb_2d: ", "tables of shape (3, 8) or (1, 3, 8), one for the batch",
          "q (B, H, T, D) = (1, 2, 3, 8)", "cos.shape=(2, 3, 8)")),
        ("hf_apply_rotary_pos_emb_2d partial rotary", K.hf_apply_rotary_pos_emb_2d,
         lazy(lambda: ((q4(), k4(), *(x.repeat_interleave(2, -1)[..., :4] for x in cs())), {})), ERRORS,
         ("hf_apply_rotary_pos_emb_2d: ", "(3, 8)", "all D = 8 features", "cos.shape=(3, 4)")),
        ("hf_apply_rotary_pos_emb_2d pairs differ", K.hf_apply_rotary_pos_emb_2d,
         lazy(lambda: ((q4(), k4(), *hf_cs()), {})), ERRORS,
         ("hf_apply_rotary_pos_emb_2d: ", "cos must hold each value twice, in a row")),
        ("hf_apply_rotary_pos_emb_2d keys not a tiling", K.hf_apply_rotary_pos_emb_2d,
         lazy(lambda: ((q4(), q4(torch.float32, 1, 1, 9, 8), *(x.repeat_interleave(2, -1) for x in cs())),
                       dict(num_k_exclude_rope=2, repeat_freqs_k=True))), ERRORS,
         ("hf_apply_rotary_pos_emb_2d: ", "the first Tk − num_k_exclude_rope = 9 − 2 = 7", "q's 3 tokens",
          "k.shape=(1, 1, 9, 8)", "repeat_freqs_k=True")),
        ("hf_apply_rotary_pos_emb_2d keys tiled without repeat_freqs_k", K.hf_apply_rotary_pos_emb_2d,
         lazy(lambda: ((q4(), q4(torch.float32, 1, 1, 6, 8), *(x.repeat_interleave(2, -1) for x in cs())), {})), ERRORS,
         ("hf_apply_rotary_pos_emb_2d: ", "= 6 − 0 = 6", "with repeat_freqs_k=True a multiple", "repeat_freqs_k=False")),
        ("hf_apply_rotary_pos_emb_2d num_k_exclude_rope past k", K.hf_apply_rotary_pos_emb_2d,
         lazy(lambda: ((q4(), k4(), *(x.repeat_interleave(2, -1) for x in cs())), dict(num_k_exclude_rope=4))), ERRORS,
         ("hf_apply_rotary_pos_emb_2d: ", "num_k_exclude_rope must be an integer from 0 to k's 3 tokens",
          "num_k_exclude_rope=4")),
        ("hf_apply_rotary_pos_emb_2d repeat_freqs_k 1", K.hf_apply_rotary_pos_emb_2d,
         lazy(lambda: ((q4(), k4(), *(x.repeat_interleave(2, -1) for x in cs())), dict(repeat_freqs_k=1))), ERRORS,
         ("hf_apply_rotary_pos_emb_2d: ", "repeat_freqs_k must be True or False", "repeat_freqs_k=1")),
        ("hf_apply_rotary_pos_emb_2d k of another head_dim", K.hf_apply_rotary_pos_emb_2d,
         lazy(lambda: ((q4(), q4(torch.float32, 1, 1, 3, 6), *(x.repeat_interleave(2, -1) for x in cs())), {})), ERRORS,
         ("hf_apply_rotary_pos_emb_2d: ", "k must match q in batch, head_dim, dtype and device",
          "q.shape=(1, 2, 3, 8)", "k.shape=(1, 1, 3, 6)")),
        ("hf_apply_rotary_pos_emb_2d q of integers", K.hf_apply_rotary_pos_emb_2d,
         lazy(lambda: ((q4().int(), k4().int(), *(x.repeat_interleave(2, -1) for x in cs())), {})), ERRORS,
         ("hf_apply_rotary_pos_emb_2d: ", "q must be a floating-point tensor (B, H, T, D)", "q.dtype=torch.int32")),
        ("hf_apply_rotary_pos_emb_2d k None", K.hf_apply_rotary_pos_emb_2d,
         lazy(lambda: ((q4(), None, *(x.repeat_interleave(2, -1) for x in cs())), {})), ERRORS,
         ("hf_apply_rotary_pos_emb_2d: ", "k must be a tensor", "type(k)=NoneType")),
        ("hf_apply_rotary_pos_emb_2d odd head_dim", K.hf_apply_rotary_pos_emb_2d,
         lazy(lambda: ((q4(torch.float32, 1, 2, 3, 7), q4(torch.float32, 1, 2, 3, 7), torch.ones(1, 3, 7, device=DEVICE),
                        torch.zeros(1, 3, 7, device=DEVICE)), {})), ERRORS,
         ("hf_apply_rotary_pos_emb_2d: ", "head_dim must be even", "q.shape=(1, 2, 3, 7)", "head_dim=7")),
        ("hf_apply_rotary_pos_emb_2d_cross_attn cos_k of another width", K.hf_apply_rotary_pos_emb_2d_cross_attn,
         lazy(lambda: ((q4(), k4(), *(x.repeat_interleave(2, -1) for x in cs()), *(x[:2, :3] for x in cs())),
                       dict(repeat_freqs_k=1))), ERRORS,
         ("hf_apply_rotary_pos_emb_2d_cross_attn: ", "cos_k and sin_k must both be floating-point tables of shape (S, 8)",
          "cos_k.shape=(2, 3)")),
        ("hf_apply_rotary_pos_emb_2d_cross_attn repeat_freqs_k 0", K.hf_apply_rotary_pos_emb_2d_cross_attn,
         lazy(lambda: ((q4(), k4(), *(x.repeat_interleave(2, -1) for x in cs()), *(x.repeat_interleave(2, -1)[:2] for x in cs())),
                       dict(repeat_freqs_k=0))), ERRORS,
         ("hf_apply_rotary_pos_emb_2d_cross_attn: ", "repeat_freqs_k must be a positive integer", "repeat_freqs_k=0")),
        ("hf_apply_rotary_pos_emb_2d_cross_attn repeat_freqs_k True", K.hf_apply_rotary_pos_emb_2d_cross_attn,
         lazy(lambda: ((q4(), k4(), *(x.repeat_interleave(2, -1) for x in cs()), *(x.repeat_interleave(2, -1)[:2] for x in cs())),
                       dict(repeat_freqs_k=True))), ERRORS,
         ("hf_apply_rotary_pos_emb_2d_cross_attn: ", "repeat_freqs_k must be a positive integer", "repeat_freqs_k=True")),
        ("hf_apply_rotary_pos_emb_2d_cross_attn frames of unequal length", K.hf_apply_rotary_pos_emb_2d_cross_attn,
         lazy(lambda: ((q4(), q4(torch.float32, 1, 1, 8, 8), *(x.repeat_interleave(2, -1) for x in cs()),
                        *(x.repeat_interleave(2, -1)[:2] for x in cs())), dict(num_k_exclude_rope=1, repeat_freqs_k=2))),
         ERRORS, ("hf_apply_rotary_pos_emb_2d_cross_attn: ", "= 8 − 1 = 7", "repeat_freqs_k = 2 frames of equal length",
                  "k.shape=(1, 1, 8, 8)", "cos_k.shape=(2, 8)")),
        ("hf_apply_rotary_pos_emb_2d_cross_attn frames shorter than cos_k", K.hf_apply_rotary_pos_emb_2d_cross_attn,
         lazy(lambda: ((q4(), q4(torch.float32, 1, 1, 4, 8), *(x.repeat_interleave(2, -1) for x in cs()),
                        *(x.repeat_interleave(2, -1) for x in cs())), dict(repeat_freqs_k=2))),
         ERRORS, ("hf_apply_rotary_pos_emb_2d_cross_attn: ", "each at least cos_k's 3 tokens", "k.shape=(1, 1, 4, 8)")),
        ("hf_apply_rotary_pos_emb_2d_cross_attn sin_k not twice", K.hf_apply_rotary_pos_emb_2d_cross_attn,
         lazy(lambda: ((q4(), k4(), *(x.repeat_interleave(2, -1) for x in cs()), cs()[0].repeat_interleave(2, -1),
                        cs(half=8)[1]), dict(repeat_freqs_k=1))), ERRORS,
         ("hf_apply_rotary_pos_emb_2d_cross_attn: ", "sin_k must hold each value twice", "sin_k[..., 0::2] == sin_k[..., 1::2]")),
        ("hf_apply_rotary_pos_emb_2d_cross_attn cos_k None", K.hf_apply_rotary_pos_emb_2d_cross_attn,
         lazy(lambda: ((q4(), k4(), *(x.repeat_interleave(2, -1) for x in cs()), None, None), {})), ERRORS,
         ("hf_apply_rotary_pos_emb_2d_cross_attn: ", "cos_k must be a tensor", "type(cos_k)=NoneType")),
        ("hf_apply_rotary_pos_emb_2d_cross_attn q of another cos", K.hf_apply_rotary_pos_emb_2d_cross_attn,
         lazy(lambda: ((q4(), k4(), *(x.repeat_interleave(2, -1) for x in cs(T=4)), *(x.repeat_interleave(2, -1) for x in cs())),
                       {})), ERRORS,
         ("hf_apply_rotary_pos_emb_2d_cross_attn: ", "cos and sin must both be floating-point tables of shape (3, 8)",
          "cos.shape=(4, 8)")),
        ("hf_apply_rotary_emb freqs_cis real", K.hf_apply_rotary_emb,
         lazy(lambda: ((q4().transpose(1, 2), k4().transpose(1, 2), cs()[0][None]), {})), ERRORS,
         ("hf_apply_rotary_emb: ", "freqs_cis must be a complex tensor of shape (1, 3, 4)", "xq (B, T, H, D) = (1, 3, 2, 8)",
          "freqs_cis.shape=(1, 3, 4)", "freqs_cis.dtype=torch.float32")),
        ("hf_apply_rotary_emb freqs_cis 2-d", K.hf_apply_rotary_emb,
         lazy(lambda: ((q4().transpose(1, 2), k4().transpose(1, 2), torch.complex(*cs())), {})), ERRORS,
         ("hf_apply_rotary_emb: ", "(B or 1, T, D/2)", "freqs_cis.shape=(3, 4)", "freqs_cis.dtype=torch.complex64")),
        ("hf_apply_rotary_emb freqs_cis of other tokens", K.hf_apply_rotary_emb,
         lazy(lambda: ((q4().transpose(1, 2), k4().transpose(1, 2), torch.complex(*cs(T=4))[None]), {})), ERRORS,
         ("hf_apply_rotary_emb: ", "shape (1, 3, 4)", "freqs_cis.shape=(1, 4, 4)")),
        ("hf_apply_rotary_emb xk of other tokens", K.hf_apply_rotary_emb,
         lazy(lambda: ((q4().transpose(1, 2), q4(torch.float32, 1, 2, 4, 8).transpose(1, 2), torch.complex(*cs())[None]), {})),
         ERRORS, ("hf_apply_rotary_emb: ", "xk must match xq", "xq.shape=(1, 3, 2, 8)", "xk.shape=(1, 4, 2, 8)")),
        ("hf_apply_rotary_emb xq 3-d", K.hf_apply_rotary_emb,
         lazy(lambda: ((q4()[0], k4()[0], torch.complex(*cs())[None]), {})), ERRORS,
         ("hf_apply_rotary_emb: ", "xq and xk must be 4-d (B, T, H, D)", "xq.shape=(2, 3, 8)")),
        ("hf_apply_rotary_emb xq of integers", K.hf_apply_rotary_emb,
         lazy(lambda: ((q4().int().transpose(1, 2), k4().int().transpose(1, 2), torch.complex(*cs())[None]), {})), ERRORS,
         ("hf_apply_rotary_emb: ", "xq must be a floating-point tensor (B, T, H, D)", "xq.dtype=torch.int32")),
        ("hf_apply_rotary_emb_deepseek_v2 freqs_cis of another batch", K.hf_apply_rotary_emb_deepseek_v2,
         lazy(lambda: ((q4(), k4(), torch.complex(*cs()).expand(2, 3, 4)), {})), ERRORS,
         ("hf_apply_rotary_emb_deepseek_v2: ", "shape (1, 3, 4)", "xq (B, H, T, D) = (1, 2, 3, 8)", "freqs_cis.shape=(2, 3, 4)")),
        ("hf_vision_apply_rotary_emb freqs_ci of other patches", K.hf_vision_apply_rotary_emb,
         lazy(lambda: ((q4().transpose(1, 2), q4().transpose(1, 2), torch.complex(*cs(T=4))[:, None]), {})), ERRORS,
         ("hf_vision_apply_rotary_emb: ", "freqs_ci must be a complex tensor of 12 values", "(T, D/2) = (3, 4)",
          "query (B, T, H, D) = (1, 3, 2, 8)", "freqs_ci.shape=(4, 1, 4)")),
        ("hf_apply_rotary_emb freqs_cis requires grad", K.hf_apply_rotary_emb,
         lazy(lambda: ((q4().transpose(1, 2), k4().transpose(1, 2), torch.complex(*cs())[None].requires_grad_()), {})),
         ERRORS, ("hf_apply_rotary_emb: ", "does not differentiate through freqs_cis", "freqs_cis that requires grad")),
        ("hf_apply_rotary_emb freqs_cis on another device", K.hf_apply_rotary_emb,
         lazy(lambda: ((q4().transpose(1, 2), k4().transpose(1, 2), torch.complex(*cs())[None].to("meta")), {})),
         ERRORS, ("hf_apply_rotary_emb: ", "freqs_cis must be on xq's device", "freqs_cis.device=meta")),
        ("hf_vision_apply_rotary_emb key None", K.hf_vision_apply_rotary_emb,
         lazy(lambda: ((q4().transpose(1, 2), None, torch.complex(*cs())[:, None]), {})), ERRORS,
         ("hf_vision_apply_rotary_emb: ", "key must be a tensor", "type(key)=NoneType")),
        ("hf_apply_rotary_pos_emb_vision q 2-d", K.hf_apply_rotary_pos_emb_vision,
         lazy(lambda: ((q4()[0, 0], k4()[0, 0], *hf_cs()), {})), ERRORS,
         ("hf_apply_rotary_pos_emb_vision: ", "(T, H, D)", "q.shape=(3, 8)")),
        ("hf_apply_rotary_pos_emb_vision k of other tokens", K.hf_apply_rotary_pos_emb_vision,
         lazy(lambda: ((q4()[0].transpose(0, 1), q4(torch.float32, 1, 4, 2, 8)[0], *hf_cs()), {})), ERRORS,
         ("hf_apply_rotary_pos_emb_vision: ", "k must match q", "q.shape=(3, 2, 8)", "k.shape=(4, 2, 8)")),
        ("hf_apply_rotary_pos_emb_vision 3-d cos for (T, H, D)", K.hf_apply_rotary_pos_emb_vision,
         lazy(lambda: ((q4()[0].transpose(0, 1), k4()[0].transpose(0, 1), *(x[None] for x in hf_cs())), {})), ERRORS,
         ("hf_apply_rotary_pos_emb_vision: ", "(3, r)", "(T, H, D) = (3, 2, 8)", "cos.shape=(1, 3, 8)")),
        ("hf_apply_rotary_pos_emb_vision cos of other tokens", K.hf_apply_rotary_pos_emb_vision,
         lazy(lambda: ((q4()[0].transpose(0, 1), k4()[0].transpose(0, 1), *hf_cs(T=4)), {})), ERRORS,
         ("hf_apply_rotary_pos_emb_vision: ", "cos.shape=(4, 8)", "sin.shape=(4, 8)")),
        ("hf_apply_rotary_pos_emb_vision cos of another batch", K.hf_apply_rotary_pos_emb_vision,
         lazy(lambda: ((q4().transpose(1, 2), k4().transpose(1, 2), *(x.expand(3, 3, 8) for x in hf_cs())), {})), ERRORS,
         ("hf_apply_rotary_pos_emb_vision: ", "(B or 1, 3, r)", "(B, T, H, D) = (1, 3, 2, 8)", "cos.shape=(3, 3, 8)")),
        ("hf_apply_rotary_pos_emb_vision_cohere Llama's cos", K.hf_apply_rotary_pos_emb_vision_cohere,
         lazy(lambda: ((q4()[0].transpose(0, 1), k4()[0].transpose(0, 1), *hf_cs()), {})), ERRORS,
         ("hf_apply_rotary_pos_emb_vision_cohere: ", "cos[..., 0::2] == cos[..., 1::2]", "largest difference")),
        ("hf_apply_rotary_pos_emb_vision k None", K.hf_apply_rotary_pos_emb_vision,
         lazy(lambda: ((q4()[0].transpose(0, 1), None, *hf_cs()), {})), ERRORS,
         ("hf_apply_rotary_pos_emb_vision: ", "type(k)=NoneType")),
        ("hf_apply_rotary_pos_emb unsqueeze_dim bool", K.hf_apply_rotary_pos_emb,
         lazy(lambda: ((q4(), k4(), *hf_cs()), dict(unsqueeze_dim=True))), ERRORS,
         ("hf_apply_rotary_pos_emb: ", "unsqueeze_dim=True")),
        ("hf_apply_rotary_pos_emb unsqueeze_dim float", K.hf_apply_rotary_pos_emb,
         lazy(lambda: ((q4(), k4(), *hf_cs()), dict(unsqueeze_dim=1.0))), ERRORS,
         ("hf_apply_rotary_pos_emb: ", "unsqueeze_dim=1.0")),
    ]
    return [pytest.param(*row[1:], id=f"kernels: {row[0]}") for row in rows]


RAW = (IndexError, KeyError, AttributeError, RuntimeError, NotImplementedError, ZeroDivisionError, OverflowError)


def _problem(fn, a, kw, exc, words) -> str | None:
    """None if the call raises one of ``exc`` whose message holds every word; else what went wrong instead."""
    try:
        result = fn(*a, **kw)
    except exc as err:
        message = str(err)
        missing = [w for w in words if w not in message]
        return f"the message lacks {missing}: {type(err).__name__}: {message}" if missing else None
    except RAW as err:
        return f"a raw {type(err).__name__} that does not say which argument was wrong: {err}"
    return f"returned silently: {type(result).__name__}"


@pytest.mark.parametrize("fn, args, values, words", _spec_rows())
def test_bad_values_of_each_argument(fn, args, values, words):
    """Every bad value of the argument's kind raises an error that names the function, the argument and the value."""
    problems = []
    for value_label, value in values:
        a, kw = args(value)
        problem = _problem(fn, a, kw, ERRORS, [w.format(value=value) for w in words])
        if problem:
            problems.append(f"{value_label} ({value!r}): {problem}")
    assert not problems, "\n".join(problems)


def _rows():
    return [pytest.param(*row[1:], id=row[0]) for row in ROWS] + _kernel_rows()


@pytest.mark.parametrize("fn, args, exc, words", _rows())
def test_bad_argument_is_named(fn, args, exc, words):
    """The call raises one of ``exc`` whose message holds every word: never a silent answer, never a raw error."""
    a, kw = args()
    problem = _problem(fn, a, kw, exc, words)
    assert problem is None, problem


def test_table_is_broad():
    """Breadth is part of the point: the rows cover the public surface, without duplicate ids."""
    ids = [p.id for p in _spec_rows() + _rows()]
    assert len(set(ids)) == len(ids), "duplicate row ids"
    assert len(ids) >= 150
    covered = {words[0].split(":")[0].split(".")[0] for _, _, _, words in (p.values for p in _spec_rows() + _rows())}
    for name in ["apply_rope", "apply_rope_complex", "rope_cos_sin", "rope_frequencies", "packed_positions", "RotaryEmbedding",
                 "layout_permutation", "interleaved_to_half_weights", "decay_bound", "min_base"]:
        assert name in covered, f"no row for {name}"


def _tinylm():
    cfg = model.ModelConfig(vocab_size=8, dim=16, n_layers=1, n_heads=2, max_seq_len=8)
    idx = torch.randint(0, 8, (2, 5), generator=torch.Generator().manual_seed(0))
    return model.TinyLM(cfg), idx


GOOD = {  # legitimate values the checks must let through (a review found the first version refused each)
    "numpy int sizes": lambda: data.validation_windows(torch.arange(100, dtype=torch.uint8), np.int64(3), np.int64(8)),
    "numpy int seed": lambda: lrpe.Unitary(8, seed=np.int64(1)).matrix(1),
    "seed None": lambda: decay.random_score_stats([0, 10], 8, n_samples=10, seed=None),
    "seed Generator": lambda: decay.random_score_stats([0, 10], 8, n_samples=10, seed=np.random.default_rng(0)),
    "numpy bool": lambda: attention.softmax_attention(*torch.randn(3, 4, 8), causal=np.True_),
    "numpy int unsqueeze_dim": lambda: importlib.import_module("ropebook.kernels").hf_apply_rotary_pos_emb(
        torch.randn(1, 2, 3, 8), torch.randn(1, 1, 3, 8),
        *[torch.cat([c, c], -1)[None] for c in rb.rope_cos_sin(torch.arange(3), 8)], unsqueeze_dim=np.int64(1)),
    "numpy bool repeat_freqs_k": lambda: importlib.import_module("ropebook.kernels").hf_apply_rotary_pos_emb_2d(
        torch.randn(1, 2, 3, 8), torch.randn(1, 1, 7, 8),
        *[c.repeat_interleave(2, -1)[None] for c in rb.rope_cos_sin(torch.arange(3), 8)], num_k_exclude_rope=np.int64(1),
        repeat_freqs_k=np.True_),
    "Fraction max_base": lambda: decay.min_base(64, 16, max_base=Fraction(10**6)),
    "sympy angle": lambda: reference.rotation_matrix_2d(sp.pi / 2),
    "sympy position": lambda: reference.rope_matrix(sp.Integer(3), 4),
    "flat targets": lambda: (lambda lm, idx: lm(idx, idx.flatten()))(*_tinylm()),
    # numpy scalars for dims, heads and bases, as ropebook.decay has always taken them (they were refused elsewhere
    # with "dim must be a positive even integer, got dim=np.int64(8)")
    "numpy dim and base": lambda: rb.rope_frequencies(np.int64(8), base=np.float32(500.0)),
    "numpy rotary_dim": lambda: rb.apply_rope(_x(2, 3, 8), rotary_dim=np.int64(4), base=np.int64(100)),
    "numpy module sizes": lambda: rb.RotaryEmbedding(np.int64(8), rotary_dim=np.int64(4), max_positions=np.int64(4))(
        _x(1, 2, 6, 8), _x(1, 1, 6, 8)),
    "numpy heads": lambda: rb.interleaved_to_half_weights(_x(16, 3), np.int64(2), head_dim=np.int64(8)),
    "numpy head_dim": lambda: rb.layout_permutation(np.int32(8)),
    "numpy decay": lambda: (rb.decay_bound([0, 1], np.int64(8), np.float32(100.0)), rb.min_base(64, 8, per_decade=np.int64(6))),
    "float32 positions at 2^24": lambda: rb.apply_rope(_x(1, 8), torch.tensor([2.0**24])),
    "numpy starts and offsets": lambda: rb.packed_positions(np.array([0, 2, 2, 5], dtype=np.int32), offsets=np.int64(3)),
    "empty sequences": lambda: rb.packed_positions(torch.tensor([0, 0, 0], dtype=torch.int32), offsets=torch.tensor([1, 2])),
}


@pytest.mark.parametrize("name", GOOD)
def test_legitimate_values_pass(name):
    GOOD[name]()  # returns: no error
