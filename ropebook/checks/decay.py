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
                          hint="S_j sums e^{i r θ_k} for k < j, j = 1 … d/2; average |S_j| over j.")


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


def check_abel_sum(expr, h, z, S=None) -> CheckResult:
    """Check a summation-by-parts form of Σ_j h_j z_j, written with partial sums S_j = Σ_{k<j} z_k.

    ``h`` and ``z`` are the reader's lists of sympy symbols (the same length N). With ``S``, the symbols
    S_1 … S_N, ``expr`` must be written in h and S alone (no z: Σ_j h_j z_j itself is not an answer) and
    equal Σ_j h_j z_j once S_j = z_0 + … + z_{j−1} is put in. In the S basis that form is unique, so it
    is the summation by parts Σ_j S_{j+1} (h_j − h_{j+1}) however it is written. Without ``S``, ``expr``
    (built from z) must equal Σ_j h_j z_j identically.

    >>> h, z, S = sp.symbols("h0:3"), sp.symbols("z0:3"), sp.symbols("S1:4")
    >>> check_abel_sum(sum(S[j] * (h[j] - (h[j + 1] if j + 1 < 3 else 0)) for j in range(3)), h, z, S)
    Correct: abel equals the expected expression.
    >>> print(check_abel_sum(sum(hj * zj for hj, zj in zip(h, z)), h, z, S))
    ✗ abel: write it with the partial sums S and h alone; it contains z0, z1, z2
    """
    try:
        h, z, S = list(h), list(z), (None if S is None else list(S))
    except TypeError:
        return CheckResult(False, f"✗ abel: h, z (and S) must be lists of sympy symbols, got {type(h).__name__}, "
                                  f"{type(z).__name__}" + ("" if S is None else f" and {type(S).__name__}"))
    if len(h) != len(z) or not h or (S is not None and len(S) != len(h)):
        return CheckResult(False, f"✗ abel: h, z (and S) must be non-empty and of one length, got {len(h)}, {len(z)}"
                                  + ("" if S is None else f" and {len(S)}"))
    target = sum(hj * zj for hj, zj in zip(h, z))
    hint = "with h_N = 0: Σ_j h_j (S_{j+1} − S_j) = Σ_j S_{j+1} (h_j − h_{j+1})."
    if S is None:
        return check_sympy_equal("abel", expr, target, hint=hint)
    if isinstance(expr, sp.Basic):
        used = sorted(expr.free_symbols & set(z), key=str)
        if used:
            return CheckResult(False, f"✗ abel: write it with the partial sums S and h alone; it contains "
                                      f"{', '.join(map(str, used))}")
        expr = expr.subs({S[j]: sum(z[: j + 1], sp.Integer(0)) for j in range(len(S))})  # S_{j+1} = z_0 + … + z_j
    return check_sympy_equal("abel", expr, target, hint=hint)
