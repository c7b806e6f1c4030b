"""The ch-rope-gpu checkers: each passes its solution, fails wrong and malformed answers with a clear message, never raises."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from ropebook.checks import rope_gpu as checks
from checker_cases import checker_tests

TWO_PI_OVER_2_64 = 2 * math.pi / 2**64

# ----------------------------------------------------------------------------- solutions (as in the book)


def rope_bytes(B, T, n_q_heads, n_kv_heads, head_dim, itemsize):
    return 2 * B * T * (n_q_heads + n_kv_heads) * head_dim * itemsize


def decode_layer_bytes(B, L, d_model, d_ff, n_q_heads, n_kv_heads, head_dim, itemsize):
    weights = d_model * (n_q_heads + 2 * n_kv_heads) * head_dim + n_q_heads * head_dim * d_model + 3 * d_model * d_ff
    return (weights + 2 * B * L * n_kv_heads * head_dim) * itemsize


def fixed_point_angle(m, theta):
    tau = np.uint64(round(math.fmod(theta / (2 * math.pi), 1.0) * 2.0**64) % 2**64)
    return (np.asarray(m, dtype=np.uint64) * tau).view(np.int64).astype(np.float64) * TWO_PI_OVER_2_64


def _named(fn, name):
    """fn under another name: the page's function handed in as the answer (it would pass the values)."""
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)
    wrapper.__name__ = name
    return wrapper


def quarter_turn_cos_sin(u, *, floor=False, swap=True, signs=True):
    """The book's solution; the keywords make the plausible mistakes below (floor: the quarter below,
    not the nearest, which is still right, only less accurate)."""
    v = u if floor else u + np.int64(2**61)
    quarter = (v >> 62) & 3
    low = v & np.int64(2**62 - 1)
    rest = (low if floor else low - np.int64(2**61)).astype(np.float32) * np.float32(TWO_PI_OVER_2_64)
    c, s = np.cos(rest), np.sin(rest)
    cos, sin = (np.where(quarter & 1, s, c), np.where(quarter & 1, c, s)) if swap else (c, s)
    return (np.where((quarter + 1) & 2, -cos, cos), np.where(quarter & 2, -sin, sin)) if signs else (cos, sin)


def score_spread(turn, q, k, distance, starts):
    scores = [float(np.dot(turn(q, m + distance), turn(k, m))) for m in starts]
    return max(scores) - min(scores)


def abs_score_spread(turn, q, k, distance, starts):  # a wrong answer: the spread of |q·k|
    scores = [abs(float(np.dot(turn(q, m + distance), turn(k, m)))) for m in starts]
    return max(scores) - min(scores)


def score_spread_torch(turn, q, k, distance, starts):  # the same in torch: a tensor of scores, its max − min
    q, k = torch.as_tensor(q), torch.as_tensor(k)
    scores = torch.stack([torch.dot(torch.as_tensor(turn(q.numpy(), m + distance)), torch.as_tensor(turn(k.numpy(), m)))
                          for m in starts])
    return scores.max() - scores.min()


def _float32_angle(u):
    angle = u.astype(np.float32) * np.float32(TWO_PI_OVER_2_64)
    return np.cos(angle), np.sin(angle)


def _not_implemented(*args):
    raise NotImplementedError  # ~8 lines


SOLUTIONS = {
    "rope_bytes": (checks.check_rope_bytes, rope_bytes),
    "decode_layer_bytes": (checks.check_decode_layer_bytes, decode_layer_bytes),
    "fixed_point_angle": (checks.check_fixed_point_angle, fixed_point_angle),
    "quarter_turn_cos_sin": (checks.check_quarter_turn_cos_sin, quarter_turn_cos_sin),
    "quarter_turn_cos_sin, the quarter below": (checks.check_quarter_turn_cos_sin, lambda u: quarter_turn_cos_sin(u, floor=True)),
    "score_spread": (checks.check_score_spread, score_spread),
    "score_spread, torch": (checks.check_score_spread, score_spread_torch),
}

# (checker, answer, words the message must contain)
WRONG = {
    "rope_bytes: reads only": (checks.check_rope_bytes, lambda *a: rope_bytes(*a) // 2, ["rope_bytes", "hint"]),
    "rope_bytes: q heads for k too": (checks.check_rope_bytes, lambda B, T, hq, hk, d, i: rope_bytes(B, T, hq, hq, d, i), ["rope_bytes"]),
    "decode_layer_bytes: keys only": (checks.check_decode_layer_bytes,
                                      lambda B, L, dm, dff, hq, hk, d, i: decode_layer_bytes(B, L, dm, dff, hq, hk, d, i)
                                      - B * L * hk * d * i, ["decode_layer_bytes", "case 1/3", "hint"]),
    "decode_layer_bytes: square projections": (checks.check_decode_layer_bytes,
                                               lambda B, L, dm, dff, hq, hk, d, i: ((2 * dm * dm + 2 * dm * hk * d + 3 * dm * dff)
                                                                                    + 2 * B * L * hk * d) * i,
                                               ["decode_layer_bytes", "case 3/3", "not square"]),
    "decode_layer_bytes: two MLP matrices": (checks.check_decode_layer_bytes,
                                             lambda B, L, dm, dff, hq, hk, d, i: decode_layer_bytes(B, L, dm, dff, hq, hk, d, i)
                                             - dm * dff * i, ["decode_layer_bytes", "case 1/3"]),
    "decode_layer_bytes: the cache alone": (checks.check_decode_layer_bytes,
                                            lambda B, L, dm, dff, hq, hk, d, i: 2 * B * L * hk * d * i, ["decode_layer_bytes"]),
    "fixed_point_angle: float32 before the scaling": (
        checks.check_fixed_point_angle,
        lambda m, t: (np.asarray(m, dtype=np.uint64) * np.uint64(round(math.fmod(t / (2 * math.pi), 1.0) * 2.0**64) % 2**64))
        .view(np.int64).astype(np.float32).astype(np.float64) * TWO_PI_OVER_2_64,
        ["fixed_point_angle", "entries differ"]),
    "fixed_point_angle: float m·θ": (checks.check_fixed_point_angle, lambda m, t: np.remainder(m * t + math.pi, 2 * math.pi) - math.pi,
                                     ["fixed_point_angle", "case 2/3", "m < 1000000"]),
    "quarter_turn_cos_sin: the whole angle in float32": (checks.check_quarter_turn_cos_sin, _float32_angle,
                                                         ["quarter_turn_cos_sin", "entries differ", "hint"]),
    "quarter_turn_cos_sin: no swap for odd quarters": (checks.check_quarter_turn_cos_sin, lambda u: quarter_turn_cos_sin(u, swap=False),
                                                       ["entries differ"]),
    "quarter_turn_cos_sin: no signs": (checks.check_quarter_turn_cos_sin, lambda u: quarter_turn_cos_sin(u, signs=False), ["entries differ"]),
    "quarter_turn_cos_sin: float64": (checks.check_quarter_turn_cos_sin,
                                      lambda u: tuple(x.astype(np.float64) for x in quarter_turn_cos_sin(u)), ["wrong dtype", "float64"]),
    "quarter_turn_cos_sin: not implemented": (checks.check_quarter_turn_cos_sin, _not_implemented, ["not implemented yet"]),
    "quarter_turn_cos_sin: the page's quadrant_cos_sin": (checks.check_quarter_turn_cos_sin, _named(quarter_turn_cos_sin, "quadrant_cos_sin"),
                                                          ["the page's quadrant_cos_sin", "np.cos and np.sin"]),
    "quarter_turn_cos_sin: cos only": (checks.check_quarter_turn_cos_sin, lambda u: quarter_turn_cos_sin(u)[0], ["quarter_turn_cos_sin"]),
    "fixed_point_angle: not callable": (checks.check_fixed_point_angle, 3.14, ["expected a function", "float"]),
    "score_spread: zero, right for RoPE alone": (checks.check_score_spread, lambda turn, q, k, d, starts: 0.0,
                                                 ["score_spread", "case 3/7", "turn=tiled_halves_turn", "hint"]),
    "score_spread: both at m": (checks.check_score_spread,
                                lambda turn, q, k, d, starts: score_spread(turn, q, k, 0, starts),
                                ["score_spread", "case 3/7", "distance=3"]),
    "score_spread: q and k the other way round": (checks.check_score_spread,
                                                  lambda turn, q, k, d, starts: score_spread(turn, k, q, d, starts),
                                                  ["score_spread", "turn=added_turn"]),
    "score_spread: the largest score": (checks.check_score_spread,
                                        lambda turn, q, k, d, starts: max(float(np.dot(turn(q, m + d), turn(k, m))) for m in starts),
                                        ["score_spread", "case 1/7", "turn=rope_turn"]),
    "score_spread: the spread of |score|": (checks.check_score_spread, abs_score_spread,
                                            ["score_spread", "case 7/7", "scores of both signs"]),
    "score_spread: the first start skipped": (checks.check_score_spread,
                                              lambda turn, q, k, d, starts: score_spread(turn, q, k, d, starts[1:]),
                                              ["score_spread", "case 7/7"]),
    "score_spread: float32": (checks.check_score_spread,
                              lambda turn, q, k, d, starts: np.float32(score_spread(turn, q, k, d, starts)),
                              ["score_spread", "float64"]),
    "score_spread: not implemented": (checks.check_score_spread, _not_implemented, ["not implemented yet"]),
}


test_solution_passes, test_wrong_answer_fails_with_a_clear_message = checker_tests(SOLUTIONS, WRONG)


def test_quarter_turn_tolerance_separates_the_two_ways():
    """The checker's tolerance sits between what the exact reduction reaches and what a float32 angle
    reaches on its cases (units of 2^-23): the claim of the exercise, measured, not assumed."""
    rng = np.random.default_rng(0)
    u = rng.integers(-(2**63), 2**63 - 1, 4096, dtype=np.int64)
    angle = u.astype(np.float64) * TWO_PI_OVER_2_64
    exact = (np.cos(angle), np.sin(angle))

    def units(answer):
        return max(np.abs(a.astype(np.float64) - e).max() for a, e in zip(answer, exact)) / 2.0**-23

    assert units(quarter_turn_cos_sin(u)) < 1.0 < checks.QUARTER_TURN_ULPS < 2.0 < units(_float32_angle(u))


# ----------------------------------------------------------------------------- regressions (review of the checkers)


def _fixed_point_angle_with(turns_of):
    def answer(m, theta):
        tau = np.uint64(turns_of(theta) % 2**64)
        return (np.asarray(m, dtype=np.uint64) * tau).view(np.int64).astype(np.float64) * TWO_PI_OVER_2_64
    return answer


@pytest.mark.parametrize("turns_of", [
    lambda theta: round(theta * (2**64 / (2 * math.pi))),  # the constant 2^64/2π formed first: τ 8 units off at θ = 0.0137
    lambda theta: round(Fraction(theta) * 2**64 / Fraction(2 * math.pi)),  # the float θ/2π rounded exactly: 67 units off at θ = 1
], ids=["constant first", "exact rounding"])
def test_fixed_point_angle_accepts_every_rounding_of_tau(turns_of):
    """τ = round(2^64 θ/2π) formed another way was refused ("yours -1.55544, expected -1.55544")."""
    result = checks.check_fixed_point_angle(_fixed_point_angle_with(turns_of))
    assert result.passed, result.message


def test_fixed_point_angle_still_refuses_a_tau_that_is_not_one():
    result = checks.check_fixed_point_angle(_fixed_point_angle_with(lambda theta: round(theta / (2 * math.pi) * 2**64) + 2**20))
    assert not result.passed and "entries differ" in result.message, result.message


def test_fixed_point_angle_diff_tells_the_values_apart():
    """At atol 1e-12 the two values printed to 6 digits looked the same."""
    result = checks.check_fixed_point_angle(WRONG["fixed_point_angle: float m·θ"][1])
    yours, expected = result.message.splitlines()[0].split("yours ")[1].split(", expected ")
    assert yours != expected, result.message
