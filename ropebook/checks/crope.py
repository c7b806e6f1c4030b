"""Checkers for the CRoPE chapter: the complex-linear part of a 2×2 block, a complex-linear projection, the parameter saving.

Each compares the reader's answer with a reference written here from the
definitions (numpy complex128 or sympy), not with ``ropebook.crope``, so the
package is checked by the same references in the tests.

Chapter: ``ch-crope``.
"""

from __future__ import annotations

import numpy as np
import sympy as sp
import torch

from ropebook.checks._core import Case, CheckResult, check_function, check_sympy_equal, hide_expected

__all__ = ["check_complex_part", "check_complex_linear", "check_layer_saving"]

_J = sp.Matrix([[0, -1], [1, 0]])  # the 90° rotation


def complex_part_reference(M: sp.Matrix) -> sp.Matrix:
    """(M − J M J)/2: the part of a 2×2 real matrix that commutes with J (lies in span{I, J})."""
    return (M - _J * M * _J) / 2


def check_complex_part(fn) -> CheckResult:
    """Check ``fn(M)``, the complex-linear part of a symbolic 2×2 matrix M = [[p, q], [r, s]].

    >>> check_complex_part(complex_part_reference)
    Correct: complex_part(M) equals the expected expression.
    >>> check_complex_part(lambda M: M).passed
    False
    """
    p, q, r, s = sp.symbols("p q r s", real=True)
    M = sp.Matrix([[p, q], [r, s]])
    if not callable(fn):
        return CheckResult(False, f"✗ complex_part: expected a function, got {type(fn).__name__}")
    try:
        yours = fn(M)
    except NotImplementedError:
        return CheckResult(False, "✗ complex_part: not implemented yet — replace the `raise NotImplementedError` line with your code.")
    except Exception as exc:  # the reader's code failed: report it
        return CheckResult(False, f"✗ complex_part: your function raised {type(exc).__name__}: {exc}")
    result = check_sympy_equal("complex_part(M)", yours, complex_part_reference(M),
                               hint="the result must commute with J and agree with M on span{I, J}.")
    return hide_expected(result, "a matrix in span{I, J} (not shown: it is the answer)")


def complex_linear_reference(x, weight_real, weight_imag):
    """y = W x̃ on interleaved pairs, in numpy complex128; returns a tensor like x."""
    xn = x.detach().cpu().double().numpy()
    w = weight_real.detach().cpu().double().numpy() + 1j * weight_imag.detach().cpu().double().numpy()  # (out/2, in/2)
    z = xn[..., 0::2] + 1j * xn[..., 1::2]  # (..., in/2)
    y = z @ w.T  # (..., out/2)
    out = np.stack((y.real, y.imag), axis=-1).reshape(*y.shape[:-1], 2 * y.shape[-1])
    return torch.from_numpy(out).to(x.dtype)


def _complex_linear_cases() -> list[Case]:
    gen = torch.Generator().manual_seed(9)
    cases = []
    for shape, out in (((3, 4), 4), ((2, 5, 8), 6), ((1, 2, 3, 6), 10)):
        x = torch.randn(shape, generator=gen, dtype=torch.float64)
        a = torch.randn(out // 2, shape[-1] // 2, generator=gen, dtype=torch.float64)
        b = torch.randn(out // 2, shape[-1] // 2, generator=gen, dtype=torch.float64)
        cases.append(Case((x, a, b), label=f"x.shape={shape}, weight shape=({out // 2}, {shape[-1] // 2})"))
    return cases


def check_complex_linear(fn) -> CheckResult:
    """Check ``fn(x, weight_real, weight_imag)``: the complex-linear map on interleaved pairs.

    >>> check_complex_linear(complex_linear_reference)
    Correct: complex_linear agrees with the reference on all 3 cases.
    >>> check_complex_linear(lambda x, a, b: x).passed
    False
    """
    return check_function("complex_linear", fn, complex_linear_reference, _complex_linear_cases(),
                          hint="features 2j and 2j + 1 are the real and imaginary parts of x̃_j; y = (A + iB) x̃.")


def layer_saving_reference(mlp_ratio):
    """Fraction of a layer's matrix parameters CRoPE saves: (3D²/2) / (4D² + 2·r·D²) = 3 / (8 + 4r)."""
    return 3.0 / (8.0 + 4.0 * mlp_ratio)


def check_layer_saving(fn) -> CheckResult:
    """Check ``fn(mlp_ratio)``, the fraction of a layer's (bias-free) parameters that CRoPE saves.

    >>> check_layer_saving(layer_saving_reference)
    Correct: layer_saving agrees with the reference on all 4 cases.
    >>> check_layer_saving(lambda r: 0.5).passed
    False
    """
    cases = [Case((r,), label=f"mlp_ratio={r}") for r in (0, 1, 4, 8 / 3)]
    return check_function("layer_saving", fn, layer_saving_reference, cases,
                          hint="count Q, K, V, the output projection and the two feed-forward matrices in units of D².")
