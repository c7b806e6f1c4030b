"""The LRPE family: relative encodings M_m with M_mᴴ M_n = M_{n−m}, hence M_m = P Λ^m Pᴴ.

Qin et al. (2023) show that a position encoding x ↦ M_m x whose scores
(M_m q)ᴴ(M_n k) = qᴴ M_{n−m} k depend only on n − m, with M_0 invertible, must be
unitary and a power of one matrix, M_m = M_1^m = P Λ^m Pᴴ with P unitary and Λ
diagonal of unit-modulus entries. In real arithmetic an orthogonal M_1 is
P·diag(2×2 rotations, ±1)·Pᵀ with P orthogonal; its powers with rotations only
are M_m = P R_m Pᵀ (RoPE's R_m when P = I), while a permutation of odd sign
has a −1 among them (det M_1 = −1). Members here, each an ``nn.Module``
called as ``encoding(x, positions)`` and accepted by ``ropebook.attention``:

- ``Rotation``: P = I, M_m = R_m (RoPE).
- ``Permutation``: M_m = Π^m for a fixed permutation Π (eigenvalues: roots of unity).
- ``Unitary``: M_m = P R_m Pᵀ for a fixed orthogonal P (``dct_matrix``, ``householder_matrix``).
- ``LearnedHouseholder``: the same with P = I − 2vvᵀ/vᵀv and v a learned parameter.

``matrix(m)`` returns the d×d matrix M_m in float64, for tests and the chapter.

Chapter: ``ch-linear-attention``.
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor, nn

from ropebook._validate import _as_tensor, _check_base, _check_dim, _check_layout, _check_seed
from ropebook.rope import apply_rope
from ropebook.reference import _real, rope_matrix

__all__ = ["Rotation", "Permutation", "Unitary", "LearnedHouseholder", "dct_matrix", "householder_matrix"]


def _check_head_dim(fn: str, head_dim) -> None:
    _check_dim(fn, head_dim, "head_dim")


def _check_input(name: str, x, positions, head_dim: int) -> Tensor:
    if not isinstance(x, Tensor) or x.ndim < 2 or not x.is_floating_point() or x.shape[-1] != head_dim:
        got = f"x.shape={tuple(x.shape)}, x.dtype={x.dtype}" if isinstance(x, Tensor) else f"type(x)={type(x).__name__}"
        raise ValueError(f"{name}: x must be a floating-point tensor of shape (..., T, {head_dim}), got {got}")
    if positions is None:
        return torch.arange(x.shape[-2], device=x.device)  # (T,)
    positions = _as_tensor(name, "positions", positions, x.device)
    if positions.shape != (x.shape[-2],) or positions.is_floating_point() or positions.dtype == torch.bool:
        raise ValueError(f"{name}: positions must be integers of shape (T,)=({x.shape[-2]},), "
                         f"got positions.shape={tuple(positions.shape)}, dtype={positions.dtype}")
    return positions


def _check_m(fn: str, m) -> int:
    """A power m of Π: an integer (a 0-d integer tensor too), never a bool."""
    value = m.item() if isinstance(m, Tensor) and m.ndim == 0 and not m.is_floating_point() else m
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{fn}: m must be an integer, got m={m!r}")
    return int(value)


def dct_matrix(head_dim: int) -> Tensor:
    """The orthonormal DCT-II matrix C (float64), C[j, n] = c_j cos(π (n + ½) j / d); CᵀC = I.

    >>> C = dct_matrix(4); torch.allclose(C.T @ C, torch.eye(4, dtype=torch.float64))
    True
    """
    _check_head_dim("dct_matrix", head_dim)
    j = torch.arange(head_dim, dtype=torch.float64)[:, None]
    n = torch.arange(head_dim, dtype=torch.float64)[None, :]
    C = torch.cos(math.pi * (n + 0.5) * j / head_dim) * math.sqrt(2.0 / head_dim)  # (d, d)
    C[0] /= math.sqrt(2.0)
    return C


def householder_matrix(v: Tensor) -> Tensor:
    """The reflection I − 2 v vᵀ / vᵀv: orthogonal and symmetric, it flips the direction of v.

    >>> householder_matrix(torch.tensor([1.0, 0.0]))
    tensor([[-1.,  0.],
            [ 0.,  1.]])
    """
    ok = isinstance(v, Tensor) and v.ndim == 1 and v.is_floating_point()
    nonzero, finite = torch.stack((v.ne(0).any(), v.isfinite().all())).tolist() if ok else (False, True)  # one sync
    if not nonzero:
        got = f"v.shape={tuple(v.shape)}, v.dtype={v.dtype}" if isinstance(v, Tensor) else f"type(v)={type(v).__name__}"
        raise ValueError(f"householder_matrix: v must be a non-zero floating-point vector of shape (d,), got {got}")
    if not finite:  # NaN or inf: every entry of P would be NaN
        raise ValueError(f"householder_matrix: v must be finite, got v={v.tolist() if v.numel() <= 8 else v}")
    return torch.eye(v.numel(), dtype=v.dtype, device=v.device) - 2.0 * torch.outer(v, v) / (v @ v)


class Rotation(nn.Module):
    """RoPE as an LRPE member: P = I, M_m = R_m, the block rotation by m·θ_i.

    >>> enc = Rotation(4); x = torch.randn(3, 4, dtype=torch.float64)
    >>> torch.allclose(enc(x)[2], torch.from_numpy(enc.matrix(2)) @ x[2])
    True
    """

    def __init__(self, head_dim: int, *, base: float = 10000.0, layout: str = "half"):
        super().__init__()
        _check_head_dim("Rotation", head_dim)
        base = _check_base("Rotation", base)  # a float (numpy scalars too)
        _check_layout("Rotation", layout)
        self.head_dim, self.base, self.layout = head_dim, base, layout

    def forward(self, x: Tensor, positions=None) -> Tensor:  # (..., T, D) -> (..., T, D)
        positions = _check_input("Rotation", x, positions, self.head_dim)
        return apply_rope(x, positions, base=self.base, layout=self.layout)

    def matrix(self, m: int):
        """M_m = R_m as a float64 numpy array (d, d)."""
        m = _real("Rotation.matrix", "m", m)
        return rope_matrix(m, self.head_dim, base=self.base, layout=self.layout)


class _Conjugated(nn.Module):
    """Shared maths for M_m = P R_m Pᵀ with an orthogonal P given by ``self._p(dtype)``."""

    def forward(self, x: Tensor, positions=None) -> Tensor:  # (..., T, D) -> (..., T, D)
        positions = _check_input(type(self).__name__, x, positions, self.head_dim)
        P = self._p(x.dtype)  # (D, D)
        y = apply_rope(x @ P, positions, base=self.base, layout="half")  # rows: (Pᵀ x)ᵀ, rotated
        return y @ P.T  # (..., T, D): (P R_m Pᵀ x)ᵀ

    def matrix(self, m: int):
        """M_m = P R_m Pᵀ as a float64 numpy array (d, d)."""
        m = _real(f"{type(self).__name__}.matrix", "m", m)
        P = self._p(torch.float64).detach().cpu().numpy()
        return P @ rope_matrix(m, self.head_dim, base=self.base, layout="half") @ P.T


class Unitary(_Conjugated):
    """M_m = P R_m Pᵀ with a fixed orthogonal P (the real form of P Λ^m Pᴴ).

    Args:
        head_dim: d (even).
        basis: ``"dct"`` (orthonormal DCT-II), ``"householder"`` (a reflection along a
            seeded random v) or an explicit orthogonal ``(d, d)`` tensor.
        base: θ_i = base^(-2i/d) for the rotations R_m.

    >>> enc = Unitary(4, basis="dct"); M1 = enc.matrix(1)
    >>> bool(abs(M1.T @ M1 - __import__("numpy").eye(4)).max() < 1e-12)
    True
    """

    def __init__(self, head_dim: int, *, basis="dct", base: float = 10000.0, seed: int = 0):
        super().__init__()
        _check_head_dim("Unitary", head_dim)
        base = _check_base("Unitary", base)
        seed = _check_seed("Unitary", seed)
        if isinstance(basis, Tensor):
            P = basis.detach().to(torch.float64)
            eye = torch.eye(head_dim, dtype=torch.float64)
            if P.shape != (head_dim, head_dim) or not torch.allclose(P.T @ P, eye, atol=1e-6):
                raise ValueError(f"Unitary: basis must be an orthogonal ({head_dim}, {head_dim}) matrix (PᵀP = I), "
                                 f"got shape {tuple(P.shape)}" + ("" if P.shape != (head_dim, head_dim) else
                                 f" with max|PᵀP − I| = {float((P.T @ P - eye).abs().max()):.3g}"))
        elif basis == "dct":
            P = dct_matrix(head_dim)
        elif basis == "householder":
            v = torch.randn(head_dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
            P = householder_matrix(v)
        else:
            raise ValueError(f"Unitary: basis must be 'dct', 'householder' or an orthogonal tensor, got basis={basis!r}")
        self.head_dim, self.base = head_dim, base
        self.register_buffer("P", P)  # (d, d) float64

    def _p(self, dtype: torch.dtype) -> Tensor:
        return self.P.to(dtype)


class LearnedHouseholder(_Conjugated):
    """M_m = P R_m Pᵀ with P = I − 2vvᵀ/vᵀv and v a trainable ``nn.Parameter``.

    >>> enc = LearnedHouseholder(4); sum(p.numel() for p in enc.parameters())
    4
    """

    def __init__(self, head_dim: int, *, base: float = 10000.0, seed: int = 0):
        super().__init__()
        _check_head_dim("LearnedHouseholder", head_dim)
        base = _check_base("LearnedHouseholder", base)
        seed = _check_seed("LearnedHouseholder", seed)
        self.head_dim, self.base = head_dim, base
        self.v = nn.Parameter(torch.randn(head_dim, generator=torch.Generator().manual_seed(seed)))  # (d,)

    def _p(self, dtype: torch.dtype) -> Tensor:
        return householder_matrix(self.v.to(dtype))  # differentiable in v


class Permutation(nn.Module):
    """M_m = Π^m for a fixed permutation Π of the d features: (Π x)_j = x_{π(j)}.

    Π^m is computed from the cycles of π, so any integer m (negative too) costs one gather.

    Args:
        head_dim: d.
        permutation: a ``(d,)`` integer tensor holding a permutation, or None for a seeded random one.

    >>> enc = Permutation(3, permutation=torch.tensor([1, 2, 0]))
    >>> enc(torch.tensor([[10.0, 20.0, 30.0]] * 4)).tolist()
    [[10.0, 20.0, 30.0], [20.0, 30.0, 10.0], [30.0, 10.0, 20.0], [10.0, 20.0, 30.0]]
    """

    def __init__(self, head_dim: int, *, permutation: Tensor | None = None, seed: int = 0):
        super().__init__()
        if isinstance(head_dim, bool) or not isinstance(head_dim, int) or head_dim <= 0:
            raise ValueError(f"Permutation: head_dim must be a positive integer, got head_dim={head_dim!r}")
        seed = _check_seed("Permutation", seed)
        if permutation is None:
            permutation = torch.randperm(head_dim, generator=torch.Generator().manual_seed(seed))
        permutation = _as_tensor("Permutation", "permutation", permutation)
        if permutation.shape != (head_dim,) or not torch.equal(permutation.sort().values, torch.arange(head_dim)):
            raise ValueError(f"Permutation: permutation must be a rearrangement of 0..{head_dim - 1}, got {permutation.tolist()}")
        self.head_dim = head_dim
        # Decompose π into cycles j → π(j) → π(π(j)) → …; then π^m(j) is m steps further along j's cycle.
        cycles, seen = [], set()
        for start in range(head_dim):
            cycle, j = [], start
            while j not in seen:
                seen.add(j)
                cycle.append(j)
                j = int(permutation[j])
            if cycle:
                cycles.append(cycle)
        start, length, place = torch.zeros(head_dim, dtype=torch.long), torch.zeros(head_dim, dtype=torch.long), torch.zeros(head_dim, dtype=torch.long)
        offset = 0
        for cycle in cycles:
            for p, j in enumerate(cycle):
                start[j], length[j], place[j] = offset, len(cycle), p
            offset += len(cycle)
        self.register_buffer("permutation", permutation.long())
        self.register_buffer("_flat", torch.tensor([j for cycle in cycles for j in cycle]))  # cycle after cycle
        self.register_buffer("_start", start)  # (d,) where j's cycle begins in _flat
        self.register_buffer("_len", length)  # (d,) length of j's cycle
        self.register_buffer("_place", place)  # (d,) j's place in its cycle

    def indices(self, positions: Tensor) -> Tensor:
        """idx with (Π^m x)_j = x[idx[m, j]] = x_{π^m(j)}: shape ``positions.shape + (d,)``."""
        positions = _as_tensor("Permutation.indices", "positions", positions, self._flat.device)
        if positions.is_floating_point() or positions.is_complex() or positions.dtype == torch.bool:
            raise ValueError(f"Permutation.indices: positions must be integers, got positions.dtype={positions.dtype}")
        positions = positions.long()
        step = (self._place + positions[..., None]) % self._len  # (..., d)
        return self._flat[self._start + step]

    def forward(self, x: Tensor, positions=None) -> Tensor:  # (..., T, D) -> (..., T, D)
        positions = _check_input("Permutation", x, positions, self.head_dim)
        idx = self.indices(positions).to(x.device)  # (T, D)
        return torch.gather(x, -1, idx.expand(*x.shape[:-2], *idx.shape))

    def matrix(self, m: int):
        """M_m = Π^m as a float64 numpy array (d, d): row j has its 1 in column π^m(j)."""
        idx = self.indices(torch.tensor(_check_m("Permutation.matrix", m))).cpu()
        return torch.eye(self.head_dim, dtype=torch.float64)[idx].numpy()
