"""Sympy objects for the derivation chapters: rotations, the complex view of a pair, identity tests.

A 2-D real vector (a, b) and the complex number a + bi are the same object seen
two ways; a rotation by α is the matrix R(α) or multiplication by e^{iα}. These
helpers build both views symbolically, and :func:`is_identity` decides whether
two expressions are equal for every value of their symbols, so a page can
``assert`` each identity it displays; :func:`has_counterexample` asserts the
opposite, that a claim is false, only when numbers show it. Declare symbols ``real=True``: conjugates
and real parts only simplify for real symbols.

Chapters: ``ch-complex-rotations`` (and Part II, which builds on it).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import sympy as sp

__all__ = [
    "J",
    "rotation_matrix",
    "block_diagonal_rotation",
    "real_vector",
    "as_complex",
    "as_vector",
    "complex_inner",
    "is_identity",
    "has_counterexample",
]

J = sp.ImmutableMatrix([[0, -1], [1, 0]])  # the 90° rotation R(π/2)


def rotation_matrix(angle) -> sp.Matrix:
    """R(α) = [[cos α, −sin α], [sin α, cos α]]: turns a column vector counter-clockwise by α.

    >>> a = sp.Symbol("alpha", real=True)
    >>> rotation_matrix(a)
    Matrix([
    [cos(alpha), -sin(alpha)],
    [sin(alpha),  cos(alpha)]])
    >>> rotation_matrix(sp.pi / 2) == J
    True
    """
    angle = sp.sympify(angle)
    return sp.Matrix([[sp.cos(angle), -sp.sin(angle)], [sp.sin(angle), sp.cos(angle)]])


def block_diagonal_rotation(angles: Sequence) -> sp.Matrix:
    """The 2k×2k matrix with R(angles[0]), …, R(angles[k−1]) on its diagonal (RoFormer's R_{Θ,m}).

    Pair i occupies rows and columns 2i and 2i + 1 (the interleaved layout).

    >>> m, t0, t1 = sp.symbols("m theta_0 theta_1", real=True)
    >>> R = block_diagonal_rotation([m * t0, m * t1])
    >>> R.shape, R[2:, 2:] == rotation_matrix(m * t1), R[0, 2]
    ((4, 4), True, 0)
    """
    angles = list(angles)
    if not angles:
        raise ValueError("block_diagonal_rotation: angles must hold at least one angle, got an empty sequence")
    return sp.diag(*[rotation_matrix(a) for a in angles])


def real_vector(name: str, dim: int) -> sp.Matrix:
    """A column of ``dim`` real symbols ``name_0 … name_{dim-1}``.

    >>> real_vector("q", 2)
    Matrix([
    [q_0],
    [q_1]])
    """
    if isinstance(dim, bool) or not isinstance(dim, int) or dim <= 0:
        raise ValueError(f"real_vector: dim must be a positive integer, got dim={dim!r}")
    return sp.Matrix(sp.symbols(f"{name}_0:{dim}", real=True))


def _column(fn: str, vec) -> sp.Matrix:
    vec = sp.Matrix(vec) if not isinstance(vec, sp.MatrixBase) else vec
    if vec.shape[1] != 1 and vec.shape[0] == 1:
        vec = vec.T
    if vec.shape[1] != 1 or vec.shape[0] % 2:
        raise ValueError(f"{fn}: vec must be a vector of even length, got shape {vec.shape}")
    return vec


def as_complex(vec):
    """The complex view of a real vector: pair (2i, 2i+1) becomes x_{2i} + i·x_{2i+1}.

    A 2-vector gives one complex number; a longer even vector gives a column of them.

    >>> a, b = sp.symbols("a b", real=True)
    >>> as_complex([a, b])
    a + I*b
    >>> as_complex([1, 2, 3, 4]).T
    Matrix([[1 + 2*I, 3 + 4*I]])
    """
    vec = _column("as_complex", vec)
    z = [vec[2 * i] + sp.I * vec[2 * i + 1] for i in range(vec.shape[0] // 2)]
    return z[0] if len(z) == 1 else sp.Matrix(z)


def as_vector(z) -> sp.Matrix:
    """The real view of a complex number (or a column of them): a + bi becomes (a, b), interleaved.

    Inverse of :func:`as_complex`.

    >>> a = sp.Symbol("a", real=True)
    >>> as_vector(sp.exp(sp.I * a)).T
    Matrix([[cos(a), sin(a)]])
    """
    values = list(z) if isinstance(z, (sp.MatrixBase, list, tuple)) else [z]
    parts = []
    for w in values:
        re, im = sp.expand_complex(sp.sympify(w)).as_real_imag()
        parts += [sp.simplify(re), sp.simplify(im)]
    return sp.Matrix(parts)


def complex_inner(z, w):
    """⟨z, w⟩ = Re[z · w*], summed over entries: the real dot product of the two vectors' real views.

    >>> a, b, c, d = sp.symbols("a b c d", real=True)
    >>> complex_inner(a + sp.I * b, c + sp.I * d)
    a*c + b*d
    """
    zs = list(z) if isinstance(z, (sp.MatrixBase, list, tuple)) else [z]
    ws = list(w) if isinstance(w, (sp.MatrixBase, list, tuple)) else [w]
    if len(zs) != len(ws):
        raise ValueError(f"complex_inner: z and w must have the same length, got {len(zs)} and {len(ws)}")
    total = sum(sp.sympify(x) * sp.conjugate(sp.sympify(y)) for x, y in zip(zs, ws))
    return sp.expand(sp.re(sp.expand_complex(total)))


def _sample(symbol, rng) -> float:
    """A value that respects the symbol's assumptions (integer, positive, nonnegative)."""
    if symbol.is_integer:
        return int(rng.integers(1, 6)) if symbol.is_positive or symbol.is_nonnegative else int(rng.integers(-5, 6))
    if symbol.is_positive or symbol.is_nonnegative:
        return float(rng.uniform(0.1, 2.0))
    return float(rng.uniform(-2.0, 2.0))


def _numerically_nonzero(expr, trials: int = 3) -> bool:
    """True when expr is clearly nonzero at some random point: then it is no identity (a counterexample)."""
    rng = np.random.default_rng(0)
    symbols = sorted(expr.free_symbols, key=str)
    for _ in range(trials):
        point = {s: _sample(s, rng) for s in symbols}
        try:
            value = complex(expr.evalf(50, subs=point))
        except (TypeError, ValueError):  # something sympy cannot evaluate: leave it to the proof
            return False
        if abs(value) > 1e-30:  # a true identity leaves ~1e-50 times its magnitude
            return True
    return False


def _is_zero(expr) -> bool:
    """True only when simplification proves expr == 0 for every value of its symbols."""
    expr = sp.sympify(expr)
    if expr == 0:
        return True
    if _numerically_nonzero(expr):
        return False
    attempts = (
        lambda e: sp.expand(sp.expand_complex(e)),
        lambda e: sp.expand(sp.expand_trig(e)),
        lambda e: sp.trigsimp(e),
        sp.simplify,
        lambda e: sp.simplify(sp.expand(e.rewrite(sp.exp))),
    )
    for attempt in attempts:
        expr = attempt(expr)
        if expr == 0 or expr.is_zero is True:
            return True
    return False


def _differences(fn: str, lhs, rhs) -> list:
    """The entries of lhs − rhs (one for scalars), after checking that both are scalars or same-shape matrices."""
    lhs_is_matrix, rhs_is_matrix = isinstance(lhs, sp.MatrixBase), isinstance(rhs, sp.MatrixBase)
    if lhs_is_matrix != rhs_is_matrix:
        shapes = [x.shape if isinstance(x, sp.MatrixBase) else "scalar" for x in (lhs, rhs)]
        raise ValueError(f"{fn}: lhs and rhs must both be matrices or both scalars, got {shapes[0]} and {shapes[1]}")
    if lhs_is_matrix:
        if lhs.shape != rhs.shape:
            raise ValueError(f"{fn}: lhs and rhs must have the same shape, got {lhs.shape} and {rhs.shape}")
        return list(lhs - rhs)
    return [sp.sympify(lhs) - sp.sympify(rhs)]


def is_identity(lhs, rhs) -> bool:
    """Whether lhs == rhs for every value of the symbols, decided by simplifying lhs − rhs.

    Works for scalars and for matrices of the same shape. A claim that is
    clearly nonzero at a random point (a counterexample, evaluated to 50 digits)
    is rejected at once; otherwise ``True`` needs a symbolic proof. It returns
    ``False`` when sympy cannot prove the identity, so a page's
    ``assert is_identity(...)`` fails loudly rather than passing an unproven claim.
    For the opposite claim, that lhs ≠ rhs, use :func:`has_counterexample`:
    ``not is_identity(...)`` would also pass on a true identity sympy failed to prove.

    >>> a, b = sp.symbols("a b", real=True)
    >>> is_identity(rotation_matrix(a) * rotation_matrix(b), rotation_matrix(a + b))
    True
    >>> is_identity(sp.cos(a + b), sp.cos(a) + sp.cos(b))
    False
    """
    return all(_is_zero(entry) for entry in _differences("is_identity", lhs, rhs))


def has_counterexample(lhs, rhs) -> bool:
    """Whether numbers show lhs ≠ rhs: a random point where lhs − rhs is clearly nonzero.

    Works for scalars and for matrices of the same shape. Each entry of lhs − rhs
    is evaluated to 50 digits at up to three seeded random points that respect the
    symbols' assumptions (integer, positive). ``True`` needs such a counterexample,
    so a page's ``assert has_counterexample(...)`` cannot pass on a claim that is
    true, as ``assert not is_identity(...)`` can when sympy fails to prove it. An
    expression that cannot be evaluated (an undefined function) gives ``False``.

    >>> a, b = sp.symbols("a b", real=True)
    >>> has_counterexample(sp.cos(a + b), sp.cos(a) + sp.cos(b))
    True
    >>> has_counterexample(rotation_matrix(a) * rotation_matrix(b), rotation_matrix(a + b))
    False
    """
    return any(_numerically_nonzero(entry) for entry in _differences("has_counterexample", lhs, rhs))
