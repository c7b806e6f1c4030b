"""Part I checkers: each passes its solution, fails wrong and malformed answers with a short, useful message."""

from __future__ import annotations

import math

import pytest
import sympy as sp
import torch

from ropebook import checks, positions
from ropebook.checks import CheckResult
from ropebook.symbolic import rotation_matrix

alpha, beta = sp.symbols("alpha beta", real=True)


# ----------------------------------------------------------------------------- the solutions (as in the book)


def sinusoidal_encoding(seq_len, dim):
    theta = 10000.0 ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)  # (D/2,)
    angles = torch.arange(seq_len, dtype=torch.float64)[:, None] * theta  # (T, D/2)
    return torch.stack((angles.sin(), angles.cos()), dim=-1).flatten(-2).float()  # (T, D)


def _float32_divided_angles(seq_len, dim):
    """The same in float32, written m / 10000**(2i/dim): off by ~1e-5 already at small positions."""
    i = torch.arange(0, dim, 2, dtype=torch.float32)
    angles = torch.arange(seq_len, dtype=torch.float32)[:, None] / 10000 ** (i / dim)
    return torch.stack((angles.sin(), angles.cos()), dim=-1).flatten(-2)


def _float32_angles(seq_len, dim):
    """The encoding with its angles formed in float32: off by up to ~1e-4 at positions in the thousands."""
    theta = (10000.0 ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)).float()
    angles = torch.arange(seq_len, dtype=torch.float32)[:, None] * theta
    return torch.stack((angles.sin(), angles.cos()), dim=-1).flatten(-2)


def alibi_slopes(n_heads):
    def geometric(h):
        return [2.0 ** (-8.0 * (j + 1) / h) for j in range(h)]

    closest = 2 ** int(math.log2(n_heads))
    return torch.tensor(geometric(closest) + geometric(2 * closest)[0::2][: n_heads - closest], dtype=torch.float64)


def complex_inner(x, y):
    z, w = torch.view_as_complex(x.contiguous()), torch.view_as_complex(y.contiguous())
    return (z * w.conj()).real


def rotate_2d(x, angle):
    z = torch.view_as_complex(x.double().contiguous())  # (N,)
    return torch.view_as_real(z * torch.polar(torch.ones_like(angle), angle)).to(x.dtype)  # (N, 2)


SOLUTIONS = [
    ("sinusoidal_encoding", checks.check_sinusoidal_encoding, sinusoidal_encoding),
    ("alibi_slopes", checks.check_alibi_slopes, alibi_slopes),
    ("complex_inner", checks.check_complex_inner, complex_inner),
    ("rotate_2d", checks.check_rotate_2d, rotate_2d),
    ("M", checks.check_rotation_composition, rotation_matrix(beta)),
]

# (checker, wrong answer, text the message must contain): mistakes a reader makes.
WRONG = [
    (checks.check_sinusoidal_encoding, lambda T, D: sinusoidal_encoding(T, D)[:, [j ^ 1 for j in range(D)]], "entries differ"),  # cos/sin swapped
    (checks.check_sinusoidal_encoding, lambda T, D: torch.cat((sinusoidal_encoding(T, D)[:, 0::2], sinusoidal_encoding(T, D)[:, 1::2]), -1), "entries differ"),  # half layout
    (checks.check_sinusoidal_encoding, lambda T, D: sinusoidal_encoding(T, D).double(), "wrong dtype: yours float64, expected float32"),
    (checks.check_sinusoidal_encoding, lambda T, D: _float32_angles(T, D), "case 6/6 (seq_len=4096"),  # the exercise's warning
    (checks.check_sinusoidal_encoding, lambda T, D: _float32_angles(T, D), "usually means the angles m·θ_i, or the frequencies θ_i, were formed in float32"),
    (checks.check_sinusoidal_encoding, _float32_divided_angles, "form both in float64"),
    (checks.check_alibi_slopes, lambda h: torch.tensor([2.0 ** (-8 * (j + 1) / h) for j in range(h)], dtype=torch.float64), "n_heads=12"),
    (checks.check_alibi_slopes, lambda h: alibi_slopes(h).flip(0), "entries differ"),
    (checks.check_complex_inner, lambda x, y: (torch.view_as_complex(x.contiguous()) * torch.view_as_complex(y.contiguous())).real, "they differ by"),  # no conjugate (one number: no count of entries)
    (checks.check_complex_inner, lambda x, y: (x * y).sum(-1).double(), "wrong dtype"),
    (checks.check_rotate_2d, lambda x, a: rotate_2d(x, -a), "entries differ"),  # clockwise
    (checks.check_rotate_2d, lambda x, a: x, "entries differ"),
    (checks.check_rotation_composition, rotation_matrix(alpha + beta), "not identically equal"),
    (checks.check_rotation_composition, rotation_matrix(2 * alpha + beta), "not identically equal"),
    (checks.check_rotation_composition, rotation_matrix(alpha).T * rotation_matrix(beta) * rotation_matrix(alpha), "not simplified"),
]

# (checker, malformed answer, text the message must contain)
MALFORMED = [
    (checks.check_sinusoidal_encoding, lambda T, D: sinusoidal_encoding(T, D).T, "wrong shape"),
    (checks.check_sinusoidal_encoding, lambda T, D: None, "returned None"),
    (checks.check_sinusoidal_encoding, lambda T, D: sinusoidal_encoding(T, D).numpy(), "expected a torch.Tensor, got ndarray"),
    (checks.check_sinusoidal_encoding, "not a function", "expected a function, got str"),
    (checks.check_alibi_slopes, lambda h: 1 / 0, "raised ZeroDivisionError"),
    (checks.check_alibi_slopes, lambda h: alibi_slopes(h)[:-1], "wrong shape"),
    (checks.check_complex_inner, lambda x, y: x * y, "wrong shape"),
    (checks.check_complex_inner, None, "expected a function, got NoneType"),
    (checks.check_rotate_2d, lambda x, a: torch.view_as_complex(x.contiguous()), "wrong shape"),
    (checks.check_rotate_2d, lambda x, a: (_ for _ in ()).throw(NotImplementedError), "not implemented yet"),
    (checks.check_rotation_composition, None, "got None"),
    (checks.check_rotation_composition, alpha + beta, "expected a 2×2 sympy Matrix"),
    (checks.check_rotation_composition, sp.eye(3), "wrong shape: yours (3, 3), expected (2, 2)"),
    (checks.check_rotation_composition, lambda: 0, "expected a 2×2 sympy Matrix, got function"),
    (checks.check_rotation_composition, [[1, 0], [0, 1]], "expected a 2×2 sympy Matrix, got list"),
    (checks.check_rotation_composition, rotation_matrix(sp.Symbol("b")), "your matrix uses ['b']"),
]


@pytest.mark.parametrize("name,checker,solution", SOLUTIONS, ids=[s[0] for s in SOLUTIONS])
def test_solution_passes(name, checker, solution):
    result = checker(solution)
    assert isinstance(result, CheckResult)
    result.assert_passed()
    assert str(result).startswith("Correct")


@pytest.mark.parametrize("checker,answer,expected", WRONG, ids=[f"{c.__name__}-{i}" for i, (c, _, _) in enumerate(WRONG)])
def test_wrong_answer_fails_with_a_short_diff(checker, answer, expected):
    result = checker(answer)
    assert not result.passed
    assert expected in result.message
    assert "Traceback" not in result.message and len(result.message.splitlines()) <= 6


@pytest.mark.parametrize("checker,answer,expected", MALFORMED, ids=[f"{c.__name__}-{i}" for i, (c, _, _) in enumerate(MALFORMED)])
def test_malformed_answer_gets_a_clear_message(checker, answer, expected):
    result = checker(answer)
    assert not result.passed
    assert expected in result.message, result.message
    with pytest.raises(AssertionError):
        result.assert_passed()


def _zero_from_1000(seq_len, dim):
    """Right for the first 1000 positions, zero after: wrong at large positions, but not by rounding."""
    table = sinusoidal_encoding(seq_len, dim)
    table[1000:] = 0.0
    return table


def test_float32_hint_only_for_small_errors_at_large_positions():
    """The float32-angle hint replaces the generic one only when the failure looks like rounding of large angles."""
    result = checks.check_sinusoidal_encoding(_zero_from_1000)
    assert not result.passed and "case 6/6" in result.message and "float32;" not in result.message, result.message
    assert "hint: even features sin" in result.message
    result = checks.check_sinusoidal_encoding(_float32_angles)
    assert "hint: even features sin" not in result.message and "off by up to" in result.message, result.message


def test_an_answer_that_works_in_place_passes():
    """A reader who rotates x in place and returns it is right (the core's copies are tested in test_checks_core)."""
    def in_place(x, angle):
        y = rotate_2d(x, angle)
        x.copy_(y)
        return x

    result = checks.check_rotate_2d(in_place)
    result.assert_passed()
    assert "changed its input x in place" in result.message  # ... and is told what that does to a caller


def test_rotation_composition_matches_symbols_by_name():
    """sp.symbols("alpha beta") without real=True was refused, with yours and expected printed alike."""
    plain_alpha, plain_beta = sp.symbols("alpha beta")
    assert checks.check_rotation_composition(rotation_matrix(plain_beta)).passed
    assert checks.check_rotation_composition(rotation_matrix(sp.Symbol("beta", positive=True))).passed
    unsimplified = rotation_matrix(plain_alpha).T * rotation_matrix(plain_beta) * rotation_matrix(plain_alpha)
    assert "not simplified" in checks.check_rotation_composition(unsimplified).message
    assert not checks.check_rotation_composition(rotation_matrix(-plain_beta)).passed


def test_messages_name_the_readers_function():
    """The pages call the stubs *_yours (the reference of the same name is imported beside them); the messages
    named the reference's function instead."""
    def sinusoidal_encoding_yours(seq_len, dim):
        return torch.zeros(seq_len, dim)

    def complex_inner_yours(x, y):
        return x[..., 0] * y[..., 0]

    def alibi_slopes_yours(n_heads):
        return torch.ones(n_heads, dtype=torch.float64)

    def f(x, y):
        return x[..., 0]

    for check, fn in ((checks.check_sinusoidal_encoding, sinusoidal_encoding_yours),
                      (checks.check_complex_inner, complex_inner_yours),
                      (checks.check_alibi_slopes, alibi_slopes_yours)):
        result = check(fn)
        said = "they differ by" if check is checks.check_complex_inner else "entries differ"  # one number: no count
        assert not result.passed and result.message.startswith(f"✗ {fn.__name__}: ") and said in result.message, \
            result.message
    for fn in (lambda x, y: x[..., 0], f):  # a lambda, another name: the exercise's name
        result = checks.check_complex_inner(fn)
        assert result.message.startswith("✗ complex_inner: "), result.message


def test_the_imported_reference_is_not_an_answer():
    """The page imports sinusoidal_encoding and alibi_slopes for its figures; handed in, they passed."""
    from ropebook import positions

    for check, reference in ((checks.check_sinusoidal_encoding, positions.sinusoidal_encoding),
                             (checks.check_alibi_slopes, positions.alibi_slopes)):
        result = check(reference)
        assert not result.passed and "imported at the top of the page; write yours" in result.message, result.message


@pytest.mark.parametrize("checker, answer, named", [
    (checks.check_sinusoidal_encoding, lambda seq_len, dim: positions.sinusoidal_encoding(seq_len, dim), "sinusoidal_encoding"),
    (checks.check_alibi_slopes, lambda n: positions.alibi_slopes(n) * 1, "alibi_slopes"),
])
def test_the_forbidden_function_inside_a_wrapper_is_refused(checker, answer, named):
    """The statements say not to call the imported reference; handing it in bare was refused, wrapping it in a
    lambda passed (a teacher's review)."""
    result = checker(answer)
    assert not result.passed and f"calls ropebook's {named}" in result.message, result.message
