"""The ch-long-term-decay checkers: the page's solutions pass, plausible mistakes fail with a message, nothing raises."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

from ropebook.checks import decay as checks
from checker_cases import checker_tests

# ----------------------------------------------------------------------------- solutions (as in the book)


def decay_bound(distance, dim, base):
    theta = base ** (-2 * np.arange(dim // 2) / dim)
    return np.abs(np.cumsum(np.exp(1j * np.outer(distance, theta)), axis=-1)).mean(axis=-1)


def cos_sums(base, context_length, dim, *, start=0, stop_offset=0):
    theta = base ** (-2 * np.arange(dim // 2) / dim)
    return np.cos(np.outer(np.arange(start, context_length + stop_offset), theta)).sum(axis=-1)


def base_ok(base, context_length, dim):
    return bool(cos_sums(base, context_length, dim).min() >= 0)


H, Z, S = sp.symbols("h0:5"), sp.symbols("z0:5"), sp.symbols("S1:6")
H_EXT = list(H) + [0]
ABEL = sum(S[i] * (H_EXT[i] - H_EXT[i + 1]) for i in range(5))


def check_abel(expr):
    return checks.check_abel_sum(expr, H, Z, S)


SOLUTIONS = {
    "decay_bound": (checks.check_decay_bound, decay_bound),
    "decay_bound: e^{-irθ} (the same moduli)": (
        checks.check_decay_bound, lambda r, d, b: np.abs(np.cumsum(np.exp(-1j * np.outer(r, b ** (-2 * np.arange(d // 2) / d))), -1)).mean(-1)),
    "base_ok": (checks.check_base_ok, base_ok),
    "base_ok: a numpy bool": (checks.check_base_ok, lambda b, L, d: cos_sums(b, L, d).min() >= 0),
    "abel": (check_abel, ABEL),
    # regrouped by sympy instead of by hand: after collecting, each S_j still appears once, times h_{j-1} − h_j
    "abel: expanded": (check_abel, sp.expand(ABEL)),
    "abel: h_N written out as 0": (check_abel, sum(S[i] * (H_EXT[i] - H_EXT[i + 1]) for i in range(4)) + S[4] * (H[4] - 0)),
}

# (checker, answer, words the message must contain)
WRONG = {
    "decay_bound: base**(+2i/d)": (checks.check_decay_bound, lambda r, d, b: decay_bound(r, d, 1 / b), ["decay_bound", "entries differ"]),
    "decay_bound: S_0 = 0 instead of S_{d/2}": (
        checks.check_decay_bound,
        lambda r, d, b: np.abs(np.cumsum(np.exp(1j * np.outer(r, b ** (-2 * np.arange(d // 2) / d))), -1)[:, :-1]).sum(-1) / (d // 2),
        ["entries differ"]),
    "decay_bound: sum, not mean": (checks.check_decay_bound, lambda r, d, b: decay_bound(r, d, b) * (d // 2), ["entries differ"]),
    "decay_bound: a list": (checks.check_decay_bound, lambda r, d, b: decay_bound(r, d, b).tolist(), ["expected a numpy array", "list"]),
    # r < L − 1 passed before the case L = 1708
    "base_ok: range(context_length - 1)": (checks.check_base_ok, lambda b, L, d: bool(cos_sums(b, L, d, stop_offset=-1).min() >= 0),
                                           ["context_length=1708", "yours True, expected False"]),
    "base_ok: r <= L": (checks.check_base_ok, lambda b, L, d: bool(cos_sums(b, L, d, stop_offset=1).min() >= 0),
                        ["context_length=1707", "yours False, expected True"]),
    # the array of conditions instead of its reduction raised "truth value of an array is ambiguous"
    "base_ok: the array, not its minimum": (checks.check_base_ok, lambda b, L, d: cos_sums(b, L, d) >= 0,
                                            ["expected True or False, got array(shape=(1024,), dtype=bool"]),
    "base_ok: the minimum, not the comparison": (checks.check_base_ok, lambda b, L, d: float(cos_sums(b, L, d).min()),
                                                 ["expected True or False, got"]),
    "abel: S shifted by one": (check_abel, sum(S[i] * (H_EXT[i + 1] - H_EXT[i]) for i in range(5)), ["not identically equal"]),
    "abel: a sign error": (check_abel, ABEL - 2 * S[2] * (H[2] - H[3]), ["not identically equal", "yours:", "expected:"]),
    # z_i = S_{i+1} − S_i put in, nothing rearranged: the same polynomial in S, so only the form tells it apart
    "abel: Σ h_i (S_{i+1} − S_i), substituted only": (
        check_abel, sum(H[j] * (S[j] - (S[j - 1] if j else 0)) for j in range(5)),
        ["equal to Σ_i h_i z_i, but not rearranged", "h1*(-S1 + S2)", "each S_j appears once, times an expression in h"]),
    "abel: half rearranged": (check_abel, S[0] * (H[0] - H[1]) + sum(H[j] * (S[j] - S[j - 1]) for j in range(2, 5)) + H[1] * S[1],
                              ["not rearranged", "h2*(-S2 + S3)"]),
    "abel: still in z": (check_abel, sum(h * z for h, z in zip(H, Z)), ["partial sums S and h alone", "z0"]),
    # an equation, a set or a tuple raised TypeError inside sympy
    "abel: an equation": (check_abel, sp.Eq(sp.Symbol("abel"), ABEL), ["an equation"]),
    "abel: a tuple of terms": (check_abel, tuple(ABEL.args), ["expected a sympy expression", "tuple"]),
    "abel: a set": (check_abel, {ABEL}, ["expected a sympy expression", "set"]),
    "abel: None": (check_abel, None, ["got None"]),
}


test_solution_passes, test_wrong_answer_fails_with_a_clear_message = checker_tests(SOLUTIONS, WRONG)


@pytest.mark.parametrize("h, z, s, words", [
    (None, Z, S, ["lists of sympy symbols", "NoneType"]),  # raised TypeError: object of type 'NoneType' has no len()
    (H, Z[:3], S, ["one length", "5, 3"]),
    (H, Z, 5, ["lists of sympy symbols", "int"]),
])
def test_abel_with_malformed_symbols_gives_a_message(h, z, s, words):
    result = checks.check_abel_sum(ABEL, h, z, s)
    assert not result.passed and all(w in result.message for w in words), result.message
