"""Checkers for the exercises of ``ch-rope-gpu``: the bytes a RoPE call must move and those a decoding step of
a layer must read, fixed-point angles,
cos and sin after an exact reduction to a quarter turn, and the spread of q·k over positions at one distance
(a test of whether a function found in a model is RoPE).

>>> check_rope_bytes(lambda B, T, n_q_heads, n_kv_heads, head_dim, itemsize: 0).passed
False
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ropebook.checks._core import Case, CheckResult, check_function

__all__ = ["check_rope_bytes", "check_decode_layer_bytes", "check_fixed_point_angle", "check_quarter_turn_cos_sin",
           "check_score_spread"]


def _rope_bytes_reference(B, T, n_q_heads, n_kv_heads, head_dim, itemsize):
    return 2 * B * T * (n_q_heads + n_kv_heads) * head_dim * itemsize  # q and k, read once and written once


def check_rope_bytes(fn: Any) -> CheckResult:
    """Check ``rope_bytes(B, T, n_q_heads, n_kv_heads, head_dim, itemsize)``: bytes of q and k read plus written.

    >>> check_rope_bytes(_rope_bytes_reference)
    Correct: rope_bytes agrees with the reference on all 4 cases.
    """
    cases = [Case(a, label=f"(B, T, Hq, Hk, D, itemsize)={a}") for a in
             [(1, 1024, 32, 8, 128, 2), (64, 1, 32, 8, 128, 2), (2, 7, 4, 4, 64, 4), (1, 16384, 64, 8, 128, 1)]]
    return check_function("rope_bytes", fn, _rope_bytes_reference, cases,
                          hint="q has B·T·Hq·D elements, k has B·T·Hk·D; each is read once and written once.")


def _decode_layer_bytes_reference(B, L, d_model, d_ff, n_q_heads, n_kv_heads, head_dim, itemsize):
    weights = (d_model * (n_q_heads + 2 * n_kv_heads) * head_dim  # the q, k and v projections
               + n_q_heads * head_dim * d_model  # the output projection
               + 3 * d_model * d_ff)  # the gated MLP: gate, up and down
    cache = 2 * B * L * n_kv_heads * head_dim  # keys and values of B sequences of L tokens
    return (weights + cache) * itemsize


def check_decode_layer_bytes(fn: Any) -> CheckResult:
    """Check ``decode_layer_bytes(B, L, d_model, d_ff, n_q_heads, n_kv_heads, head_dim, itemsize)``: the bytes one
    layer of a Llama-style model (grouped-query attention, gated MLP, no biases) reads at least in a decoding
    step, its weights and the keys and values of B sequences of L tokens in its cache.

    >>> check_decode_layer_bytes(_decode_layer_bytes_reference)
    Correct: decode_layer_bytes agrees with the reference on all 3 cases.
    """
    cases = [Case(a, label=f"(B, L, d_model, d_ff, Hq, Hk, D, itemsize)={a}{note}") for a, note in
             [((64, 1024, 4096, 14336, 32, 8, 128, 2), ", Llama 3 8B"), ((64, 8192, 8192, 28672, 64, 8, 128, 2), ", Llama 3 70B"),
              ((3, 5, 48, 96, 4, 2, 16, 4), ", Hq·D = 64 ≠ d_model: q's and o's projections not square")]]
    return check_function("decode_layer_bytes", fn, _decode_layer_bytes_reference, cases,
                          hint="the weight matrices (not the norm vectors): q's projection d_model × n_q_heads·head_dim, k's and v's d_model × "
                               "n_kv_heads·head_dim each, the output projection n_q_heads·head_dim × d_model, the "
                               "MLP's three d_model × d_ff matrices; "
                               "the cache: a key and a value of n_kv_heads·head_dim for each of B·L tokens; "
                               "all times itemsize.")


def _turns(theta: float) -> np.uint64:
    return np.uint64(round(math.fmod(theta / (2 * math.pi), 1.0) * 2.0**64) % 2**64)


def _fixed_point_angle_reference(m, theta):
    prod = np.asarray(m, dtype=np.uint64) * _turns(theta)  # wraps modulo 2^64: the angle modulo 2π, exactly
    return prod.view(np.int64).astype(np.float64) * (2 * math.pi / 2.0**64)  # in [-π, π)


def _fixed_point_angles(m, turns: np.ndarray) -> np.ndarray:
    """wrap(m·τ)·2π/2^64 for each τ in ``turns``: shape ``(len(turns), *m.shape)``."""
    prod = np.asarray(m, dtype=np.uint64)[None] * turns.reshape(-1, *([1] * np.ndim(m)))  # wraps modulo 2^64
    return prod.view(np.int64).astype(np.float64) * (2 * math.pi / 2.0**64)


def _admissible_turns(theta: float) -> np.ndarray:
    """Every τ within four units in the last place of θ/2π·2^64 of the reference's τ.

    θ/2π·2^64 is formed in float64, and ``round(θ * (2**64 / (2*math.pi)))`` or an exact rational
    rounding gives a τ a few hundred units away from ``round(θ/(2*math.pi) * 2**64)`` when that
    number is near 2^62: all are the exercise's τ = round(2^64 θ/2π), to the rounding of θ/2π.
    """
    x = math.fmod(theta / (2 * math.pi), 1.0) * 2.0**64
    reach = 4 * max(1, int(math.ulp(x)))
    return _turns(theta) + np.arange(-reach, reach + 1).astype(np.uint64)  # uint64 wraps, as τ does


def check_fixed_point_angle(fn: Any) -> CheckResult:
    """Check ``fixed_point_angle(m, theta)``: m·θ reduced to [-π, π) through 64-bit fixed-point turns.

    Shapes: ``m`` a numpy int64 array of positions, ``theta`` a float → float64 array like m.

    The answer must be wrap(m·τ)·2π/2^64 to 1e-12 for one τ that rounds θ/2π·2^64 (several τ a few
    units apart do, depending on how the float product is formed); float64 m·θ reduced with
    ``np.remainder`` is off by about 1e-10 at m ~ 10^6, and a product converted to float32 by 1e-7.

    >>> check_fixed_point_angle(_fixed_point_angle_reference)
    Correct: fixed_point_angle agrees with the reference on all 3 cases.
    >>> scale = 2**64 / (2 * math.pi)  # θ·(2^64/2π): another rounding of the same τ
    >>> check_fixed_point_angle(lambda m, t: _fixed_point_angles(m, np.array([round(t * scale)], dtype=np.uint64))[0])
    Correct: fixed_point_angle agrees with the reference on all 3 cases.
    """
    rng = np.random.default_rng(0)
    cases = [Case((rng.integers(0, top, 6), theta), label=f"m < {top}, theta={theta}")
             for top, theta in [(100, 1.0), (1_000_000, 1.0), (2**31, 0.0137)]]
    answer = fn
    if callable(fn):
        def answer(m, theta):
            """The reader's angles, replaced by the reference's where they are exactly those of another admissible τ."""
            yours = fn(m, theta)
            try:
                candidates = _fixed_point_angles(m, _admissible_turns(theta))  # (K, *m.shape)
                if isinstance(yours, np.ndarray) and yours.dtype == np.float64 and yours.shape == np.shape(m):
                    if (np.abs(candidates - yours) <= 1e-12).all(axis=tuple(range(1, candidates.ndim))).any():
                        return _fixed_point_angle_reference(m, theta)
            except Exception:  # an answer of another kind: compare it as it is, and let the diff say what is wrong
                pass
            return yours

    return check_function("fixed_point_angle", answer, _fixed_point_angle_reference, cases, atol=1e-12, rtol=0,
                          hint="turns = round(θ/2π · 2^64) as uint64; m·turns wraps; view as int64 and scale by 2π/2^64. "
                               "(numpy makes int64 × uint64 a float64 product: cast m to uint64 first.)")


def _quarter_turn_cos_sin_reference(u):
    angle = np.asarray(u, dtype=np.int64).astype(np.float64) * (2 * math.pi / 2.0**64)  # float64: error ~1e-16
    return np.cos(angle).astype(np.float32), np.sin(angle).astype(np.float32)  # correctly rounded, nearly


QUARTER_TURN_ULPS = 1.5  # the tolerance, in units of 2^-23: the reduction passes, a float32 angle does not


def check_quarter_turn_cos_sin(fn: Any) -> CheckResult:
    """Check ``quarter_turn_cos_sin(u)``: float32 cos and sin of the fixed-point angle 2π·u/2^64, accurate
    to ``QUARTER_TURN_ULPS`` units of 2^-23 (an exact reduction to a quarter turn gets within 0.5 here;
    converting the whole angle to float32 first is off by over 2 on these cases).

    Shapes: ``u`` a numpy int64 array (wrapped products m·τ) → a tuple of two float32 arrays like u.

    >>> check_quarter_turn_cos_sin(_quarter_turn_cos_sin_reference)
    Correct: quarter_turn_cos_sin agrees with the reference on all 3 cases.
    >>> shortcut = lambda u: tuple(f(u.astype(np.float32) * np.float32(2 * math.pi / 2**64)) for f in (np.cos, np.sin))
    >>> check_quarter_turn_cos_sin(shortcut).passed
    False
    """
    if getattr(fn, "__name__", None) == "quadrant_cos_sin":  # the page's own version, with Cephes polynomials
        return CheckResult(False, "✗ quarter_turn_cos_sin: that is the page's quadrant_cos_sin (its polynomials in "
                                  "place of np.cos and np.sin); write yours with np.cos and np.sin, without it")
    rng = np.random.default_rng(0)
    edges = np.array([0, 1, -1, 2**61, 2**61 - 1, -(2**61), 2**62, -(2**62), 2**63 - 1, -(2**63)], dtype=np.int64)
    cases = [Case((np.concatenate([edges, rng.integers(-(2**63), 2**63 - 1, 4096, dtype=np.int64)]),),
                  label=f"u: 4106 fixed-point angles, draw {i}") for i in range(1, 4)]
    return check_function("quarter_turn_cos_sin", fn, _quarter_turn_cos_sin_reference, cases,
                          atol=QUARTER_TURN_ULPS * 2.0**-23, rtol=0,
                          hint="quarter = ((u + 2^61) >> 62) & 3; rest = ((u + 2^61) & (2^62 - 1)) - 2^61, then float32 "
                               "and × 2π/2^64; cos and sin of rest in float32; odd quarters swap them; "
                               "quarters 1, 2 negate cos and 2, 3 negate sin.")


def _frequencies(D: int) -> np.ndarray:
    return 10000.0 ** (-2.0 * np.arange(D // 2) / D)


def _rope_turn(x, m):
    """RoPE of pairs (2i, 2i + 1): pair i turned by m·θ_i."""
    a = m * _frequencies(len(x))
    y = np.empty_like(x)
    y[0::2] = x[0::2] * np.cos(a) - x[1::2] * np.sin(a)
    y[1::2] = x[0::2] * np.sin(a) + x[1::2] * np.cos(a)
    return y


def _tiled_halves_turn(x, m):
    """Pairs (2i, 2i + 1), but cos and sin tiled in halves (V-JEPA 2's): feature j takes frequency j mod D/2,
    so the two features of a pair take two different angles. Not a rotation."""
    a = np.tile(m * _frequencies(len(x)), 2)
    turned = np.empty_like(x)
    turned[0::2], turned[1::2] = -x[1::2], x[0::2]
    return x * np.cos(a) + turned * np.sin(a)


def _added_turn(x, m):
    """An absolute encoding added, not turned: the sinusoids of position m (Vaswani et al.'s)."""
    a = m * _frequencies(len(x))
    pe = np.empty_like(x)
    pe[0::2], pe[1::2] = np.sin(a), np.cos(a)
    return x + pe


def _score_spread_reference(turn, q, k, distance, starts):
    scores = [float(np.dot(np.asarray(turn(q, m + distance)), np.asarray(turn(k, m)))) for m in starts]
    return max(scores) - min(scores)


def check_score_spread(fn: Any) -> CheckResult:
    """Check ``score_spread(turn, q, k, distance, starts)``: the largest minus the smallest of the scores
    ``turn(q, m + distance) · turn(k, m)`` over the positions m in ``starts`` (0 up to rounding for RoPE,
    whatever q, k and the distance; not for an encoding whose scores see absolute positions).

    Shapes: ``turn(x, m)`` takes a float64 vector (D,) and an integer position, returns (D,); q and k (D,),
    ``distance`` an int, ``starts`` a list of ints → a float.

    >>> check_score_spread(_score_spread_reference)
    Correct: score_spread agrees with the reference on all 7 cases.
    >>> check_score_spread(lambda turn, q, k, distance, starts: 0.0).passed  # right for RoPE alone
    False
    """
    rng = np.random.default_rng(0)
    cases = []
    for turn in (_rope_turn, _tiled_halves_turn, _added_turn):
        for D, distance, starts in ((8, 3, [0, 1, 7, 50]), (16, 0, [2, 100, 1000, 40_000, 5])):
            q, k = rng.standard_normal(D), rng.standard_normal(D)
            cases.append(Case((turn, q, k, distance, starts),
                              label=f"turn={turn.__name__.strip('_')}, D={D}, distance={distance}, starts={starts}"))
    q, k = np.random.default_rng(3).standard_normal((2, 8))  # scores of both signs: the spread of |score| is not it
    cases.append(Case((_tiled_halves_turn, q, k, 2, [40, 2, 3, 10]),  # (the largest score first)
                      label="turn=tiled_halves_turn, D=8, distance=2, starts=[40, 2, 3, 10], scores of both signs"))
    return check_function("score_spread", fn, _score_spread_reference, cases, rtol=1e-9, atol=1e-9,
                          hint="for each m in starts (every one): the dot product of turn(q, m + distance) and "
                               "turn(k, m), in float64; return max − min of those scores.")
