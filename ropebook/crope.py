"""CRoPE: attention whose Q/K/V projections are complex-linear, next to standard RoPE attention.

RoPE multiplies the complex view q̃ ∈ C^{d/2} of a query by e^{i·m·θ_j}, pair by
pair. CRoPE (Lou, Xu, Wong, arXiv 2601.02728) makes the projections that produce
q̃, k̃, ṽ complex-linear as well: the input x ∈ R^D is read as D/2 complex numbers
(features 2j, 2j + 1 are the real and imaginary part of number j, the
``layout="interleaved"`` pairing) and multiplied by a D/2 × D/2 complex matrix,
D²/2 real parameters instead of D². The output projection stays real.

``RoPEAttention`` and ``CRoPEAttention`` share one interface, so a model can swap
them; ``parameter_count`` counts what a module really holds.

Chapter: ``ch-crope``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ropebook._validate import _as_tensor, _check_base, _check_bool, _check_dim, _check_position_values, _is_int
from ropebook.rope import apply_rope, apply_rope_complex

__all__ = ["ComplexLinear", "RoPEAttention", "CRoPEAttention", "parameter_count"]


def parameter_count(module: nn.Module) -> int:
    """The number of real trainable parameters a module holds.

    >>> parameter_count(ComplexLinear(8, 8))      # 4 × 4 complex = 32 real numbers
    32
    """
    if not isinstance(module, nn.Module):
        raise ValueError(f"parameter_count: module must be a torch.nn.Module, got type(module)={type(module).__name__}")
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def _check_positive_even(fn: str, name: str, value) -> None:
    _check_dim(fn, value, name)


class ComplexLinear(nn.Module):
    """y = W x̃ with W ∈ C^{out/2 × in/2}, on real tensors whose pairs (2j, 2j + 1) are complex numbers.

    The weight is stored as its real and imaginary parts A and B, so the module
    holds in·out/2 real numbers, half of ``nn.Linear(in, out, bias=False)``.
    As a real matrix, every 2×2 block is [[A_jk, −B_jk], [B_jk, A_jk]]: a
    scaled rotation, never a reflection (see :meth:`real_matrix`).

    Shapes: ``x (..., in_features)`` → ``(..., out_features)``.

    >>> layer = ComplexLinear(4, 4)
    >>> x = torch.randn(3, 4)
    >>> torch.allclose(layer(x), x @ layer.real_matrix().T, atol=1e-6)
    True
    """

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        _check_positive_even("ComplexLinear", "in_features", in_features)
        _check_positive_even("ComplexLinear", "out_features", out_features)
        self.in_features, self.out_features = in_features, out_features
        self.weight_real = nn.Parameter(torch.empty(out_features // 2, in_features // 2))  # A
        self.weight_imag = nn.Parameter(torch.empty(out_features // 2, in_features // 2))  # B
        # Same per-entry range as nn.Linear(in, out): Re y_j then has the variance a real layer gives.
        bound = 1.0 / math.sqrt(in_features)
        nn.init.uniform_(self.weight_real, -bound, bound)
        nn.init.uniform_(self.weight_imag, -bound, bound)

    @property
    def complex_weight(self) -> Tensor:
        """W = A + iB, shape ``(out/2, in/2)``."""
        return torch.complex(self.weight_real, self.weight_imag)

    def real_matrix(self) -> Tensor:
        """The (out, in) real matrix of this map on interleaved pairs: block (j, k) is [[A, −B], [B, A]]."""
        a, b = self.weight_real, self.weight_imag  # (out/2, in/2) each
        top = torch.stack((a, -b), dim=-1)  # (out/2, in/2, 2): row 2j
        bottom = torch.stack((b, a), dim=-1)  # row 2j + 1
        return torch.stack((top, bottom), dim=1).reshape(self.out_features, self.in_features)

    def forward(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor) or x.ndim < 1 or not x.is_floating_point():
            got = f"x.shape={tuple(x.shape)}, x.dtype={x.dtype}" if isinstance(x, Tensor) else f"type(x)={type(x).__name__}"
            raise ValueError(f"ComplexLinear: x must be a floating-point tensor of shape (..., {self.in_features}), "
                             f"got {got}")
        if x.shape[-1] != self.in_features:
            raise ValueError(f"ComplexLinear: expected x.shape[-1]={self.in_features}, got x.shape={tuple(x.shape)}")
        weight = self.weight_real
        if x.dtype != weight.dtype and not torch.is_autocast_enabled(x.device.type):  # autocast casts per op
            raise ValueError(f"ComplexLinear: x must have the weights' dtype {weight.dtype} (convert the module with "
                             f".to(dtype), or x), got x.dtype={x.dtype}")
        x_re, x_im = x[..., 0::2], x[..., 1::2]  # (..., in/2) each
        y_re = F.linear(x_re, self.weight_real) - F.linear(x_im, self.weight_imag)  # (..., out/2)
        y_im = F.linear(x_re, self.weight_imag) + F.linear(x_im, self.weight_real)
        return torch.stack((y_re, y_im), dim=-1).flatten(-2)  # (..., out), interleaved

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features} (complex {self.out_features // 2}×{self.in_features // 2})"


class _Attention(nn.Module):
    """Multi-head attention: project, rotate q and k (optionally), attend, project out."""

    _projection: type = nn.Linear

    def __init__(self, dim: int, n_heads: int, *, base: float = 10000.0, rope: bool = True, causal: bool = True):
        super().__init__()
        name = type(self).__name__
        _check_positive_even(name, "dim", dim)
        if not _is_int(n_heads) or n_heads <= 0 or dim % (2 * n_heads):
            raise ValueError(f"{name}: n_heads must be a positive integer with dim/n_heads even, got dim={dim}, n_heads={n_heads!r}")
        dim, n_heads = int(dim), int(n_heads)
        base = _check_base(name, base)
        _check_bool(name, rope, "rope")
        _check_bool(name, causal, "causal")
        self.dim, self.n_heads, self.head_dim = dim, n_heads, dim // n_heads
        self.base, self.rope, self.causal = float(base), rope, causal
        self.q_proj, self.k_proj, self.v_proj = (self._make_projection(dim) for _ in range(3))
        self.out_proj = nn.Linear(dim, dim, bias=False)  # real in both variants

    def _make_projection(self, dim: int) -> nn.Module:
        return nn.Linear(dim, dim, bias=False)

    def _rotate(self, x: Tensor, positions) -> Tensor:
        return apply_rope(x, positions, base=self.base, layout="interleaved")

    def _heads(self, x: Tensor) -> Tensor:
        B, T, _ = x.shape
        return x.view(B, T, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, T, hd)

    def _check_x(self, fn: str, x) -> None:
        if not isinstance(x, Tensor) or x.ndim != 3 or x.shape[-1] != self.dim:
            got = f"x.shape={tuple(x.shape)}" if isinstance(x, Tensor) else f"type(x)={type(x).__name__}"
            raise ValueError(f"{type(self).__name__}.{fn}: expected x of shape (B, T, {self.dim}), got {got}")
        if not x.is_floating_point():
            raise ValueError(f"{type(self).__name__}.{fn}: x must be floating-point, got x.dtype={x.dtype}")
        weight = self.out_proj.weight
        if x.dtype != weight.dtype and not torch.is_autocast_enabled(x.device.type):  # autocast casts per op
            raise ValueError(f"{type(self).__name__}.{fn}: x must have the weights' dtype {weight.dtype} (convert the "
                             f"module with .to(dtype), or x), got x.dtype={x.dtype}")

    def _positions(self, fn: str, x: Tensor, positions):
        """None, or positions of shape (T,) or, one row per sequence, (B, T), as (B, 1, T) for q and k of
        (B, H, T, hd) (passed on as (B, T), a row would be read per head when B = H). Checked with rope=False too."""
        if positions is None:
            return None
        B, T, _ = x.shape
        positions = _as_tensor(f"{type(self).__name__}.{fn}", "positions", positions, x.device)
        if positions.shape not in ((T,), (B, T)):
            raise ValueError(f"{type(self).__name__}.{fn}: positions must have shape (T,)=({T},) or (B, T)=({B}, {T}) "
                             f"for x.shape={tuple(x.shape)}, got positions.shape={tuple(positions.shape)}")
        _check_position_values(f"{type(self).__name__}.{fn}", "positions", positions)
        return positions if positions.ndim == 1 else positions[:, None, :]  # (T,) or (B, 1, T)

    def forward(self, x: Tensor, positions=None) -> Tensor:
        """x ``(B, T, D)`` → ``(B, T, D)``; positions ``(T,)`` or ``(B, T)``, default ``arange(T)``."""
        self._check_x("forward", x)
        positions = self._positions("forward", x, positions)
        B, T, D = x.shape
        q, k, v = (self._heads(proj(x)) for proj in (self.q_proj, self.k_proj, self.v_proj))  # (B, H, T, hd)
        if self.rope:
            q, k = self._rotate(q, positions), self._rotate(k, positions)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)  # (B, H, T, hd)
        return self.out_proj(y.transpose(1, 2).reshape(B, T, D))

    def scores(self, x: Tensor, positions=None) -> Tensor:
        """The pre-softmax scores q_m·k_n/√hd, ``(B, H, T, T)`` (no mask): for figures and tests."""
        self._check_x("scores", x)
        positions = self._positions("scores", x, positions)
        q, k = self._heads(self.q_proj(x)), self._heads(self.k_proj(x))
        if self.rope:
            q, k = self._rotate(q, positions), self._rotate(k, positions)
        return q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)


class RoPEAttention(_Attention):
    """Standard attention with real Q/K/V projections (D² parameters each) and RoPE (interleaved pairs).

    With ``rope=False`` it is plain attention, for models with absolute or no positions.

    Shapes: ``x (B, T, D)`` → ``(B, T, D)``.

    >>> attn = RoPEAttention(16, 2)
    >>> attn(torch.randn(1, 5, 16)).shape, parameter_count(attn)     # 4 · 16²
    (torch.Size([1, 5, 16]), 1024)
    """


class CRoPEAttention(_Attention):
    """Attention with complex-linear Q/K/V (D²/2 real parameters each) and RoPE in complex form.

    Same interface as :class:`RoPEAttention`; the output projection is the same real D × D map.

    >>> attn = CRoPEAttention(16, 2)
    >>> attn(torch.randn(1, 5, 16)).shape, parameter_count(attn)     # 3 · 16²/2 + 16²
    (torch.Size([1, 5, 16]), 640)
    """

    def _make_projection(self, dim: int) -> nn.Module:
        return ComplexLinear(dim, dim)

    def _rotate(self, x: Tensor, positions) -> Tensor:
        return apply_rope_complex(x, positions, base=self.base, layout="interleaved")
