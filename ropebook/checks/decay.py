"""Checkers for the long-term decay chapter: the RoFormer bound, Men et al.'s base condition, Abel summation.

Chapter: ``ch-long-term-decay``.
"""

from __future__ import annotations

import numpy as np
import sympy as sp

from ropebook.checks._core import Case, CheckResult, check_function, check_sympy_equal
from ropebook.decay import decay_bound, satisfies_base_bound

__all__ = ["check_decay_bound", "check_base_ok", "check_abel_sum"]


def check_decay_bound(fn) -> CheckResult:
    """Check ``fn(distance, dim, base)`` against :func:`ropebook.decay.decay_bound` on seeded cases.

    >>> check_decay_bound(decay_bound)
    Correct: decay_bound agrees with the reference on all 5 cases.
    """
    rng = np.random.default_rng(6)
    cases = [Case((np.arange(8.0), 8, 10_000.0), label="distance=arange(8), dim=8")]
    for dim, base in [(16, 100.0), (64, 10_000.0), (128, 10_000.0), (128, 500_000.0)]:
        r = np.sort(rng.uniform(0, 5000, size=17)).round()
        cases.append(Case((r, dim, base), label=f"distance.shape=(17,), dim={dim}, base={base:g}"))
    return check_function("decay_bound", fn, decay_bound, cases,
                          hint="S_j sums e^{i r θ_i} over the pairs i < j, j = 1 … d/2; average |S_j| over j.")


def check_base_ok(fn) -> CheckResult:
    """Check ``fn(base, context_length, dim) -> bool`` (is Σ_i cos(rθ_i) ≥ 0 for all r < L?).

    The cases sit on both sides of the boundary, so "always True" or "always False" fails.

    >>> check_base_ok(satisfies_base_bound)
    Correct: base_ok agrees with the reference on all 8 cases.
    """
    # the sum first turns negative at r = 1707 for (1e4, ·, 128): L = 1707 is True and catches r <= L;
    # L = 1708 is False and catches r < L − 1 (range(context_length - 1))
    cases = [Case((float(b), L, d), label=f"base={b:g}, context_length={L}, dim={d}")
             for b, L, d in [(1e4, 1024, 128), (1e4, 4096, 128), (5e5, 8192, 128),
                             (3e3, 1024, 128), (2e4, 1000, 64), (1e4, 1000, 64), (1e4, 1707, 128), (1e4, 1708, 128)]]
    return check_function("base_ok", fn, satisfies_base_bound, cases,
                          hint="evaluate the sum at every integer distance 0 … L − 1 and take the minimum.")


def check_abel_sum(expr, h, z, S) -> CheckResult:
    """Check the summation by parts of Σ_i h_i z_i, written in the partial sums S_j = Σ_{i<j} z_i.

    ``h``, ``z`` and ``S`` are the reader's lists of N sympy symbols; ``S[j]`` stands for S_{j+1} = z_0 + … + z_j.
    ``expr`` must be in h and S alone, equal Σ_i h_i z_i once the sums are put in for S, and be the
    rearrangement itself: after ``sp.collect(expr, S)`` (which groups terms and expands nothing) every S_j
    appears once, times an expression in h alone (that coefficient is then h_{j−1} − h_j, with h_N = 0).
    So Σ_i h_i (S_{i+1} − S_i), the substitution z_i = S_{i+1} − S_i before any rearranging, is equal
    but is not an answer.

    (The examples here show wrong answers only: students open this text.)

    >>> h, z, S = sp.symbols("h0:3"), sp.symbols("z0:3"), sp.symbols("S1:4")
    >>> print(check_abel_sum(sum(hj * zj for hj, zj in zip(h, z)), h, z, S))
    ✗ abel: write it with the partial sums S and h alone; it contains z0, z1, z2
    >>> print(check_abel_sum(h[0] * S[0] + h[1] * (S[1] - S[0]) + h[2] * (S[2] - S[1]), h, z, S))  # doctest: +ELLIPSIS
    ✗ abel: equal to Σ_i h_i z_i, but not rearranged; after collecting the terms of each S_j this is left: h1*(-S1 + S2) + h2*(-S2 + S3)
    ...
    """
    try:
        h, z, S = list(h), list(z), list(S)
    except TypeError:
        return CheckResult(False, f"✗ abel: h, z and S must be lists of sympy symbols, got {type(h).__name__}, "
                                  f"{type(z).__name__} and {type(S).__name__}")
    if len(h) != len(z) or not h or len(S) != len(h):
        return CheckResult(False, f"✗ abel: h, z and S must be non-empty and of one length, got {len(h)}, {len(z)} "
                                  f"and {len(S)}")
    target = sum(hj * zj for hj, zj in zip(h, z))
    value = expr  # None, a tuple, an equation...: check_sympy_equal says what it expected
    if isinstance(expr, sp.Basic):
        used = sorted(expr.free_symbols & set(z), key=str)
        if used:
            return CheckResult(False, f"✗ abel: write it with the partial sums S and h alone; it contains "
                                      f"{', '.join(map(str, used))}")
        value = expr.subs({S[j]: sum(z[: j + 1], sp.Integer(0)) for j in range(len(S))})  # S_{j+1} = z_0 + … + z_j
    result = check_sympy_equal("abel", value, target,
                               hint="with h_N = 0: Σ_i h_i (S_{i+1} − S_i) = Σ_j S_{j+1} (h_j − h_{j+1}).")
    if not result.passed:
        return result
    # Equal, and in h and S alone. Now the form: Σ_j S_j·c_j, each c_j free of S.
    try:
        groups = sp.collect(sp.sympify(expr), S, evaluate=False)  # {S_j: its coefficient, 1: the rest}
        left = [c if key == 1 else key * c for key, c in groups.items() if key not in S or c.free_symbols & set(S)]
    except Exception as exc:  # never raise on a reader's answer
        return CheckResult(False, f"✗ abel: sympy could not collect the terms of each S_j ({type(exc).__name__}: {exc})")
    if left:
        return CheckResult(False, f"✗ abel: equal to Σ_i h_i z_i, but not rearranged; after collecting the terms of "
                                  f"each S_j this is left: {' + '.join(map(str, left))}\n  hint: summation by parts "
                                  f"regroups the sum so that each S_j appears once, times an expression in h alone.")
    return result
