"""Checkers for the Part II exercises: 2-D RoPE, the relative score, wavelengths, layouts, R_{Θ,m}.

Each checker runs the reader's answer on seeded cases against ``ropebook.reference``
(numpy float64) or against a sympy construction, and returns a ``CheckResult``.
None of them raises on a wrong or malformed answer.

Chapters: ``ch-deriving-rope`` (``check_rope_2d``, ``check_relative_score``) and
``ch-rope-d-dims`` (``check_wavelengths``, ``check_interleaved_to_half``,
``check_rope_elementwise``, ``check_rope_matrix_sym``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import sympy as sp
import torch

from ropebook import reference, rotary, symbolic
from ropebook.checks._core import (Case, CheckResult, ForbiddenCall, check_function, check_sympy_equal, forbid,
                                   hide_expected)
from ropebook.symbolic import is_identity

__all__ = [
    "check_rope_2d",
    "check_relative_score",
    "check_wavelengths",
    "check_interleaved_to_half",
    "check_rope_elementwise",
    "check_rope_matrix_sym",
    "relative_score_expected",
]

_SEED = 2104_09864  # RoFormer's arXiv number: every checker draws the same cases on every run


def _safe_sympy_equal(name: str, yours: Any, expected: Any, *, hint: str) -> CheckResult:
    """``check_sympy_equal`` that reports, rather than raises, when sympy cannot handle the answer."""
    try:
        return check_sympy_equal(name, yours, expected, hint=hint)
    except Exception as exc:  # e.g. a Matrix holding tensors or strings
        return CheckResult(False, f"✗ {name}: sympy could not compare your answer ({type(exc).__name__}: {exc})")


# ----------------------------------------------------------------------------- 2-D RoPE (ch-deriving-rope)


def _rope_2d_reference(x: torch.Tensor, m: torch.Tensor, theta: float) -> torch.Tensor:
    y = reference.apply_rope_reference(x, m, inv_freq=[theta])  # (T, 2) float64
    return torch.as_tensor(y, dtype=x.dtype)


def check_rope_2d(fn: Any) -> CheckResult:
    """Check ``rope_2d(x, m, theta)``: rotate each row x[t] = (x₁, x₂) by the angle m[t]·θ.

    Shapes: ``x (T, 2)`` float, ``m (T,)`` integer positions, ``theta`` a float → ``(T, 2)``, dtype of x.

    >>> check_rope_2d(lambda x, m, theta: x).passed
    False
    """
    g = torch.Generator().manual_seed(_SEED)
    cases = []
    # the last case has positions up to 10⁵: angles m·θ formed in float32 are off there by ~1e-3 rad, far
    # beyond float64's tolerance; formed in float64 they are exact to ~1e-11
    for T, theta, top, dtype in [(5, 1.0, 50, torch.float64), (7, 0.3, 16, torch.float32), (1, 2.5, 4, torch.float64),
                                 (8, 0.7, 100_000, torch.float64)]:
        x = torch.randn(T, 2, generator=g, dtype=torch.float64).to(dtype)
        m = torch.randint(0, top, (T,), generator=g)
        cases.append(Case((x, m, theta), label=f"x.shape={tuple(x.shape)}, x.dtype={str(dtype)[6:]}, theta={theta}, "
                                               f"positions up to {int(m.max())}"))
    return check_function("rope_2d", fn, _rope_2d_reference, cases,
                          hint="y₁ = x₁ cos(mθ) − x₂ sin(mθ), y₂ = x₁ sin(mθ) + x₂ cos(mθ), with the angles mθ formed "
                               "in float64 (float32 angles are off by ~1e-3 rad at m ≈ 10⁵); return x's dtype.")


# ----------------------------------------------------------------------------- the relative score (ch-deriving-rope)

_SCORE_NAMES = ("q1", "q2", "k1", "k2", "theta", "r")


def _score_symbols() -> dict[str, sp.Symbol]:
    return {name: sp.Symbol(name, real=True) for name in _SCORE_NAMES}


def relative_score_expected() -> sp.Expr:
    """The 2-D RoPE score ⟨R(mθ)q, R(nθ)k⟩ derived by sympy, written with r = m − n.

    >>> s = relative_score_expected()
    >>> sorted(str(v) for v in s.free_symbols)
    ['k1', 'k2', 'q1', 'q2', 'r', 'theta']
    """
    S = _score_symbols()
    m, n = sp.symbols("m n", real=True)
    rot = lambda a: sp.Matrix([[sp.cos(a), -sp.sin(a)], [sp.sin(a), sp.cos(a)]])  # noqa: E731
    q, k = sp.Matrix([S["q1"], S["q2"]]), sp.Matrix([S["k1"], S["k2"]])
    score = ((rot(m * S["theta"]) * q).T * (rot(n * S["theta"]) * k))[0, 0]
    return sp.simplify(sp.expand_trig(score).subs(m, n + S["r"]).expand()).subs(n, 0)


def check_relative_score(expr: Any) -> CheckResult:
    """Check a closed form of the 2-D RoPE score that uses only r = m − n (not m and n).

    The expression may use the real symbols ``q1 q2 k1 k2 theta r``; symbols with
    those names but other assumptions are accepted too.

    >>> q1, q2, k1, k2, theta, r = sp.symbols("q1 q2 k1 k2 theta r", real=True)
    >>> check_relative_score((q1 * k1 + q2 * k2) * sp.cos(r * theta)).passed
    False
    """
    name = "score"
    if expr is None:
        return CheckResult(False, f"✗ {name}: got None — assign your expression to `{name}`.")
    if callable(expr) and not isinstance(expr, sp.Basic):
        return CheckResult(False, f"✗ {name}: expected a sympy expression, got a function ({type(expr).__name__}); call it first.")
    try:
        expr = sp.sympify(expr)
    except Exception as exc:  # SympifyError, TypeError, or ValueError from a tensor's __float__
        return CheckResult(False, f"✗ {name}: expected a sympy expression, got {type(expr).__name__}: {exc}")
    if isinstance(expr, sp.MatrixBase) and expr.shape == (1, 1):
        return CheckResult(False, f"✗ {name}: expected a scalar sympy expression, got a 1×1 Matrix; take its entry: "
                                  "score = (...)[0, 0]")
    if not isinstance(expr, sp.Expr):
        return CheckResult(False, f"✗ {name}: expected a scalar sympy expression, got {type(expr).__name__}")
    S = _score_symbols()
    unknown = sorted(str(s) for s in expr.free_symbols if str(s) not in S)
    if unknown:
        return CheckResult(False, f"✗ {name}: your expression uses {unknown}; use only {list(_SCORE_NAMES)} "
                                  "(write m − n as r: the point is that m and n never appear alone).")
    expr = expr.subs({s: S[str(s)] for s in expr.free_symbols})
    expected = relative_score_expected()
    result = _safe_sympy_equal(name, expr, expected,
                               hint="expand ⟨R(mθ)q, R(nθ)k⟩, then use cos(a)cos(b) + sin(a)sin(b) = cos(a − b).")
    if result.passed or "\n  expected: " not in result.message:
        return result
    # The expected score is the exercise's answer: say what differs instead of printing it.
    return hide_expected(result, _score_difference(expr, expected), label="differs")


def _score_difference(yours: sp.Expr, expected: sp.Expr) -> str:
    """Which coefficient of a wrong score, on cos(rθ) or on sin(rθ), differs from the expected one (never raises)."""
    S = _score_symbols()
    u = sp.Symbol("u", real=True)  # the angle rθ

    def in_u(e: sp.Expr) -> sp.Expr:
        return sp.expand(sp.expand_complex(e.subs(S["r"], u / S["theta"])))

    try:
        y, e = in_u(yours), in_u(expected)
        coefficients = {"cos(r*theta)": (y.subs(u, 0), e.subs(u, 0)),  # A and B of A·cos(u) + B·sin(u)
                        "sin(r*theta)": (y.subs(u, sp.pi / 2), e.subs(u, sp.pi / 2))}
        if not is_identity(y, coefficients["cos(r*theta)"][0] * sp.cos(u) + coefficients["sin(r*theta)"][0] * sp.sin(u)):
            return "yours is not A·cos(r*theta) + B·sin(r*theta) with A and B free of r; the score has that form"
        problems = []
        for trig, (mine, want) in coefficients.items():
            if is_identity(mine, want):
                continue
            if mine == 0:
                problems.append(f"the term in {trig} is missing")
            elif is_identity(mine, -want):
                problems.append(f"the coefficient of {trig} has the wrong sign")
            else:
                problems.append(f"the coefficient of {trig} is wrong")
        if problems:
            return "; ".join(problems) + " (after expanding)"
    except Exception:  # an expression sympy cannot expand or evaluate: fall through to the plain message
        pass
    return "the expected score is not shown, since it is the answer; compare your steps with the hint"


# ----------------------------------------------------------------------------- wavelengths (ch-rope-d-dims)


def _wavelengths_reference(dim: int, base: float) -> np.ndarray:
    return 2 * math.pi / reference.rope_frequencies(dim, base=base)  # (dim // 2,)


def check_wavelengths(fn: Any) -> CheckResult:
    """Check ``wavelengths(dim, base)``: λ_i = 2π/θ_i with θ_i = base^(-2i/dim), a float64 numpy array ``(dim // 2,)``.

    (The examples here show wrong answers only: students open this text.)

    >>> check_wavelengths(lambda dim, base: np.ones(dim // 2)).passed
    False
    """
    cases = [Case((d, b), label=f"dim={d}, base={b:g}") for d, b in [(8, 10_000.0), (64, 10_000.0), (128, 10_000.0), (128, 500_000.0)]]
    return check_function("wavelengths", fn, _wavelengths_reference, cases,
                          hint="θ_i = base**(-2i/dim) for i = 0 … dim/2 − 1, and λ_i = 2π/θ_i (a numpy array).")


# ----------------------------------------------------------------------------- layouts (ch-rope-d-dims)


def _to_half_reference(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    rows = w.shape[0]
    d = rows // n_heads
    out = torch.empty_like(w)
    for h in range(n_heads):
        for i in range(d // 2):
            for a, b in zip(reference.pair_indices(i, d, "half"), reference.pair_indices(i, d, "interleaved")):
                out[h * d + a] = w[h * d + b]  # the row that makes feature a of the half layout
    return out


def check_interleaved_to_half(fn: Any) -> CheckResult:
    """Check ``to_half(w, n_heads)``: reorder the rows of W_q (or W_k), head by head, from interleaved to half layout.

    Shapes: ``w (n_heads * head_dim, in_features)`` → same shape and dtype.

    >>> check_interleaved_to_half(lambda w, n_heads: w).passed
    False
    """
    g = torch.Generator().manual_seed(_SEED)
    cases = []
    for heads, d, cols, dtype in [(1, 4, 3, torch.float32), (2, 8, 5, torch.float32), (3, 6, 2, torch.float64)]:
        w = torch.randn(heads * d, cols, generator=g, dtype=torch.float64).to(dtype)
        cases.append(Case((w, heads), label=f"w.shape={tuple(w.shape)}, n_heads={heads}"))
    return check_function("to_half", fn, _to_half_reference, cases, forbidden=(rotary.interleaved_to_half_weights,),
                          hint="within each head, the even rows (pair halves x_{2i}) come first, then the odd rows.")


# ----------------------------------------------------------------------------- element-wise RoPE (ch-rope-d-dims)


def _rope_half_reference(x: torch.Tensor, positions: torch.Tensor, base: float) -> torch.Tensor:
    return torch.as_tensor(reference.apply_rope_reference(x, positions, base=base, layout="half"), dtype=x.dtype)


def check_rope_elementwise(fn: Any) -> CheckResult:
    """Check ``rope_half(x, positions, base)``: element-wise RoPE in the half layout, no d×d matrix.

    Shapes: ``x (..., T, D)`` float, ``positions (T,)`` integers → shape and dtype of x.

    (The examples here show wrong answers only: students open this text.)

    >>> check_rope_elementwise(lambda x, positions, base: x).passed
    False
    """
    g = torch.Generator().manual_seed(_SEED)
    cases = []
    for shape, base, top, dtype in [((6, 8), 10_000.0, 40, torch.float64), ((2, 3, 5, 16), 500.0, 60, torch.float32),
                                    ((1, 4), 10_000.0, 3000, torch.float64)]:
        x = torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype)
        pos = torch.randint(0, top, (shape[-2],), generator=g)
        cases.append(Case((x, pos, base), label=f"x.shape={shape}, x.dtype={str(dtype)[6:]}, base={base:g}, "
                                                f"positions up to {int(pos.max())}"))
    # bfloat16 at positions up to 4095: angles formed in x's dtype are wrong by radians there. A correct
    # version may still multiply in bfloat16 (as Hugging Face's does): cos and sin rounded (u each, u = 2^-8
    # the unit roundoff), two products and a difference rounded, then the reference's own rounding of y:
    # at most 8u·max|x| per entry, the case's absolute tolerance
    x = torch.randn(2, 16, 64, generator=g, dtype=torch.float64).to(torch.bfloat16)
    pos = torch.randint(0, 4096, (16,), generator=g)
    cases.append(Case((x, pos, 10_000.0), label="x.shape=(2, 16, 64), x.dtype=bfloat16, positions up to 4095",
                      rtol=0.0, atol=8 * 2.0**-8 * float(x.abs().max())))
    return check_function("rope_half", fn, _rope_half_reference, cases,
                          hint="pair i is (x[..., i], x[..., i + D/2]); its angle is positions·base**(-2i/D), formed "
                               "in float64 whatever x's dtype, the frequencies too (torch.arange(n) / D is float32; "
                               "float32 angles are enough for bfloat16 x, not for a float64 x at positions in the "
                               "thousands).")


# ----------------------------------------------------------------------------- R_{Θ,m} in sympy (ch-rope-d-dims)


def _rope_matrix_sym_reference(m: sp.Symbol, thetas: list) -> sp.Matrix:
    blocks = [sp.Matrix([[sp.cos(m * t), -sp.sin(m * t)], [sp.sin(m * t), sp.cos(m * t)]]) for t in thetas]
    return sp.diag(*blocks)  # (d, d), interleaved: pair i on rows and columns 2i, 2i + 1


def check_rope_matrix_sym(fn: Any) -> CheckResult:
    """Check ``rope_matrix_sym(m, thetas)``: the d×d block-diagonal R_{Θ,m} (interleaved layout) as a sympy Matrix.

    (The examples here show wrong answers only: students open this text.)

    >>> check_rope_matrix_sym(lambda m, thetas: sp.eye(2 * len(thetas))).passed
    False
    """
    name = "rope_matrix_sym"
    if not callable(fn):
        return CheckResult(False, f"✗ {name}: expected a function, got {type(fn).__name__}")
    m = sp.Symbol("m", real=True)
    for d in (2, 4, 6):
        thetas = list(sp.symbols(f"theta0:{d // 2}", positive=True))
        try:
            with forbid((symbolic.rotation_matrix, symbolic.block_diagonal_rotation)):  # "without rb.symbolic"
                yours = fn(m, list(thetas))
        except ForbiddenCall as call:
            return CheckResult(False, call.message(name))
        except NotImplementedError:
            return CheckResult(False, f"✗ {name}: not implemented yet — replace the `raise NotImplementedError` line with your code.")
        except Exception as exc:  # the reader's code failed: report it, never re-raise
            return CheckResult(False, f"✗ {name}: d={d}: your function raised {type(exc).__name__}: {exc}")
        if yours is None:
            return CheckResult(False, f"✗ {name}: d={d}: your function returned None (is a `return` missing?)")
        if isinstance(yours, sp.MatrixExpr) and not isinstance(yours, sp.MatrixBase):
            try:  # sp.BlockDiagMatrix(*blocks) is the same matrix, written by blocks
                yours = yours.as_explicit()
            except Exception:
                pass
        if not isinstance(yours, sp.MatrixBase):
            return CheckResult(False, f"✗ {name}: d={d}: expected a sympy Matrix, got {type(yours).__name__}")
        result = _safe_sympy_equal(name, yours, _rope_matrix_sym_reference(m, thetas),
                                   hint="sp.diag(*blocks) puts 2×2 blocks on the diagonal; block i is R(m·θ_i).")
        if not result:
            result = hide_expected(result, f"R_{{Θ,m}} for d={d} (not shown: it is the answer)")
            return CheckResult(False, result.message.replace(f"✗ {name}:", f"✗ {name}: d={d}:", 1))
    return CheckResult(True, f"Correct: {name} equals R_{{Θ,m}} for d = 2, 4, 6.")

