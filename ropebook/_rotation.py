"""The rotation itself, given cos and sin: the autograd path, the no-grad fast path and the Triton hook.

Private to ``ropebook``: ``apply_rope`` and ``RotaryEmbedding`` form cos/sin (float64 angles,
cast to the compute dtype) and call :func:`apply_cos_sin`. Chapter: ``ch-rope-gpu``.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["apply_cos_sin", "pairs"]


def pairs(x: Tensor, layout: str) -> tuple[Tensor, Tensor]:
    """Views of the first and second feature of every pair: (..., T, r/2) each."""
    if layout == "half":
        return x.chunk(2, dim=-1)  # features i and i + r/2
    return x[..., 0::2], x[..., 1::2]  # features 2i and 2i + 1


def _rotate(x: Tensor, cos: Tensor, sin: Tensor, layout: str) -> Tensor:
    """Rotate every pair of x (..., T, r) by cos/sin (..., T, r/2), computing in cos.dtype."""
    needs_graph = torch.is_grad_enabled() and (x.requires_grad or cos.requires_grad)
    if not needs_graph and not torch.compiler.is_compiling():
        return _rotate_no_grad(x, cos, sin, layout)
    x1, x2 = pairs(x, layout)
    y1 = x1 * cos - x2 * sin  # (..., T, r/2), promoted to cos.dtype
    y2 = x2 * cos + x1 * sin
    if layout == "half":
        return torch.cat((y1, y2), dim=-1)
    return torch.stack((y1, y2), dim=-1).flatten(-2)


_CPU_BLOCK_PER_THREAD = 1 << 18  # elements per thread in one CPU block: its fp32 temporaries stay in cache


def _rotate_no_grad(x: Tensor, cos: Tensor, sin: Tensor, layout: str) -> Tensor:
    """The same maths in fewer passes over memory (no autograd); returns x.dtype.

    Multiply-adds write into one output. For fp16/bf16 inputs on the CPU the work goes
    in blocks of about ``_CPU_BLOCK_PER_THREAD`` elements per thread, so that the fp32
    result of a block is a cache-resident temporary: main memory sees x and the output
    once. (Measured on 2 and 16 idle cores; on a heavily oversubscribed machine every
    block pays a thread-synchronisation delay.)
    """
    *lead, T, r = x.shape
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device)  # (..., T, r)
    if x.numel() == 0:
        return out
    if x.dtype == cos.dtype:  # fp32/fp64: no temporary at all, so nothing to gain from blocks
        _rotate_into(x, cos, sin, out, layout)
        return out
    xs, os_ = x.reshape(-1, T, r), out.view(-1, T, r)  # (N, T, r)
    cs = cos.expand(*lead, T, r // 2).reshape(-1, T, r // 2)  # (N, T, r/2); a view when cos is shared
    ss = sin.expand(*lead, T, r // 2).reshape(-1, T, r // 2)
    N, block = xs.shape[0], _CPU_BLOCK_PER_THREAD * torch.get_num_threads()
    if x.device.type != "cpu" or N * T * r <= block:
        rows, tokens = N, T  # one block
    elif T * r <= block:
        rows, tokens = block // (T * r), T  # several whole rows per block
    else:
        rows, tokens = 1, max(1, block // r)  # part of one row per block
    scratch = None
    for n in range(0, N, rows):
        for t in range(0, T, tokens):
            xb, ob = xs[n : n + rows, t : t + tokens], os_[n : n + rows, t : t + tokens]
            cb, sb = cs[n : n + rows, t : t + tokens], ss[n : n + rows, t : t + tokens]
            if scratch is None:
                scratch = torch.empty(xb.shape, dtype=cos.dtype, device=x.device)  # fp32 result of one block
            of = scratch[: xb.shape[0], : xb.shape[1]]
            _rotate_into(xb, cb, sb, of, layout)  # reads fp16/bf16, computes and writes fp32
            ob.copy_(of)  # rounds once, to x.dtype
    return out


def _rotate_into(x: Tensor, cos: Tensor, sin: Tensor, out: Tensor, layout: str) -> None:
    x1, x2 = pairs(x, layout)
    o1, o2 = pairs(out, layout)
    torch.mul(x1, cos, out=o1).addcmul_(x2, sin, value=-1)  # x1·cos − x2·sin
    torch.mul(x2, cos, out=o2).addcmul_(x1, sin)  # x2·cos + x1·sin


def apply_cos_sin(x: Tensor, cos: Tensor, sin: Tensor, *, layout: str, rotary_dim: int, backend: str = "torch") -> Tensor:
    """Rotate the first rotary_dim features of x (..., T, D); the rest pass through."""
    if backend == "triton":
        return _apply_triton(x, cos, sin, layout=layout, rotary_dim=rotary_dim)
    if rotary_dim == x.shape[-1]:
        return _rotate(x, cos, sin, layout).to(x.dtype)
    rotated = _rotate(x[..., :rotary_dim], cos, sin, layout)  # (..., T, r)
    return torch.cat((rotated.to(x.dtype), x[..., rotary_dim:]), dim=-1)


def _apply_triton(x, cos, sin, *, layout, rotary_dim):
    """The hook for the fused kernel in ``ropebook.kernels`` (owned by the kernel chapter)."""
    try:
        from ropebook import kernels
    except ImportError as err:
        raise RuntimeError(f"apply_rope: backend='triton' needs ropebook.kernels, which could not be imported ({err})") from err
    if not hasattr(kernels, "apply_cos_sin"):
        raise RuntimeError("apply_rope: backend='triton' is not wired yet: ropebook.kernels has no apply_cos_sin")
    return kernels.apply_cos_sin(x, cos, sin, layout=layout, rotary_dim=rotary_dim)
