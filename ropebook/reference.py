"""Slow, obviously correct RoPE in numpy float64: explicit rotation matrices and loops.

This is the oracle: the fast code in ``ropebook.rope`` and the exercise
checkers in ``ropebook.checks`` are compared against it. Everything here is
written the way the book writes the maths: θ_i = b^(-2i/d), the 2×2 rotation
R(α), the block-diagonal R_{Θ,m} built pair by pair, and y = R_{Θ,m} x for
every token. Inputs may be numpy arrays, torch tensors or nested lists;
outputs are numpy float64 arrays.

Chapter: ``ch-rope-d-dims``.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch

from ropebook._validate import (_check_base, _check_dim, _check_layout, _check_positive_number, _check_scaling,
                                _check_seq_len, _check_x, _short_repr)
from ropebook.rope import _positions

__all__ = [
    "LAYOUTS",
    "rope_frequencies",
    "rotation_matrix_2d",
    "pair_indices",
    "rope_matrix",
    "apply_rope_reference",
]

LAYOUTS = ("half", "interleaved")


def _array(x) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def _real(fn: str, name: str, value):
    """A finite real number (a numpy scalar or a 0-d array or tensor too), never a bool; returned as a number."""
    if isinstance(value, (np.ndarray, np.generic, torch.Tensor)) and value.ndim == 0:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        try:  # a sympy number (sp.pi / 2, sp.Integer(3)) is real but no numbers.Real: take its float value
            as_float = float(value) if not isinstance(value, (bool, str, complex)) else None
        except (TypeError, ValueError):
            as_float = None
        if as_float is None or not math.isfinite(as_float):
            raise ValueError(f"{fn}: {name} must be a finite real number, got {name}={_short_repr(value)}")
        return as_float
    return float(value) if not isinstance(value, numbers.Integral) else int(value)


def _inv_freq_array(fn: str, inv_freq, half: int) -> np.ndarray:
    """Explicit frequencies: real, finite, shape (half,)."""
    try:
        theta = _array(inv_freq)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{fn}: inv_freq must be real numbers of shape ({half},), "
                         f"got inv_freq={_short_repr(inv_freq)}") from err
    if theta.shape != (half,):
        raise ValueError(f"{fn}: inv_freq must have shape ({half},), got {theta.shape}")
    if not np.all(np.isfinite(theta)):
        raise ValueError(f"{fn}: inv_freq must be finite, got inv_freq={theta}")
    return theta


def rope_frequencies(dim: int, *, base: float = 10000.0, scaling=None, seq_len=None) -> np.ndarray:
    """θ_i = base^(-2i/dim) for i = 0 … dim/2 − 1, shape ``(dim // 2,)``.

    With a rule from ``ropebook.scaling``, its frequencies (computed in float64).

    >>> rope_frequencies(4, base=100.0)
    array([1. , 0.1])
    """
    fn = "reference.rope_frequencies"
    _check_dim(fn, dim)
    base = _check_base(fn, base)  # a float: a numpy float32 base would compute in float32
    _check_scaling(fn, scaling)
    _check_seq_len(fn, seq_len)
    if scaling is not None:
        return _array(scaling.inv_freq(dim, base=base, seq_len=seq_len))
    return np.array([base ** (-2.0 * i / dim) for i in range(dim // 2)])


def rotation_matrix_2d(angle: float) -> np.ndarray:
    """R(α) = [[cos α, −sin α], [sin α, cos α]]: turns a 2-D vector counter-clockwise by α.

    >>> rotation_matrix_2d(np.pi / 2).round(12) @ np.array([1.0, 0.0])
    array([0., 1.])
    """
    angle = _real("rotation_matrix_2d", "angle", angle)
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s], [s, c]], dtype=np.float64)


def pair_indices(i: int, dim: int, layout: str = "half") -> tuple[int, int]:
    """The two features that form pair i: (i, i + d/2) for ``"half"``, (2i, 2i + 1) for ``"interleaved"``.

    >>> pair_indices(1, 8, "half"), pair_indices(1, 8, "interleaved")
    ((1, 5), (2, 3))
    """
    fn = "pair_indices"
    _check_dim(fn, dim)
    _check_layout(fn, layout)
    if isinstance(i, bool) or not isinstance(i, numbers.Integral) or not 0 <= i < dim // 2:
        raise ValueError(f"{fn}: i must be an integer in [0, dim/2) = [0, {dim // 2}), got i={i!r}")
    if layout == "half":
        return i, i + dim // 2
    return 2 * i, 2 * i + 1


def rope_matrix(m: float, dim: int, *, base: float = 10000.0, layout: str = "half", inv_freq=None) -> np.ndarray:
    """The d×d rotation R_{Θ,m}: R(m·θ_i) placed on the features of pair i, zeros elsewhere.

    For ``layout="interleaved"`` it is block diagonal; for ``"half"`` it is the same
    matrix with rows and columns permuted. ``inv_freq`` overrides θ.

    >>> R = rope_matrix(3, 4, layout="interleaved")
    >>> np.allclose(R[:2, :2], rotation_matrix_2d(3.0)), np.allclose(R.T @ R, np.eye(4))
    (True, True)
    """
    fn = "rope_matrix"
    m = _real(fn, "m", m)
    _check_dim(fn, dim)
    base = _check_base(fn, base)  # a float: a numpy float32 base would compute in float32
    _check_layout(fn, layout)
    theta = rope_frequencies(dim, base=base) if inv_freq is None else _inv_freq_array(fn, inv_freq, dim // 2)
    R = np.zeros((dim, dim))
    for i in range(dim // 2):
        a, b = pair_indices(i, dim, layout)
        R[np.ix_([a, b], [a, b])] = rotation_matrix_2d(m * theta[i])
    return R


def apply_rope_reference(x, positions=None, *, base: float = 10000.0, layout: str = "half", rotary_dim=None,
                         inv_freq=None, scaling=None, seq_len=None, attention_factor=None) -> np.ndarray:
    """y[..., t, :r] = attention_factor · R_{Θ, positions[..., t]} x[..., t, :r]; features beyond r unchanged.

    Args:
        x: ``(..., T, D)``.
        positions: broadcastable to ``(..., T)``; default ``0 … T − 1``.
        base, layout, rotary_dim: as in ``ropebook.apply_rope``.
        inv_freq: explicit frequencies ``(r // 2,)`` (overrides base and scaling).
        scaling: a rule from ``ropebook.scaling``; brings its frequencies and attention factor.
        seq_len: for rules that depend on the length; default ``max(positions) + 1``.
        attention_factor: overrides the rule's attention factor (default 1 without a rule).

    Returns: a float64 array of the shape of x.

    >>> y = apply_rope_reference([[1.0, 0.0], [1.0, 0.0]])
    >>> y.round(4)
    array([[1.    , 0.    ],
           [0.5403, 0.8415]])
    """
    fn = "apply_rope_reference"
    if (isinstance(x, torch.Tensor) and x.is_complex()) or (isinstance(x, np.ndarray) and np.iscomplexobj(x)):
        raise ValueError(f"{fn}: x must hold real numbers, got x.dtype={x.dtype}")
    try:
        x = _array(x)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{fn}: x must be real numbers of shape (..., T, D) (an array, a tensor or nested lists), "
                         f"got x={_short_repr(x)}") from err
    shape_only = torch.empty((), dtype=torch.float64).expand(x.shape)  # the torch path's checks read shape and dtype only
    r = _check_x(fn, shape_only, rotary_dim)
    _check_layout(fn, layout)
    base = _check_base(fn, base)  # a float: a numpy float32 base would compute in float32
    _check_positive_number(fn, attention_factor, "attention_factor", optional=True)
    _check_scaling(fn, scaling)
    _check_seq_len(fn, seq_len)
    if inv_freq is not None:
        inv_freq = _inv_freq_array(fn, inv_freq, r // 2)
    if positions is None:
        pos = np.arange(x.shape[-2], dtype=np.float64)
    else:  # the torch path's checks (dtype, shape, finite) on the exact float64 values
        exact = positions.detach().cpu() if isinstance(positions, torch.Tensor) else np.array(positions)  # a copy: writable
        if not isinstance(exact, torch.Tensor) and exact.dtype.kind not in "biuf":
            raise ValueError(f"{fn}: positions must be integers or real floats, got positions.dtype={exact.dtype}")
        pos = _positions(fn, shape_only, torch.as_tensor(exact), 0).double().numpy()
    pos = np.broadcast_to(pos, x.shape[:-1])
    if inv_freq is None:
        if scaling is not None and seq_len is None and getattr(scaling, "uses_seq_len", False):
            seq_len = int(pos.max()) + 1
        inv_freq = rope_frequencies(r, base=base, scaling=scaling, seq_len=seq_len)
    if attention_factor is None:
        attention_factor = 1.0 if scaling is None else scaling.attention_factor
    y = x.copy()
    for idx in np.ndindex(*x.shape[:-1]):  # every token of every row and head
        R = rope_matrix(pos[idx], r, layout=layout, inv_freq=inv_freq)
        y[idx][:r] = attention_factor * (R @ x[idx][:r])
    return y
