"""The Part II checkers: each passes its solution, fails wrong and malformed answers with a clear message, never raises."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
import torch

import ropebook as rb
from ropebook.checks import rope as checks
from checker_cases import checker_tests

# ----------------------------------------------------------------------------- solutions (as in the book)


def rope_2d(x, m, theta):
    angle = m.to(torch.float64) * theta
    cos, sin = angle.cos().to(x.dtype), angle.sin().to(x.dtype)
    return torch.stack((x[:, 0] * cos - x[:, 1] * sin, x[:, 0] * sin + x[:, 1] * cos), dim=-1)


def wavelengths(dim, base):
    return 2 * np.pi * float(base) ** (2 * np.arange(dim // 2) / dim)


def to_half(w, n_heads):
    heads = w.reshape(n_heads, w.shape[0] // n_heads, -1)
    return torch.cat((heads[:, 0::2], heads[:, 1::2]), dim=1).reshape(w.shape)


def rope_half(x, positions, base):
    D = x.shape[-1]
    angles = positions.double()[:, None] * base ** (-2 * torch.arange(D // 2, dtype=torch.float64) / D)
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    x1, x2 = x[..., : D // 2], x[..., D // 2 :]
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


def rope_matrix_sym(m, thetas):
    return sp.diag(*[sp.Matrix([[sp.cos(m * t), -sp.sin(m * t)], [sp.sin(m * t), sp.cos(m * t)]]) for t in thetas])


q1, q2, k1, k2, theta, r = sp.symbols("q1 q2 k1 k2 theta r", real=True)
SCORE = (q1 * k1 + q2 * k2) * sp.cos(r * theta) + (q1 * k2 - q2 * k1) * sp.sin(r * theta)


def _raises(*args):
    raise ValueError("boom")


def _not_implemented(*args):
    raise NotImplementedError  # ~2 lines


# ----------------------------------------------------------------------------- cases: (checker, answer, words the message must contain)

SOLUTIONS = {
    "rope_2d": (checks.check_rope_2d, rope_2d),
    "relative_score": (checks.check_relative_score, SCORE),
    "wavelengths": (checks.check_wavelengths, wavelengths),
    "to_half": (checks.check_interleaved_to_half, to_half),
    "rope_half": (checks.check_rope_elementwise, rope_half),
    "rope_matrix_sym": (checks.check_rope_matrix_sym, rope_matrix_sym),
    # other right answers, refused before the review of the checkers
    "rope_matrix_sym: BlockDiagMatrix": (checks.check_rope_matrix_sym, lambda m, ts: sp.BlockDiagMatrix(
        *[sp.Matrix([[sp.cos(m * t), -sp.sin(m * t)], [sp.sin(m * t), sp.cos(m * t)]]) for t in ts])),
    "relative_score: the real part of the complex product": (
        checks.check_relative_score, sp.re((q1 + sp.I * q2) * (k1 - sp.I * k2) * sp.exp(sp.I * r * theta))),
}

WRONG = {
    # plausible mistakes a reader makes
    "rope_2d: rotates the wrong way": (checks.check_rope_2d, lambda x, m, t: rope_2d(x, -m, t), ["rope_2d", "entries differ", "yours", "expected", "hint"]),
    "rope_2d: ignores theta": (checks.check_rope_2d, lambda x, m, t: rope_2d(x, m, 1.0), ["rope_2d", "case 2/4", "entries differ"]),
    "rope_2d: angles in float32": (checks.check_rope_2d, lambda x, m, t: _float32_angles_2d(x, m, t),
                                   ["rope_2d", "case 4/4", "positions up to", "entries differ"]),
    "score: cos term only": (checks.check_relative_score, (q1 * k1 + q2 * k2) * sp.cos(r * theta), ["score", "not identically equal", "hint"]),
    "score: sign of the sine term": (checks.check_relative_score, (q1 * k1 + q2 * k2) * sp.cos(r * theta) - (q1 * k2 - q2 * k1) * sp.sin(r * theta), ["not identically equal"]),
    "score: uses m and n": (checks.check_relative_score, sp.Symbol("m") - sp.Symbol("n"), ["score", "['m', 'n']", "r"]),
    "wavelengths: forgot 2π": (checks.check_wavelengths, lambda d, b: float(b) ** (2 * np.arange(d // 2) / d), ["wavelengths", "entries differ"]),
    "wavelengths: frequencies, not wavelengths": (checks.check_wavelengths, lambda d, b: float(b) ** (-2 * np.arange(d // 2) / d), ["entries differ"]),
    "to_half: whole matrix, not per head": (checks.check_interleaved_to_half, lambda w, h: torch.cat((w[0::2], w[1::2])), ["to_half", "case 2/3", "entries differ"]),
    "to_half: half to interleaved": (checks.check_interleaved_to_half, lambda w, h: w.reshape(h, 2, -1, w.shape[1]).transpose(1, 2).reshape(w.shape), ["to_half", "entries differ"]),
    "rope_half: interleaved pairs": (checks.check_rope_elementwise, lambda x, p, b: rb.apply_rope(x, p, base=b, layout="interleaved"), ["rope_half", "entries differ"]),
    "rope_half: ignores base": (checks.check_rope_elementwise, lambda x, p, b: rope_half(x, p, 10_000.0), ["rope_half", "case 2/4", "base=500"]),
    "rope_half: angles in float32": (checks.check_rope_elementwise, lambda x, p, b: _float32_angles(x, p, b),
                                     ["rope_half", "case 3/4", "entries differ", "formed in float64 whatever x's dtype"]),
    "rope_half: angles in x's dtype": (checks.check_rope_elementwise, lambda x, p, b: _dtype_angles(x, p, b), ["rope_half", "case 4/4", "bfloat16"]),
    "rope_matrix_sym: transposed blocks": (checks.check_rope_matrix_sym, lambda m, ts: rope_matrix_sym(m, ts).T, ["rope_matrix_sym", "d=2", "not identically equal"]),
    "rope_matrix_sym: one frequency for all": (checks.check_rope_matrix_sym, lambda m, ts: rope_matrix_sym(m, [ts[0]] * len(ts)), ["rope_matrix_sym", "d=4"]),
    # the statements forbid these library functions; wrapped in a lambda they passed (a teacher's review)
    "rope_matrix_sym: rb.symbolic's block_diagonal_rotation": (
        checks.check_rope_matrix_sym, lambda m, ts: rb.symbolic.block_diagonal_rotation([m * t for t in ts]),
        ["rope_matrix_sym", "calls ropebook's rotation_matrix or ropebook's block_diagonal_rotation"]),
    "rope_matrix_sym: rb.symbolic's rotation_matrix": (
        checks.check_rope_matrix_sym, lambda m, ts: sp.diag(*[rb.symbolic.rotation_matrix(m * t) for t in ts]),
        ["rope_matrix_sym", "not to use"]),
    "to_half: rb.interleaved_to_half_weights": (
        checks.check_interleaved_to_half, lambda w, h: rb.interleaved_to_half_weights(w, h),
        ["to_half", "calls ropebook's interleaved_to_half_weights"]),
}


def _float32_angles_2d(x, m, theta):
    """rope_2d with its angles formed in float32: right at small positions, off by ~1e-3 rad at m ≈ 10⁵."""
    angle = m.float() * theta
    cos, sin = angle.cos().to(x.dtype), angle.sin().to(x.dtype)
    return torch.stack((x[:, 0] * cos - x[:, 1] * sin, x[:, 0] * sin + x[:, 1] * cos), dim=-1)


def _dtype_angles(x, positions, base):
    """Angles formed in x's dtype: exact enough in float64 and float32 at the small positions, wrong by radians in bfloat16."""
    D = x.shape[-1]
    inv = (base ** (-2 * torch.arange(D // 2, dtype=torch.float64) / D)).to(x.dtype)
    angles = positions.to(x.dtype)[:, None] * inv
    x1, x2 = x[..., : D // 2], x[..., D // 2 :]
    return torch.cat((x1 * angles.cos() - x2 * angles.sin(), x2 * angles.cos() + x1 * angles.sin()), dim=-1)


def _float32_angles(x, positions, base):
    """Angles formed in float32, then used in float64: off by about position × 2⁻²⁴ radians, visible at float64 tolerance."""
    D = x.shape[-1]
    inv = (base ** (-2 * torch.arange(D // 2, dtype=torch.float64) / D)).float()
    angles = (positions.float()[:, None] * inv).double()
    x1, x2 = x[..., : D // 2], x[..., D // 2 :]
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


MALFORMED = {
    # not callable
    "rope_2d: not callable": (checks.check_rope_2d, 42, ["expected a function", "int"]),
    "wavelengths: None instead of a function": (checks.check_wavelengths, None, ["expected a function", "NoneType"]),
    "rope_matrix_sym: not callable": (checks.check_rope_matrix_sym, "diag", ["expected a function", "str"]),
    "to_half: a tensor, not a function": (checks.check_interleaved_to_half, torch.zeros(3), ["expected a function", "Tensor"]),
    # raises
    "rope_2d: raises": (checks.check_rope_2d, _raises, ["raised ValueError", "boom", "case 1/4"]),
    "rope_half: raises": (checks.check_rope_elementwise, _raises, ["raised ValueError: boom"]),
    "rope_matrix_sym: raises": (checks.check_rope_matrix_sym, _raises, ["d=2", "raised ValueError: boom"]),
    "to_half: not implemented": (checks.check_interleaved_to_half, _not_implemented, ["not implemented yet"]),
    "rope_matrix_sym: not implemented": (checks.check_rope_matrix_sym, _not_implemented, ["not implemented yet"]),
    # returns None
    "rope_2d: returns None": (checks.check_rope_2d, lambda x, m, t: None, ["returned None", "return"]),
    "wavelengths: returns None": (checks.check_wavelengths, lambda d, b: None, ["returned None"]),
    "rope_matrix_sym: returns None": (checks.check_rope_matrix_sym, lambda m, ts: None, ["returned None"]),
    "score: None": (checks.check_relative_score, None, ["got None", "score"]),
    # wrong shape
    "rope_2d: transposed": (checks.check_rope_2d, lambda x, m, t: rope_2d(x, m, t).T, ["wrong shape", "yours (2, 5)", "expected (5, 2)"]),
    "wavelengths: one per feature": (checks.check_wavelengths, lambda d, b: np.repeat(wavelengths(d, b), 2), ["wrong shape", "yours (8,)", "expected (4,)"]),
    "to_half: flattened": (checks.check_interleaved_to_half, lambda w, h: to_half(w, h).flatten(), ["wrong shape"]),
    "rope_half: drops the batch": (checks.check_rope_elementwise, lambda x, p, b: rope_half(x, p, b)[..., :-1], ["wrong shape"]),
    "rope_matrix_sym: 2×2 only": (checks.check_rope_matrix_sym, lambda m, ts: rope_matrix_sym(m, ts[:1]), ["d=4", "wrong shape"]),
    "score: a matrix": (checks.check_relative_score, sp.Matrix([SCORE]), ["scalar", "1×1 Matrix", "[0, 0]"]),
    # wrong dtype or type
    "rope_2d: returns float32 for float64": (checks.check_rope_2d, lambda x, m, t: rope_2d(x, m, t).float(), ["wrong dtype", "yours float32", "expected float64"]),
    "wavelengths: float32": (checks.check_wavelengths, lambda d, b: wavelengths(d, b).astype(np.float32), ["wrong dtype", "float32"]),
    "wavelengths: a list": (checks.check_wavelengths, lambda d, b: wavelengths(d, b).tolist(), ["expected a numpy array", "list"]),
    "wavelengths: a tensor": (checks.check_wavelengths, lambda d, b: torch.from_numpy(wavelengths(d, b)), ["expected a numpy array", "Tensor"]),
    "to_half: numpy": (checks.check_interleaved_to_half, lambda w, h: to_half(w, h).numpy(), ["expected a torch.Tensor", "ndarray"]),
    "rope_half: always float64": (checks.check_rope_elementwise, lambda x, p, b: rope_half(x.double(), p, b), ["case 2/4", "wrong dtype"]),
    "rope_matrix_sym: numpy": (checks.check_rope_matrix_sym, lambda m, ts: np.eye(2 * len(ts)), ["expected a sympy Matrix", "ndarray"]),
    "score: a function": (checks.check_relative_score, lambda: SCORE, ["function", "call it"]),
    "score: a string that is not maths": (checks.check_relative_score, "q1 *", ["expected a sympy expression"]),
    "score: a tensor": (checks.check_relative_score, torch.zeros(2), ["expected"]),
    "rope_matrix_sym: a Matrix of strings": (checks.check_rope_matrix_sym, lambda m, ts: sp.Matrix([["a b"] * 2] * 2), ["rope_matrix_sym", "d=2"]),
}


test_solution_passes, test_wrong_answer_fails_with_a_clear_message = checker_tests(SOLUTIONS, {**WRONG, **MALFORMED})


def test_score_accepts_symbols_without_assumptions():
    """A reader who writes sp.symbols('q1 ...') without real=True is not failed for it."""
    plain = sp.symbols("q1 q2 k1 k2 theta r")
    expr = SCORE.subs(dict(zip((q1, q2, k1, k2, theta, r), plain)))
    assert checks.check_relative_score(expr).passed


# (wrong score, what the "differs:" line must say)
SCORE_DIFFS = [
    ((q1 * k1 + q2 * k2) * sp.cos(r * theta), "the term in sin(r*theta) is missing"),
    ((q1 * k1 + q2 * k2) * sp.cos(r * theta) - (q1 * k2 - q2 * k1) * sp.sin(r * theta), "coefficient of sin(r*theta) has the wrong sign"),
    ((q1 * k2 - q2 * k1) * sp.cos(r * theta) + (q1 * k1 + q2 * k2) * sp.sin(r * theta), "coefficient of cos(r*theta) is wrong"),
    ((q1 * k1 + q2 * k2) * sp.cos(2 * r * theta), "not A·cos(r*theta) + B·sin(r*theta)"),
]


@pytest.mark.parametrize("wrong,differs", SCORE_DIFFS, ids=range(len(SCORE_DIFFS)))
def test_score_checker_says_what_differs_without_giving_the_answer_away(wrong, differs):
    """The expected score is the exercise's answer: a wrong answer's message must not print it, in any form."""
    message = checks.check_relative_score(wrong).message
    assert message.startswith("✗ score: not identically equal"), message
    assert differs in message, message
    expected = checks.relative_score_expected()
    for form in (expected, SCORE, sp.expand(expected), sp.expand(SCORE)):
        assert str(form) not in message, message
    assert "expected:" not in message and "sin(r*theta)" in message, message


def test_score_expected_is_derived_not_typed():
    """The reference score is the rotation product; it changes with m − n and not with m + n."""
    expected = checks.relative_score_expected()
    m, n = sp.symbols("m n", real=True)
    assert sp.simplify(sp.expand_trig(expected.subs(r, m - n) - SCORE.subs(r, m - n))) == 0
    assert expected.has(r)


def test_checkers_are_deterministic():
    """Seeded cases: the same wrong answer gives the same message twice."""
    wrong = lambda x, m, t: rope_2d(x, -m, t)  # noqa: E731
    assert checks.check_rope_2d(wrong).message == checks.check_rope_2d(wrong).message


def test_an_answer_that_zeroes_its_input_fails_and_the_next_check_is_unaffected():
    """An answer that zeroes w in place and returns it is wrong; the right answer still passes after it
    (the core's copies are tested in test_checks_core)."""

    def in_place(w, n_heads):
        w.zero_()
        return w

    assert not checks.check_interleaved_to_half(in_place).passed
    assert checks.check_interleaved_to_half(to_half).passed


def test_exports():
    for name in checks.__all__:
        if name.startswith("check_"):
            assert getattr(rb.checks, name) is getattr(checks, name)


def test_rope_matrix_checker_hides_the_answer_on_a_wrong_try():
    """It printed the expected R_{Θ,m}, the exercise's answer, under a wrong one."""
    def transposed(m, thetas):  # every block turned the wrong way
        return sp.diag(*[sp.Matrix([[sp.cos(m * t), sp.sin(m * t)], [-sp.sin(m * t), sp.cos(m * t)]]) for t in thetas])

    result = checks.check_rope_matrix_sym(transposed)
    assert not result.passed and "expected: R_{Θ,m} for d=2 (not shown: it is the answer)" in result.message, result.message
    expected_line = next(line for line in result.message.splitlines() if line.startswith("  expected:"))
    assert "cos" not in expected_line and "sin" not in expected_line, result.message
