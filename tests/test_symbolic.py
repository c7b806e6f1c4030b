"""ropebook.symbolic: the identities Part I displays, wrong identities rejected, the helpers against numpy."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from ropebook import reference
from ropebook.symbolic import (
    J,
    as_complex,
    as_vector,
    block_diagonal_rotation,
    complex_inner,
    has_counterexample,
    is_identity,
    real_vector,
    rotation_matrix,
)

a, b, c, d, alpha, beta, m, n, theta = sp.symbols("a b c d alpha beta m n theta", real=True)
R = rotation_matrix
x, y = real_vector("x", 2), real_vector("y", 2)

# (name, lhs, rhs): identities that hold for all real values of the symbols.
TRUE_IDENTITIES = [
    ("inner product is Re[z w*]", complex_inner(a + sp.I * b, c + sp.I * d), a * c + b * d),
    ("Re[z w*] written out", sp.re((a + sp.I * b) * sp.conjugate(c + sp.I * d)), a * c + b * d),
    ("angles add", sp.exp(sp.I * alpha) * sp.exp(sp.I * beta), sp.exp(sp.I * (alpha + beta))),
    ("Euler", sp.exp(sp.I * alpha), sp.cos(alpha) + sp.I * sp.sin(alpha)),
    ("orthogonal", R(alpha).T * R(alpha), sp.eye(2)),
    ("composition", R(alpha) * R(beta), R(alpha + beta)),
    ("transpose is inverse rotation", R(alpha).T, R(-alpha)),
    ("determinant", R(alpha).det(), 1),
    ("norm preserved", (R(alpha) * x).dot(R(alpha) * x), x.dot(x)),
    ("inner product preserved", (R(alpha) * x).dot(R(alpha) * y), x.dot(y)),
    ("R(α) is multiplication by e^{iα}", R(alpha) * x, as_vector(sp.exp(sp.I * alpha) * as_complex(x))),
    ("J is R(π/2)", R(sp.pi / 2), J),
    ("R(α) = cos α I + sin α J", R(alpha), sp.cos(alpha) * sp.eye(2) + sp.sin(alpha) * J),
    ("relative position", (R(m * theta) * x).dot(R(n * theta) * y), (x.T * R((n - m) * theta) * y)[0]),
    ("Pythagoras", sp.sin(alpha) ** 2 + sp.cos(alpha) ** 2, 1),
    ("large magnitude", sp.exp(60) * (sp.sin(alpha) ** 2 + sp.cos(alpha) ** 2), sp.exp(60)),
]

# (name, lhs, rhs): plausible-looking claims that are false; is_identity must say so.
FALSE_IDENTITIES = [
    ("cos is not additive", sp.cos(alpha + beta), sp.cos(alpha) + sp.cos(beta)),
    ("inner product without the conjugate", sp.re((a + sp.I * b) * (c + sp.I * d)), a * c + b * d),
    ("composition in the wrong direction", R(alpha) * R(beta), R(alpha - beta)),
    ("transpose is not the same rotation", R(alpha).T, R(alpha)),
    ("absolute, not relative", (R(m * theta) * x).dot(R(n * theta) * y), (x.T * R((n + m) * theta) * y)[0]),
    ("off by a sign", sp.exp(sp.I * alpha), sp.cos(alpha) - sp.I * sp.sin(alpha)),
]


@pytest.mark.parametrize("name,lhs,rhs", TRUE_IDENTITIES, ids=[t[0] for t in TRUE_IDENTITIES])
def test_true_identities_are_proved(name, lhs, rhs):
    assert is_identity(lhs, rhs), name


@pytest.mark.parametrize("name,lhs,rhs", FALSE_IDENTITIES, ids=[t[0] for t in FALSE_IDENTITIES])
def test_false_identities_are_rejected(name, lhs, rhs):
    assert not is_identity(lhs, rhs), name


@pytest.mark.parametrize("name,lhs,rhs", FALSE_IDENTITIES, ids=[t[0] for t in FALSE_IDENTITIES])
def test_false_identities_are_really_false(name, lhs, rhs):
    """Numbers confirm that each rejected claim is wrong somewhere (so rejecting it is right)."""
    values = {a: 0.3, b: -1.1, c: 0.7, d: 2.0, alpha: 0.4, beta: 1.3, m: 3, n: 5, theta: 0.2}
    values |= {s: v for s, v in zip(list(x) + list(y), [0.5, -0.2, 1.5, 0.9])}
    difference = sp.Matrix([lhs - rhs]) if not isinstance(lhs, sp.MatrixBase) else lhs - rhs
    assert max(abs(complex(e.subs(values).evalf())) for e in difference) > 1e-6, name


@pytest.mark.parametrize("name,lhs,rhs", TRUE_IDENTITIES, ids=[t[0] for t in TRUE_IDENTITIES])
def test_true_identities_have_no_counterexample(name, lhs, rhs):
    assert not has_counterexample(lhs, rhs), name


@pytest.mark.parametrize("name,lhs,rhs", FALSE_IDENTITIES, ids=[t[0] for t in FALSE_IDENTITIES])
def test_false_identities_have_a_counterexample(name, lhs, rhs):
    assert has_counterexample(lhs, rhs), name


def test_what_cannot_be_evaluated_gives_no_counterexample():
    """An undefined function has no value at a point: no counterexample, whether the claim is true or not,
    so `assert has_counterexample(...)` fails rather than passing unchecked."""
    f = sp.Function("f")
    assert not has_counterexample(f(alpha) * (sp.sin(alpha) ** 2 + sp.cos(alpha) ** 2), f(alpha))
    assert not has_counterexample(f(alpha), f(beta))


def test_counterexample_search_tells_tiny_differences_from_rounding():
    """Evaluated to 50 digits: a difference of 1e-25 is a counterexample; a true identity of size e^60 is not."""
    from ropebook.symbolic import _numerically_nonzero

    assert _numerically_nonzero(sp.sin(alpha + sp.Rational(1, 10**25)) - sp.sin(alpha))
    assert not _numerically_nonzero(sp.exp(60) * (sp.sin(alpha) ** 2 + sp.cos(alpha) ** 2) - sp.exp(60))
    assert not is_identity(R(alpha + sp.Rational(1, 10**20)), R(alpha))


def test_rotation_matrix_matches_reference():
    for angle in [0.0, 0.5, -2.0, np.pi, 7.0]:
        ours = np.array(R(angle).evalf(), dtype=np.float64)
        np.testing.assert_allclose(ours, reference.rotation_matrix_2d(angle), rtol=0, atol=1e-15)


def test_block_diagonal_rotation_matches_reference_rope_matrix():
    """R_{Θ,m} built from symbols, evaluated, equals the numpy oracle's interleaved rope_matrix."""
    dim, position, base = 6, 3, 100.0
    thetas = reference.rope_frequencies(dim, base=base)
    ours = np.array(block_diagonal_rotation([position * t for t in thetas]).evalf(), dtype=np.float64)
    np.testing.assert_allclose(ours, reference.rope_matrix(position, dim, base=base, layout="interleaved"), atol=1e-14)


def test_as_complex_and_as_vector_are_inverse():
    v = real_vector("v", 6)
    assert as_complex(v).shape == (3, 1)
    assert is_identity(as_vector(as_complex(v)), v)
    z = a + sp.I * b
    assert sp.expand(as_complex(as_vector(z)) - z) == 0


@settings(max_examples=25, deadline=None)
@given(
    st.floats(-10, 10), st.floats(-10, 10), st.floats(-10, 10), st.floats(-10, 10),
)
def test_complex_inner_equals_real_dot_product(p, q, r, s):
    value = float(complex_inner(sp.Float(p) + sp.I * sp.Float(q), sp.Float(r) + sp.I * sp.Float(s)))
    assert value == pytest.approx(np.dot([p, q], [r, s]), rel=1e-12, abs=1e-12)


def test_complex_inner_of_vectors_sums_pairs():
    z, w = as_complex(real_vector("z", 4)), as_complex(real_vector("w", 4))
    assert is_identity(complex_inner(z, w), real_vector("z", 4).dot(real_vector("w", 4)))


BAD_INPUTS = [
    (lambda: block_diagonal_rotation([]), "angles must hold at least one angle"),
    (lambda: real_vector("q", 0), "dim must be a positive integer, got dim=0"),
    (lambda: as_complex([a, b, c]), "vec must be a vector of even length, got shape (3, 1)"),
    (lambda: complex_inner([a, b], [c]), "z and w must have the same length, got 2 and 1"),
    (lambda: is_identity(sp.eye(2), sp.eye(3)), "lhs and rhs must have the same shape, got (2, 2) and (3, 3)"),
    (lambda: is_identity(sp.eye(2), a), "lhs and rhs must both be matrices or both scalars"),
    (lambda: has_counterexample(sp.eye(2), sp.eye(3)), "has_counterexample: lhs and rhs must have the same shape, got (2, 2) and (3, 3)"),
    (lambda: has_counterexample(a, sp.eye(2)), "has_counterexample: lhs and rhs must both be matrices or both scalars, got scalar and (2, 2)"),
]


@pytest.mark.parametrize("call,message", BAD_INPUTS, ids=[m for _, m in BAD_INPUTS])
def test_bad_input_names_argument_and_values(call, message):
    with pytest.raises(ValueError) as info:
        call()
    assert message in str(info.value)
