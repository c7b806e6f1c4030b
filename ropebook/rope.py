"""RoPE as pure functions: frequencies, angles, ``apply_rope`` in both layouts, the complex form.

Pair i of a head vector is rotated by the angle m·θ_i at position m, with
θ_i = base^(-2i/d). ``layout="half"`` pairs features i and i + d/2 (GPT-NeoX,
Hugging Face Llama); ``layout="interleaved"`` pairs 2i and 2i + 1 (RoFormer,
GPT-J, Meta Llama). Angles are formed in float64, the rotation runs in float32
(float64 for float64 inputs) and the result is cast back to the input dtype.
The cached ``nn.Module`` and the layout converters live in ``ropebook.rotary``, the
rotation's fast path in ``ropebook._rotation``.

Chapter: ``ch-rope-d-dims``.
"""

from __future__ import annotations

import importlib.util
import math
import numbers

import numpy as np
import torch
from torch import Tensor

from ropebook._rotation import apply_cos_sin as _apply_cos_sin
from ropebook._rotation import pairs as _pairs
from ropebook.scaling import _inv_freq
from ropebook._validate import (LAYOUTS, _as_tensor, _broadcasts_to, _check_base, _check_dim, _check_float_dtype,
                                _check_layout, _check_position_values, _check_scaling, _check_seq_len, _check_x,
                                _is_int, _packed_lengths)

__all__ = ["LAYOUTS", "rope_frequencies", "rope_angles", "rope_cos_sin", "packed_positions", "apply_rope", "apply_rope_complex"]

BACKENDS = ("auto", "torch", "triton")


def _wide(t: Tensor) -> Tensor:
    """int64 or float64: a sum of positions in int8 wraps, in float16 it rounds (angles in fp32 or better)."""
    return t.to(torch.float64 if t.is_floating_point() else torch.int64)


def _positions(fn: str, x: Tensor, positions, offset) -> Tensor:
    """Positions broadcastable to x.shape[:-1] (default arange(T)), plus offset, in int64 or float64."""
    target = tuple(x.shape[:-1])

    def per_sequence(name: str, shape) -> bool:
        """A 2-d (B, T) (or, for offset, (B, 1)) of Hugging Face's position_ids kind, for x of (B, H, T, D)."""
        widths = (x.shape[-2],) if name == "positions" else (x.shape[-2], 1)
        return len(shape) == 2 and x.ndim >= 4 and shape[0] == x.shape[0] and shape[1] in widths

    def per_sequence_view(name: str) -> str:
        return f"{name}[:, {', '.join(['None'] * (x.ndim - 3))}, :]"

    def check_shape(name: str, shape, rows_alike: bool = False) -> None:
        if not _broadcasts_to(shape, target):
            hint = ""
            if name == "offset" and len(shape) == 1 and x.ndim >= 3:  # one offset per sequence of (B, ..., T, D)
                hint = f"; for one offset per sequence pass offset[:, {', '.join(['None'] * (x.ndim - 2))}]"
            if per_sequence(name, shape):
                hint = f"; for one row of {name} per sequence (B, T) pass {per_sequence_view(name)}"
            raise ValueError(f"{fn}: {name} must broadcast to x.shape[:-1]={target}, "
                             f"got {name}.shape={tuple(shape)}{hint}")
        if per_sequence(name, shape) and 1 < x.shape[0] == x.shape[-3] and not rows_alike:
            # Hugging Face's (B, T) position_ids (or a (B, 1) start) for x of (B, H, T, D) with B == H:
            # broadcasting reads one row per head, not per sequence, and the result would be wrong without a word
            # (unless every row is one row, expanded: arange(T)[None].expand(B, T), either reading the same)
            raise ValueError(f"{fn}: {name}.shape={tuple(shape)} is ambiguous for x.shape={tuple(x.shape)}, "
                             f"where x.shape[0] == x.shape[-3] == {x.shape[0]}: broadcasting reads one row per head; "
                             f"pass {per_sequence_view(name)} for one row per sequence (Hugging Face's position_ids), "
                             f"or {name}[None] for one row per head")

    if positions is None:
        positions = torch.arange(x.shape[-2], device=x.device)  # (T,)
    else:
        positions = _as_tensor(fn, "positions", positions, x.device)
        _check_position_values(fn, "positions", positions)
        check_shape("positions", positions.shape, positions.ndim == 2 and positions.stride(0) == 0)
    if isinstance(offset, Tensor):
        _check_position_values(fn, "offset", offset)
        check_shape("offset", offset.shape, offset.ndim == 2 and offset.stride(0) == 0)
        if offset.ndim == 1 and x.ndim >= 3 and 1 < offset.shape[0] == x.shape[0] == x.shape[-2]:
            # broadcasting reads a (T,) offset per token; with B == T, one start per sequence (as
            # RotaryEmbedding reads a (B,) offset) would pass silently and come out wrong
            per_row = ", ".join(["None"] * (x.ndim - 2))
            raise ValueError(f"{fn}: offset.shape={tuple(offset.shape)} is ambiguous for x.shape={tuple(x.shape)}, "
                             f"where x.shape[0] == T == {x.shape[0]}: pass offset[:, {per_row}] for one start per sequence, "
                             f"or offset.view({', '.join(['1'] * (x.ndim - 2))}, -1) for one per token")
    elif not torch.compiler.is_compiling() and (  # traced, an int offset may be symbolic: no value to check
            isinstance(offset, (bool, np.bool_)) or not isinstance(offset, numbers.Real) or not math.isfinite(offset)):
        raise ValueError(f"{fn}: offset must be an int, a finite float or a tensor, got offset={offset!r}")
    if isinstance(offset, Tensor) or offset != 0:
        positions = _wide(positions) + (_wide(offset.to(positions.device)) if isinstance(offset, Tensor) else offset)
    return positions


# ----------------------------------------------------------------------------- frequencies and angles


def rope_frequencies(dim: int, *, base: float = 10000.0, scaling=None, seq_len=None, dtype=torch.float64, device=None) -> Tensor:
    """The frequencies θ_i = base^(-2i/dim), i = 0 … dim/2 − 1, after a scaling rule.

    Args:
        dim: number of rotated features d (even).
        base: the base b (> 1).
        scaling: a rule from ``ropebook.scaling`` or None.
        seq_len: current length, for rules that depend on it (``DynamicNTK``, ``LongRoPE``).
        dtype: float64 by default (exact); float32 reproduces Hugging Face's bits.

    Shapes: returns ``(dim // 2,)``.

    >>> rope_frequencies(8, base=10000.0)
    tensor([1.0000, 0.1000, 0.0100, 0.0010], dtype=torch.float64)
    """
    return _frequencies("rope_frequencies", dim, base, scaling, seq_len, dtype, device)


def _frequencies(fn: str, dim, base, scaling, seq_len, dtype, device) -> Tensor:
    """``rope_frequencies`` for a caller whose name the errors carry."""
    dim, base = _check_dim(fn, dim), _check_base(fn, base)  # an int and a float, numpy scalars included
    _check_float_dtype(fn, dtype, angles=True)  # angles in fp32 or better
    _check_scaling(fn, scaling)
    _check_seq_len(fn, seq_len)
    if scaling is None:
        return _inv_freq(dim, base, dtype, device)
    return scaling.inv_freq(dim, base=base, seq_len=seq_len, dtype=dtype, device=device)


def rope_angles(positions, inv_freq: Tensor) -> Tensor:
    """The angles m·θ_i in float64: shape ``positions.shape + (d/2,)``.

    >>> rope_angles(torch.tensor([0, 1, 2]), rope_frequencies(4))[:, 0]
    tensor([0., 1., 2.], dtype=torch.float64)
    """
    fn = "rope_angles"
    if not isinstance(inv_freq, Tensor) or inv_freq.ndim != 1 or not inv_freq.is_floating_point():
        got = (f"inv_freq.shape={tuple(inv_freq.shape)}, inv_freq.dtype={inv_freq.dtype}" if isinstance(inv_freq, Tensor)
               else f"type(inv_freq)={type(inv_freq).__name__}")
        raise ValueError(f"{fn}: inv_freq must be a 1-d floating-point tensor (d/2,), got {got}")
    positions = _as_tensor(fn, "positions", positions, inv_freq.device)
    _check_position_values(fn, "positions", positions)
    return _angles(positions, inv_freq)


def _angles(positions: Tensor, inv_freq: Tensor) -> Tensor:
    """``rope_angles`` for positions already checked."""
    return positions.to(torch.float64)[..., None] * inv_freq.to(torch.float64)  # (..., T, d/2)


def rope_cos_sin(positions, dim: int, *, base: float = 10000.0, scaling=None, seq_len=None, dtype=torch.float32):
    """cos(m·θ_i) and sin(m·θ_i), each times the rule's attention factor, cast to ``dtype``.

    The angles are formed in float64 first, so they stay exact at large positions. ``seq_len`` (the
    length ``DynamicNTK`` and ``LongRoPE`` read) defaults to ``max(positions) + 1``, as in ``apply_rope``.

    Shapes: positions ``(..., T)`` → cos, sin ``(..., T, dim // 2)``.

    >>> cos, sin = rope_cos_sin(torch.arange(3), 4)
    >>> cos.shape, cos.dtype
    (torch.Size([3, 2]), torch.float32)
    """
    fn = "rope_cos_sin"
    positions = _as_tensor(fn, "positions", positions)
    _check_position_values(fn, "positions", positions)
    _check_float_dtype(fn, dtype)
    _check_scaling(fn, scaling)
    seq_len = _seq_len(scaling, positions, seq_len)  # None stood for the training length: not what apply_rope used
    inv_freq = _frequencies(fn, dim, base, scaling, seq_len, torch.float64, positions.device)
    angles = _angles(positions, inv_freq)  # (..., T, d/2) float64
    factor = 1.0 if scaling is None else scaling.attention_factor
    cos, sin = angles.cos(), angles.sin()
    if factor != 1.0:
        cos, sin = cos * factor, sin * factor
    return cos.to(dtype), sin.to(dtype)


def packed_positions(cu_seqlens, *, offsets=0) -> Tensor:
    """The position of every token of a packed batch: 0, 1, … within each sequence, plus its offset.

    A packed (variable-length) batch lays its B sequences end to end, ``(H, N, D)`` with ``cu_seqlens``
    holding where each starts (flash-attn's and ``ropebook.kernels.rope_qk``'s convention). ``apply_rope``
    and ``RotaryEmbedding`` rotate it on any device, without Triton, given these positions:
    ``rb.apply_rope(q, packed_positions(cu_seqlens))``. Hugging Face's ``position_ids`` for a packed batch
    (``DataCollatorWithFlattening``) are these positions, ``(1, N)``.

    Args:
        cu_seqlens: the B + 1 starts, integers (a tensor, or a list): from 0, non-decreasing; the last is N.
        offsets: the position of each sequence's first token (decoding with a KV cache): an int, or B
            integers (a tensor or a list).

    Returns: int64 positions ``(N,)`` on cu_seqlens's device. Reads cu_seqlens's values (a synchronization
    on a GPU): N is the size of the result.

    >>> packed_positions(torch.tensor([0, 3, 3, 5]), offsets=[10, 20, 30]).tolist()
    [10, 11, 12, 30, 31]
    """
    fn = "packed_positions"
    cu = _as_tensor(fn, "cu_seqlens", cu_seqlens)
    if cu.is_floating_point() or cu.is_complex() or cu.dtype == torch.bool or cu.ndim != 1 or cu.numel() < 2:
        raise ValueError(f"{fn}: cu_seqlens must be B + 1 integers (B >= 1) of shape (B + 1,), "
                         f"got cu_seqlens.shape={tuple(cu.shape)}, cu_seqlens.dtype={cu.dtype}")
    lengths = _packed_lengths(fn, cu.tolist())
    B, N, dev = len(lengths), int(cu[-1]), cu.device
    sequence = torch.repeat_interleave(torch.arange(B, device=dev), torch.tensor(lengths, device=dev), output_size=N)
    positions = torch.arange(N, device=dev) - cu.to(torch.int64)[sequence]  # (N,): 0, 1, … in each sequence
    if isinstance(offsets, (bool, np.bool_)):
        raise ValueError(f"{fn}: offsets must be an int or B={B} integers, got offsets={offsets!r}")
    if _is_int(offsets):
        return positions + int(offsets)
    off = _as_tensor(fn, "offsets", offsets, dev)
    if off.is_floating_point() or off.is_complex() or off.dtype == torch.bool or off.shape not in ((B,), (1,)):
        raise ValueError(f"{fn}: offsets must be an int or one integer a sequence, shape (B,) = ({B},), "
                         f"got offsets.shape={tuple(off.shape)}, offsets.dtype={off.dtype}")
    return positions + off.to(torch.int64).expand(B)[sequence]


def _compute_dtype(x: Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _seq_len(scaling, positions: Tensor, seq_len):
    if seq_len is None and scaling is not None and scaling.uses_seq_len and positions.numel():
        seq_len = int(positions.max()) + 1  # as Hugging Face: max(position_ids) + 1
    return seq_len


def apply_rope(x: Tensor, positions=None, *, base: float = 10000.0, layout: str = "half", scaling=None,
               rotary_dim: int | None = None, offset=0, seq_len=None, backend: str = "torch") -> Tensor:
    """Rotate each pair of features of x by m·θ_i, where m is the token's position.

    Args:
        x: queries or keys, ``(..., T, D)``, any floating dtype.
        positions: integers, or float32/float64, broadcastable to ``(..., T)``; default ``arange(T)``.
            (float16 and bfloat16 are refused: they have rounded the positions already.)
        base: the base b > 1 of θ_i = b^(-2i/d).
        layout: ``"half"`` (pairs i, i + d/2) or ``"interleaved"`` (pairs 2i, 2i + 1).
        scaling: a rule from ``ropebook.scaling``; its attention factor multiplies cos and sin.
        rotary_dim: rotate only the first ``rotary_dim`` features (GPT-NeoX partial rotary).
        offset: added to the positions (an int, or a tensor broadcastable to ``(..., T)``).
        seq_len: length for ``DynamicNTK``/``LongRoPE``; default ``max(positions) + 1``.
        backend: ``"torch"``, ``"triton"`` (``ropebook.kernels``; CPU tensors only under
            ``TRITON_INTERPRET=1``) or ``"auto"`` (triton for CUDA tensors when it is installed).
            Either way cos and sin are formed afresh on every call; a model builds
            ``ropebook.kernels.rope_cache`` once and calls ``rope_qk`` (ch-rope-gpu).

    Shapes: ``x (B, H, T, D)``, ``positions (T,)`` or ``(B, 1, T)`` → ``(B, H, T, D)``. The tokens are
    x's second-to-last axis: a ``(B, T, H, D)`` tensor (flash-attn's and Liger's layout) is rotated as if
    each head were a position unless it is passed as ``x.transpose(1, 2)``. Hugging Face's ``position_ids``
    ``(B, T)`` are ``position_ids[:, None, :]`` here.

    Returns: a tensor with the shape, dtype and device of x.

    >>> x = torch.tensor([[1.0, 0.0], [1.0, 0.0]])   # (T=2, D=2): one pair per token
    >>> apply_rope(x)                               # position 1 turns (1, 0) by 1 radian
    tensor([[1.0000, 0.0000],
            [0.5403, 0.8415]])
    """
    fn = "apply_rope"
    r = _check_x(fn, x, rotary_dim)
    _check_layout(fn, layout)
    _check_base(fn, base)
    _check_scaling(fn, scaling)
    if backend not in BACKENDS:
        raise ValueError(f"{fn}: backend must be one of {BACKENDS}, got backend={backend!r}")
    _check_seq_len(fn, seq_len)
    positions = _positions(fn, x, positions, offset)  # broadcastable to (..., T)
    seq_len = _seq_len(scaling, positions, seq_len)
    cos, sin = rope_cos_sin(positions, r, base=base, scaling=scaling, seq_len=seq_len, dtype=_compute_dtype(x))
    if backend == "auto":  # the fused kernel where it runs natively and needs no gradient through cos/sin
        use = x.is_cuda and not cos.requires_grad and not torch.compiler.is_compiling()
        backend = "triton" if use and importlib.util.find_spec("triton") is not None else "torch"
    return _apply_cos_sin(x, cos, sin, layout=layout, rotary_dim=r, backend=backend)


def apply_rope_complex(x: Tensor, positions=None, *, base: float = 10000.0, layout: str = "half", scaling=None,
                       rotary_dim: int | None = None, offset=0, seq_len=None) -> Tensor:
    """RoPE in complex form: view pair i as the complex number x̃_i and multiply by e^{i·m·θ_i}.

    Same arguments and result as :func:`apply_rope`; slower, written for reading.

    >>> x = torch.randn(2, 5, 8)
    >>> torch.allclose(apply_rope_complex(x, layout="interleaved"), apply_rope(x, layout="interleaved"), atol=1e-6)
    True
    """
    fn = "apply_rope_complex"
    r = _check_x(fn, x, rotary_dim)
    _check_layout(fn, layout)
    _check_base(fn, base)
    _check_scaling(fn, scaling)
    _check_seq_len(fn, seq_len)
    positions = _positions(fn, x, positions, offset)
    seq_len = _seq_len(scaling, positions, seq_len)
    inv_freq = _frequencies(fn, r, base, scaling, seq_len, torch.float64, x.device)
    angles = _angles(positions, inv_freq)  # (..., T, r/2) float64
    factor = 1.0 if scaling is None else scaling.attention_factor
    rotation = torch.polar(torch.full_like(angles, factor), angles)  # e^{i m θ}, complex128
    xr = x[..., :r].to(_compute_dtype(x))
    a, b = _pairs(xr, layout)
    z = torch.complex(a, b) * rotation.to(torch.complex128 if xr.dtype == torch.float64 else torch.complex64)
    if layout == "half":
        y = torch.cat((z.real, z.imag), dim=-1)  # (..., T, r)
    else:
        y = torch.stack((z.real, z.imag), dim=-1).flatten(-2)
    return torch.cat((y.to(x.dtype), x[..., r:]), dim=-1)
