"""The ch-crope checkers: the page's solutions and other right forms pass, plausible mistakes fail with a message."""

from __future__ import annotations

from fractions import Fraction

import sympy as sp
import torch

from ropebook.checks import crope as checks
from checker_cases import checker_tests

J = sp.Matrix([[0, -1], [1, 0]])


def complex_linear_by_blocks(x, weight_real, weight_imag):  # the page's solution: the real matrix, blocks A I + B J
    M = torch.kron(weight_real, torch.eye(2, dtype=x.dtype)) + torch.kron(weight_imag, torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=x.dtype))
    return x @ M.T


def complex_linear(x, weight_real, weight_imag):  # the way ComplexLinear.forward computes it: four real products
    x_re, x_im = x[..., 0::2], x[..., 1::2]
    y_re = x_re @ weight_real.T - x_im @ weight_imag.T
    y_im = x_re @ weight_imag.T + x_im @ weight_real.T
    return torch.stack((y_re, y_im), dim=-1).flatten(-2)


def _half_layout(x, a, b):
    D = x.shape[-1] // 2
    return complex_linear(torch.stack((x[..., :D], x[..., D:]), dim=-1).flatten(-2), a, b)


SOLUTIONS = {
    "complex_part": (checks.check_complex_part, lambda M: (M - J * M * J) / 2),
    "complex_part: 0.5 as a float": (checks.check_complex_part, lambda M: 0.5 * (M - J * M * J)),
    "complex_part: written out": (checks.check_complex_part, lambda M: (M.trace() / 2) * sp.eye(2) + ((M[1, 0] - M[0, 1]) / 2) * J),
    "complex_linear": (checks.check_complex_linear, complex_linear),
    "complex_linear: real block matrix": (checks.check_complex_linear, complex_linear_by_blocks),
    "complex_linear: complex tensors": (checks.check_complex_linear, lambda x, a, b: torch.view_as_real(
        torch.view_as_complex(x.reshape(*x.shape[:-1], -1, 2).contiguous()) @ torch.complex(a, b).T).flatten(-2)),
    "layer_saving": (checks.check_layer_saving, lambda r: 3 / (8 + 4 * r)),
    # refused before the review: "expected a number, got Fraction" / "got Rational" / "got Float"
    "layer_saving: a Fraction": (checks.check_layer_saving, lambda r: Fraction(3) / (8 + 4 * Fraction(r))),
    "layer_saving: a sympy Rational": (checks.check_layer_saving, lambda r: sp.Integer(3) / (8 + 4 * sp.nsimplify(r))),
    "layer_saving: a sympy Float": (checks.check_layer_saving, lambda r: sp.Float(3) / (8 + 4 * r)),
}

WRONG = {
    "complex_part: the anti-linear part": (checks.check_complex_part, lambda M: (M + J * M * J) / 2, ["not identically equal"]),
    "complex_part: no 1/2": (checks.check_complex_part, lambda M: M - J * M * J, ["not identically equal"]),
    "complex_part: a list": (checks.check_complex_part, lambda M: ((M - J * M * J) / 2).tolist(), ["expected a 2×2 sympy Matrix, got list"]),
    "complex_part: an equation": (checks.check_complex_part, lambda M: sp.Eq(M[0, 0], M[1, 1]), ["expected a 2×2 sympy Matrix"]),
    "complex_linear: half layout": (checks.check_complex_linear, _half_layout, ["entries differ"]),
    "complex_linear: conjugate weight": (checks.check_complex_linear, lambda x, a, b: complex_linear(x, a, -b), ["entries differ"]),
    "complex_linear: input unchanged": (checks.check_complex_linear, lambda x, a, b: x, ["case 1/3", "entries differ"]),
    "layer_saving: W_o forgotten": (checks.check_layer_saving, lambda r: 3 / (6 + 4 * r), ["yours 0.5, expected 0.375"]),
    "layer_saving: attention block only": (checks.check_layer_saving, lambda r: 0.375, ["mlp_ratio=1"]),
    "layer_saving: percent": (checks.check_layer_saving, lambda r: 300 / (8 + 4 * r), ["yours 37.5"]),
    "layer_saving: a symbolic expression": (checks.check_layer_saving, lambda r: 3 / (8 + 4 * sp.Symbol("r")), ["expected a number"]),
}


test_solution_passes, test_wrong_answer_fails_with_a_clear_message = checker_tests(SOLUTIONS, WRONG)


def test_complex_part_hides_the_answer_on_a_wrong_try():
    """It printed the expected matrix, Matrix([[p/2 + s/2, q/2 - r/2], ...]): the exercise's answer."""
    p, q, r, s = sp.symbols("p q r s", real=True)
    answer = str(checks.complex_part_reference(sp.Matrix([[p, q], [r, s]])))
    result = checks.check_complex_part(lambda M: M)  # the whole block: wrong
    assert not result.passed and "expected: a matrix in span{I, J} (not shown" in result.message, result.message
    assert answer not in result.message and "p/2" not in result.message, result.message
