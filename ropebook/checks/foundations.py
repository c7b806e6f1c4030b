"""Checkers for the Part I exercises: sinusoidal encodings, ALiBi slopes, complex inner products, 2-D rotations.

Each checker runs the reader's answer on seeded cases against ``ropebook.positions``,
``ropebook.reference`` (numpy float64) or a sympy construction, and returns a
``CheckResult``. None of them raises on a wrong or malformed answer.

Chapters: ``ch-why-position`` (``check_sinusoidal_encoding``, ``check_alibi_slopes``) and
``ch-complex-rotations`` (``check_complex_inner``, ``check_rotate_2d``, ``check_rotation_composition``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import sympy as sp
import torch

from ropebook import positions, reference
from ropebook.checks._core import Case, CheckResult, check_function, check_sympy_equal, hide_expected
from ropebook.symbolic import rotation_matrix

__all__ = [
    "check_sinusoidal_encoding",
    "check_alibi_slopes",
    "check_complex_inner",
    "check_rotate_2d",
    "check_rotation_composition",
]

_SEED = 1706_03762  # "Attention is all you need": every checker draws the same cases on every run


# ----------------------------------------------------------------------------- ch-why-position


def _reader_name(fn: Any, default: str) -> str:
    """The name the reader gave the function when it is the exercise's own (``sinusoidal_encoding_yours`` on the
    page, whose module also imports the reference ``sinusoidal_encoding``), for the messages; ``default`` for
    any other name (``f``, a lambda)."""
    name = getattr(fn, "__name__", "")
    return name if isinstance(name, str) and name.isidentifier() and name.startswith(default) else default


def _is_the_reference(name: str, fn: Any, reference: Any) -> CheckResult | None:
    """A failed result when the reader handed in the reference the page imports (it would pass, and teach nothing)."""
    if fn is reference:
        return CheckResult(False, f"✗ {name}: that is ropebook's own {reference.__name__}, imported at the top of the "
                                  "page; write yours without calling it")
    return None


def check_sinusoidal_encoding(fn: Any) -> CheckResult:
    """Check ``sinusoidal_encoding(seq_len, dim)``: PE[m, 2i] = sin(m·θ_i), PE[m, 2i+1] = cos(m·θ_i), float32.

    θ_i = 10000^(−2i/dim). Shapes: returns ``(seq_len, dim)`` float32.

    >>> check_sinusoidal_encoding(lambda seq_len, dim: torch.zeros(seq_len, dim)).passed
    False
    """
    # the last case reaches positions in the thousands, where angles formed in float32 are visibly off
    cases = [Case((T, D), label=f"seq_len={T}, dim={D}") for T, D in [(1, 2), (6, 4), (50, 16), (7, 6), (200, 64), (4096, 64)]]
    hint = "even features sin(m·θ_i), odd features cos(m·θ_i), θ_i = 10000**(-2i/dim); return float32."
    refused = _is_the_reference("sinusoidal_encoding", fn, positions.sinusoidal_encoding)
    if refused is not None:  # (a CheckResult is falsy when it failed)
        return refused
    result = check_function(_reader_name(fn, "sinusoidal_encoding"), fn, positions.sinusoidal_encoding, cases, hint=hint,
                            forbidden=(positions.sinusoidal_encoding,))
    if result.passed or "entries differ" not in result.message:  # right, or wrong in shape, dtype or kind
        return result
    precision = _float32_angle_hint(fn, *cases[-1].args)
    return CheckResult(False, result.message.replace(f"  hint: {hint}", f"  hint: {precision}")) if precision else result


def _float32_angle_hint(fn: Any, seq_len: int, dim: int) -> str | None:
    """A hint when an encoding is right at small positions and off by a little at large ones (never raises).

    That pattern is what angles m·θ_i formed in float32 give: the error of an angle
    grows with m, about m·θ_i·2⁻²⁴ radians, so it shows only at positions in the thousands.
    """
    try:
        yours = fn(seq_len, dim).detach().cpu().to(torch.float64)  # (T, D)
        error = (yours - positions.sinusoidal_encoding(seq_len, dim, dtype=torch.float64)).abs().amax(dim=-1)  # (T,)
    except Exception:  # a malformed answer: the plain message already says what is wrong
        return None
    if error.shape != (seq_len,) or not bool(torch.isfinite(error).all()):
        return None
    small, large = float(error[:200].max()), float(error.max())
    # right to float32's rounding at small positions (a divided-out θ_i there is already off by ~1e-5), off by
    # several times more, yet by far less than a wrong formula, at large ones
    if small > 1e-4 or not 1e-5 < large < 1e-2 or large < 4 * small:
        return None
    return (f"right at positions below 200, off by up to {large:.1e} only at large ones: that usually means the "
            "angles m·θ_i, or the frequencies θ_i, were formed in float32 (torch.arange(n) / d is float32); form "
            "both in float64, then cast the table to float32.")


def check_alibi_slopes(fn: Any) -> CheckResult:
    """Check ``alibi_slopes(n_heads)``: ALiBi's geometric slopes, float64, including H that is not a power of two.

    >>> check_alibi_slopes(lambda n: torch.tensor([2.0 ** (-8 * (j + 1) / n) for j in range(n)], dtype=torch.float64))
    ... # doctest: +ELLIPSIS
    ✗ alibi_slopes: case 5/7 (n_heads=12): ...
    """
    cases = [Case((h,), label=f"n_heads={h}") for h in [1, 2, 4, 8, 12, 16, 20]]
    refused = _is_the_reference("alibi_slopes", fn, positions.alibi_slopes)
    if refused is not None:  # (a CheckResult is falsy when it failed)
        return refused
    return check_function(_reader_name(fn, "alibi_slopes"), fn, positions.alibi_slopes, cases,
                          forbidden=(positions.alibi_slopes,), hint="for H not a power of two: the slopes for 2^⌊log₂H⌋ heads, then every other slope "
                               "for twice as many heads, until there are H.")


# ----------------------------------------------------------------------------- ch-complex-rotations


def _inner_reference(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    out = np.einsum("...j,...j->...", reference._array(x), reference._array(y))  # float64, the real dot product
    return torch.as_tensor(out, dtype=x.dtype)


def _pairs(g: torch.Generator, shape: tuple, dtype: torch.dtype) -> torch.Tensor:
    return torch.randn(*shape, 2, generator=g, dtype=torch.float64).to(dtype)


def check_complex_inner(fn: Any) -> CheckResult:
    """Check ``complex_inner(x, y)``: x, y real ``(..., 2)`` read as complex numbers; return Re[x̃ · ỹ*], shape ``(...)``.

    The result is in the dtype of x. (The examples here show wrong answers only: students open this text.)

    >>> check_complex_inner(lambda x, y: x[..., 0] * y[..., 0]).passed
    False
    """
    g = torch.Generator().manual_seed(_SEED)
    cases = []
    for shape, dtype in [((), torch.float64), ((5,), torch.float64), ((3, 4), torch.float32), ((7,), torch.float32)]:
        x, y = _pairs(g, shape, dtype), _pairs(g, shape, dtype)
        cases.append(Case((x, y), label=f"x.shape={tuple(x.shape)}, dtype={str(dtype)[6:]}"))
    return check_function(_reader_name(fn, "complex_inner"), fn, _inner_reference, cases,
                          hint="torch.view_as_complex needs float tensors ending in 2; Re[z · conj(w)]; cast back to x's dtype.")


def _rotate_reference(x: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    xs, angles = reference._array(x), reference._array(angle)
    out = np.stack([reference.rotation_matrix_2d(a) @ v for v, a in zip(xs, angles)]) if len(xs) else xs
    return torch.as_tensor(out, dtype=x.dtype)


def check_rotate_2d(fn: Any) -> CheckResult:
    """Check ``rotate_2d(x, angle)``: turn each row x[t] = (x₁, x₂) counter-clockwise by angle[t].

    Shapes: ``x (N, 2)`` float, ``angle (N,)`` float64 → ``(N, 2)`` in the dtype of x.

    >>> check_rotate_2d(lambda x, angle: x).passed
    False
    """
    g = torch.Generator().manual_seed(_SEED + 1)
    cases = []
    for N, dtype in [(1, torch.float64), (6, torch.float64), (9, torch.float32), (4, torch.float32)]:
        x = _pairs(g, (N,), dtype)
        angle = (torch.rand(N, generator=g, dtype=torch.float64) - 0.5) * 4 * torch.pi  # (N,) in (−2π, 2π)
        cases.append(Case((x, angle), label=f"x.shape={tuple(x.shape)}, x.dtype={str(dtype)[6:]}"))
    return check_function("rotate_2d", fn, _rotate_reference, cases,
                          hint="multiply x₁ + i·x₂ by e^{i·angle} (torch.polar), or y₁ = x₁cos − x₂sin, y₂ = x₁sin + x₂cos.")


def check_rotation_composition(M: Any) -> CheckResult:
    """Check a 2×2 sympy Matrix equal to R(α)ᵀ R(β) R(α) (symbols ``alpha``, ``beta``, real).

    Symbols are matched by name, so ``sp.symbols("alpha beta")`` without ``real=True`` passes too.

    (The examples here show wrong answers only: students open this text.)

    >>> a, b = sp.symbols("alpha beta", real=True)
    >>> check_rotation_composition(rotation_matrix(a + b)).passed
    False
    >>> print(check_rotation_composition(rotation_matrix(a).T * rotation_matrix(b) * rotation_matrix(a)))
    ✗ M: equal to R(alpha)ᵀ R(beta) R(alpha), but not simplified: a single rotation has no alpha left in it
    """
    alpha, beta = sp.symbols("alpha beta", real=True)
    expected = rotation_matrix(alpha).T * rotation_matrix(beta) * rotation_matrix(alpha)
    if isinstance(M, (sp.Basic, sp.MatrixBase)):
        # symbols are matched by name: sp.symbols("alpha beta") without real=True is the same answer
        names = {"alpha": alpha, "beta": beta}
        try:
            free = M.free_symbols
            M = M.xreplace({s: names[s.name] for s in free if getattr(s, "name", None) in names})
        except Exception:  # leave an answer sympy cannot walk to check_sympy_equal, which reports it
            free = set()
        others = sorted(str(s) for s in free if getattr(s, "name", None) not in names)
        if others and isinstance(M, sp.MatrixBase):
            return CheckResult(False, f"✗ M: your matrix uses {others}; write it with the symbols alpha and beta only")
    result = check_sympy_equal("M", M, expected,
                               hint="R(α)ᵀ = R(−α) and R(a)R(b) = R(a + b); use sp.symbols('alpha beta', real=True).")
    if result.passed:
        if alpha in sp.Matrix(M).free_symbols:  # the exercise asks for the product simplified to one rotation
            return CheckResult(False, "✗ M: equal to R(alpha)ᵀ R(beta) R(alpha), but not simplified: a single "
                                      "rotation has no alpha left in it")
        return result
    # Show the target as the product it is, not as sympy's expanded (and answer-revealing) entries.
    return hide_expected(result, "a matrix equal to R(alpha).T * R(beta) * R(alpha)")
