"""Softmax attention and linear attention, with a relative position encoding on queries and keys.

Softmax attention is the reference. Linear attention replaces exp(qᵀk) by a
kernel φ(q)ᵀφ(k) with a positive feature map φ (1 + elu by default,
Katharopoulos et al. 2020). A relative encoding ``encoding(x, positions)``
(RoPE, or any member of ``ropebook.lrpe``) then acts on φ(q) and φ(k) in the
numerator only, as in RoFormer eq. (19); the denominator keeps the plain
φ(q)ᵀφ(k), so it stays positive:

    out_m = Σ_n (M_m φ(q_m))ᵀ (M_n φ(k_n)) v_n  /  Σ_n φ(q_m)ᵀ φ(k_n)

``linear_attention`` evaluates this in O(T) time (causal: chunk by chunk,
carrying one state S = Σ (M_n φ(k_n)) v_nᵀ and z = Σ φ(k_n)); the quadratic
``linear_attention_weights`` builds the T×T weights for reading and testing.
Half-precision inputs are computed in float32 and cast back.

Chapter: ``ch-linear-attention``.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ropebook._validate import _as_tensor, _check_bool, _check_position_values, _check_positive_number

__all__ = ["FEATURE_MAPS", "feature_map", "softmax_attention", "linear_attention_weights",
           "linear_attention_quadratic", "linear_attention"]

FEATURE_MAPS: dict[str, Callable[[Tensor], Tensor]] = {
    "elu": lambda x: F.elu(x) + 1.0,  # 1 + elu(x) > 0 (Katharopoulos et al. 2020)
    "relu": F.relu,  # ≥ 0; a row of zeros gives a zero denominator, which linear attention refuses
}


def feature_map(x: Tensor, name: str = "elu") -> Tensor:
    """φ(x) applied element-wise: ``"elu"`` (1 + elu, always positive) or ``"relu"``.

    >>> feature_map(torch.tensor([-1.0, 0.0, 2.0]))
    tensor([0.3679, 1.0000, 3.0000])
    """
    if name not in FEATURE_MAPS:
        raise ValueError(f"feature_map: name must be one of {tuple(FEATURE_MAPS)}, got name={name!r}")
    if not isinstance(x, Tensor) or not x.is_floating_point():
        got = f"x.dtype={x.dtype}" if isinstance(x, Tensor) else f"type(x)={type(x).__name__}"
        raise ValueError(f"feature_map: x must be a floating-point tensor, got {got}")
    return FEATURE_MAPS[name](x)


# ----------------------------------------------------------------------------- checks


def _check_qkv(fn: str, q, k, v) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        if t is None and name == "v":
            continue
        if not isinstance(t, Tensor) or t.ndim < 2 or not t.is_floating_point():
            got = f"{name}.shape={tuple(t.shape)}, {name}.dtype={t.dtype}" if isinstance(t, Tensor) else f"type({name})={type(t).__name__}"
            raise ValueError(f"{fn}: {name} must be a floating-point tensor of shape (..., T, D), got {got}")
    if q.shape != k.shape:
        raise ValueError(f"{fn}: q and k must have the same shape (..., T, D), got q.shape={tuple(q.shape)}, k.shape={tuple(k.shape)}")
    if v is not None and v.shape[:-1] != k.shape[:-1]:
        raise ValueError(f"{fn}: v must have shape (..., T, Dv) with (..., T) = {tuple(k.shape[:-1])}, got v.shape={tuple(v.shape)}")
    if v is not None and not (q.dtype == k.dtype == v.dtype and q.device == k.device == v.device):
        raise ValueError(f"{fn}: q, k, v must share dtype and device, got {q.dtype}/{k.dtype}/{v.dtype} on {q.device}/{k.device}/{v.device}")


def _positions(fn: str, x: Tensor, positions) -> Tensor:
    T = x.shape[-2]
    if positions is None:
        return torch.arange(T, device=x.device)  # (T,)
    positions = _as_tensor(fn, "positions", positions, x.device)
    _check_position_values(fn, "positions", positions)  # integers or finite floats, even when no encoding reads them
    if positions.shape != (T,):
        raise ValueError(f"{fn}: positions must have shape (T,)=({T},), got positions.shape={tuple(positions.shape)}")
    return positions


def _check_encoding(fn: str, encoding) -> None:
    if isinstance(encoding, type):
        raise ValueError(f"{fn}: encoding must be an instance, such as ropebook.lrpe.Rotation(d), not a class, "
                         f"got encoding={encoding.__module__}.{encoding.__qualname__}")
    if encoding is not None and not callable(encoding):
        raise ValueError(f"{fn}: encoding must be None or a callable (x, positions) -> x such as "
                         f"ropebook.lrpe.Rotation(d), got encoding={encoding!r}")


def _compute_dtype(x: Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _features(fn, q, k, feature_map_name, encoding, positions):
    """φ(q), φ(k) in the compute dtype, and their encoded copies M_m φ(q_m), M_n φ(k_n)."""
    if feature_map_name not in FEATURE_MAPS:
        raise ValueError(f"{fn}: feature_map must be one of {tuple(FEATURE_MAPS)}, got feature_map={feature_map_name!r}")
    _check_encoding(fn, encoding)
    dtype = _compute_dtype(q)
    fq = FEATURE_MAPS[feature_map_name](q.to(dtype))  # (..., T, D)
    fk = FEATURE_MAPS[feature_map_name](k.to(dtype))
    positions = _positions(fn, q, positions)  # validated even when unused, so a wrong shape never passes silently
    if encoding is None:
        return fq, fk, fq, fk
    return fq, fk, encoding(fq, positions), encoding(fk, positions)


def _check_denominator(fn: str, denominator: Tensor, feature_map_name: str) -> None:
    """Refuse a zero denominator φ(q_m)ᵀ Σ_n φ(k_n) (``denominator``: (..., T, 1)), which would give NaN or ±inf
    outputs: φ = relu has zero rows, and 1 + elu(x) = eˣ underflows to 0 for very negative x (below about −104
    in float32). One read of the device a call; skipped while a compiler traces."""
    if torch.compiler.is_compiling():
        return
    zero = denominator == 0
    if bool(zero.any()):
        token = int(zero.nonzero()[0, -2])
        raise ValueError(f"{fn}: the denominator φ(q_m)ᵀ Σ_n φ(k_n) is 0 for the query at token m={token} with "
                         f"feature_map={feature_map_name!r} (all-zero features of q_m or of every key it sees), which "
                         f"would divide by zero; use feature_map='elu' or inputs of moderate size")


def _check_chunk(fn: str, chunk_size) -> None:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size <= 0:
        raise ValueError(f"{fn}: chunk_size must be a positive integer, got chunk_size={chunk_size!r}")


# ----------------------------------------------------------------------------- softmax (the reference)


def softmax_attention(q: Tensor, k: Tensor, v: Tensor, *, causal: bool = False, encoding=None,
                      positions=None, scale: float | None = None) -> Tensor:
    """softmax(qᵀk / √d) v, with the encoding applied to q and k first (RoPE: ``encoding=lrpe.Rotation(d)``).

    Args:
        q, k: ``(..., T, D)``; v: ``(..., T, Dv)``.
        causal: query m sees keys n ≤ m only.
        encoding: a callable ``(x, positions) -> x`` such as ``ropebook.lrpe.Rotation``; None for none.
        positions: ``(T,)``, default ``arange(T)``.
        scale: a positive finite number; default ``1 / sqrt(D)``.

    Shapes: ``(B, H, T, D)``, ``(B, H, T, Dv)`` → ``(B, H, T, Dv)``.

    >>> q = k = torch.zeros(1, 3, 2); v = torch.arange(3.0).reshape(1, 3, 1)
    >>> softmax_attention(q, k, v, causal=True).flatten()   # equal scores: running means of v
    tensor([0.0000, 0.5000, 1.0000])
    """
    fn = "softmax_attention"
    _check_qkv(fn, q, k, v)
    _check_bool(fn, causal, "causal")
    _check_encoding(fn, encoding)
    _check_positive_number(fn, scale, "scale", optional=True)
    dtype = _compute_dtype(q)
    q, k, v_ = q.to(dtype), k.to(dtype), v.to(dtype)
    positions = _positions(fn, q, positions)
    if encoding is not None:
        q, k = encoding(q, positions), encoding(k, positions)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = (q @ k.transpose(-1, -2)) * scale  # (..., T, T)
    if causal:
        T = q.shape[-2]
        future = torch.ones(T, T, dtype=torch.bool, device=q.device).triu(1)  # (T, T)
        scores = scores.masked_fill(future, float("-inf"))
    return (scores.softmax(dim=-1) @ v_).to(v.dtype)  # (..., T, Dv)


# ----------------------------------------------------------------------------- linear, quadratic form


def linear_attention_weights(q: Tensor, k: Tensor, *, causal: bool = False, feature_map: str = "elu",
                             encoding=None, positions=None) -> Tensor:
    """The T×T weights a_mn = (M_m φ(q_m))ᵀ(M_n φ(k_n)) / Σ_n' φ(q_m)ᵀφ(k_n'), so that out = a v.

    With an encoding the rows need not sum to 1 and entries can be negative: the
    weights are no longer a probability distribution (see the chapter).

    Shapes: ``(..., T, D)`` → ``(..., T, T)`` in float32 (float64 for float64 input).

    >>> a = linear_attention_weights(torch.randn(5, 4), torch.randn(5, 4), causal=True)
    >>> torch.allclose(a.sum(-1), torch.ones(5)), bool((a.triu(1) == 0).all())
    (True, True)
    """
    fn = "linear_attention_weights"
    _check_qkv(fn, q, k, None)
    _check_bool(fn, causal, "causal")
    fq, fk, eq, ek = _features(fn, q, k, feature_map, encoding, positions)
    numerator = eq @ ek.transpose(-1, -2)  # (..., T, T)
    denominator = fq @ fk.transpose(-1, -2)  # (..., T, T), entries > 0 for φ = 1 + elu
    if causal:
        T = q.shape[-2]
        past = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
        numerator, denominator = numerator * past, denominator * past
    denominator = denominator.sum(-1, keepdim=True)  # (..., T, 1)
    _check_denominator(fn, denominator, feature_map)
    return numerator / denominator


def linear_attention_quadratic(q: Tensor, k: Tensor, v: Tensor, *, causal: bool = False, feature_map: str = "elu",
                               encoding=None, positions=None) -> Tensor:
    """Linear attention by its O(T²) definition: ``linear_attention_weights(q, k) @ v``.

    >>> q, k, v = torch.randn(3, 6, 4, dtype=torch.float64).unbind(0)
    >>> torch.allclose(linear_attention_quadratic(q, k, v, causal=True), linear_attention(q, k, v, causal=True))
    True
    """
    _check_qkv("linear_attention_quadratic", q, k, v)
    _check_bool("linear_attention_quadratic", causal, "causal")
    a = linear_attention_weights(q, k, causal=causal, feature_map=feature_map, encoding=encoding, positions=positions)
    return (a @ v.to(a.dtype)).to(v.dtype)  # (..., T, Dv)


# ----------------------------------------------------------------------------- linear, O(T)


def linear_attention(q: Tensor, k: Tensor, v: Tensor, *, causal: bool = False, feature_map: str = "elu",
                     encoding=None, positions=None, chunk_size: int = 64) -> Tensor:
    """Linear attention in O(T) time: the encoding in the numerator only (RoFormer eq. 19).

    Non-causal: S = Σ_n (M_n φ(k_n)) v_nᵀ and z = Σ_n φ(k_n) once, then
    out_m = (M_m φ(q_m))ᵀ S / φ(q_m)ᵀ z. Causal: the same sums over n ≤ m, taken
    chunk by chunk; inside a chunk of ``chunk_size`` tokens the masked quadratic
    form, across chunks the running state (S, z) of size D×Dv + D, which is all
    that is carried from one chunk to the next.

    Args:
        q, k: ``(..., T, D)``; v: ``(..., T, Dv)``.
        causal: query m sees keys n ≤ m only.
        feature_map: ``"elu"`` (1 + elu) or ``"relu"``; a zero denominator (a query or every key it sees
            with all-zero features) raises ValueError.
        encoding: ``(x, positions) -> x``, e.g. a member of ``ropebook.lrpe``; applied to φ(q), φ(k).
        positions: ``(T,)``, default ``arange(T)``.
        chunk_size: tokens per chunk in the causal form (time O(T·(chunk_size·(D + Dv) + D·Dv))).

    Shapes: ``(B, H, T, D)``, ``(B, H, T, Dv)`` → ``(B, H, T, Dv)``.

    >>> q = k = torch.zeros(1, 3, 2); v = torch.arange(3.0).reshape(1, 3, 1)
    >>> linear_attention(q, k, v, causal=True).flatten()   # φ(0) = 1 everywhere: running means
    tensor([0.0000, 0.5000, 1.0000])
    """
    fn = "linear_attention"
    _check_qkv(fn, q, k, v)
    _check_bool(fn, causal, "causal")
    _check_chunk(fn, chunk_size)
    fq, fk, eq, ek = _features(fn, q, k, feature_map, encoding, positions)  # (..., T, D) each
    vv = v.to(fq.dtype)  # (..., T, Dv)
    if not causal:
        S = ek.transpose(-1, -2) @ vv  # (..., D, Dv)
        z = fk.sum(dim=-2, keepdim=True)  # (..., 1, D)
        denominator = (fq * z).sum(-1, keepdim=True)  # (..., T, 1)
        _check_denominator(fn, denominator, feature_map)
        return ((eq @ S) / denominator).to(v.dtype)
    T, D, Dv = q.shape[-2], fq.shape[-1], v.shape[-1]
    S = fq.new_zeros(*q.shape[:-2], D, Dv)  # (..., D, Dv): Σ_{n < chunk} (M_n φ(k_n)) v_nᵀ
    z = fq.new_zeros(*q.shape[:-2], 1, D)  # (..., 1, D): Σ_{n < chunk} φ(k_n)
    out = torch.empty(*v.shape, dtype=fq.dtype, device=v.device)  # (..., T, Dv)
    denominators = []  # (..., C, 1) each: φ(q_m)ᵀ Σ_{n ≤ m} φ(k_n)
    for start in range(0, T, chunk_size):
        sl = slice(start, min(start + chunk_size, T))
        cq, ck, ceq, cek, cv = fq[..., sl, :], fk[..., sl, :], eq[..., sl, :], ek[..., sl, :], vv[..., sl, :]  # (..., C, ·)
        past = torch.ones(cq.shape[-2], cq.shape[-2], dtype=torch.bool, device=q.device).tril()  # (C, C)
        within = (ceq @ cek.transpose(-1, -2)) * past  # (..., C, C)
        numerator = within @ cv + ceq @ S  # (..., C, Dv)
        denominator = (cq * (ck.cumsum(dim=-2) + z)).sum(-1, keepdim=True)  # (..., C, 1)
        denominators.append(denominator)
        out[..., sl, :] = numerator / denominator
        S = S + cek.transpose(-1, -2) @ cv
        z = z + ck.sum(dim=-2, keepdim=True)
    if denominators:  # T = 0 has none
        _check_denominator(fn, torch.cat(denominators, dim=-2), feature_map)  # (..., T, 1): once, not a chunk
    return out.to(v.dtype)
