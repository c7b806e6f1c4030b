"""The fused RoPE kernel in Triton: one launch rotates q and k, reading and writing each once.

A program owns a tile of ``BLOCK_T`` tokens of one sequence and ``BLOCK_H``
heads of either q or k. It finds the tokens' positions (``arange`` plus a
per-sequence offset, explicit positions, or a packed batch's ``cu_seqlens``),
forms cos and sin once for the tile, and rotates every head in it.

cos and sin come one of two ways (``ANGLES``):

- ``0``, a table: read from ``cos``/``sin`` tensors (float32 built from
  float64 angles, or float64), indexed by position.
- ``1``, in the kernel: the frequency of pair i is stored as a 64-bit
  fixed-point fraction of a turn, ``turns_i = round(θ_i / 2π · 2^64)``. The
  integer product ``m · turns_i`` wraps modulo 2^64, which is the angle modulo
  2π, exactly, for any integer position. Only the final conversion to float
  rounds (≤ 2^-24 relative to π), so the angle error does not grow with m.

Inputs are loaded, upcast to the compute dtype (float32, float64 for float64
inputs), rotated, and stored in the input dtype. ``CONJ`` rotates by −θ (the
backward pass). This module holds the kernel and its launcher only; the
autograd wrapper and the public API are in ``ropebook.kernels.autograd``.

Chapter: ``ch-rope-gpu``.
"""

from __future__ import annotations

import math
import os

import torch
import triton
import triton.language as tl
from torch import Tensor

TWO_PI_OVER_2_64 = tl.constexpr(2.0 * math.pi / 2.0**64)  # radians per unit of the fixed-point turn


def _rope_kernel(
    Q, QO, K, KO,  # input and output pointers of q and k (output == input in place)
    COS, SIN, TURNS,  # a (P, r/2) table (ANGLES=0) or (r/2,) int64 fixed-point turns (ANGLES=1)
    POS, OFFSETS, CU_SEQLENS,  # (B, T) positions / (B,) offsets / (B + 1,) packed-batch starts
    n_q_blocks, HQ, HK, T,  # head blocks of q; heads of q and k; tokens per sequence
    sq_b, sq_h, sq_t, sqo_b, sqo_h, sqo_t,  # strides of q and its output (feature stride 1)
    sk_b, sk_h, sk_t, sko_b, sko_h, sko_t,  # strides of k and its output
    cs_b, cs_t, sp_b, sp_t,  # strides of the table (batch, position) and of the positions
    offset, factor,  # a scalar position offset; the scaling rule's attention factor
    HALF: tl.constexpr, TAIL: tl.constexpr,  # r/2 rotated pairs; D - r features passed through
    BLOCK_HALF: tl.constexpr, BLOCK_TAIL: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_H: tl.constexpr,
    INTERLEAVED: tl.constexpr, CONJ: tl.constexpr, ANGLES: tl.constexpr, POS_MODE: tl.constexpr,
    VARLEN: tl.constexpr, COPY_TAIL: tl.constexpr, COMPUTE: tl.constexpr,
):
    pid_t = tl.program_id(0)
    pid_h = tl.program_id(1)
    b = tl.program_id(2).to(tl.int64)

    # ---- which tokens: t counts within the sequence, row indexes memory
    t = pid_t * BLOCK_T + tl.arange(0, BLOCK_T)  # (BT,)
    if VARLEN:
        start = tl.load(CU_SEQLENS + b).to(tl.int64)
        end = tl.load(CU_SEQLENS + b + 1).to(tl.int64)
        t_mask = t < end - start
        row = start + t  # (BT,) token index in the packed tensor
    else:
        t_mask = t < T
        row = t.to(tl.int64)
    if POS_MODE == 0:  # positions are arange(T) + a scalar offset
        pos = t.to(tl.int64) + offset
    elif POS_MODE == 1:  # + a per-sequence offset (decoding with a KV cache)
        pos = t.to(tl.int64) + tl.load(OFFSETS + b).to(tl.int64)
    else:  # explicit positions
        pos = tl.load(POS + b * sp_b + row * sp_t, mask=t_mask, other=0).to(tl.int64)

    # ---- cos and sin for the tile, once for all its heads
    i = tl.arange(0, BLOCK_HALF)  # (BHALF,) pair index
    i_mask = i < HALF
    m2 = t_mask[:, None] & i_mask[None, :]  # (BT, BHALF)
    if ANGLES == 0:
        table = b * cs_b + pos[:, None] * cs_t + i[None, :]
        cos = tl.load(COS + table, mask=m2, other=0.0).to(COMPUTE)  # (BT, BHALF)
        sin = tl.load(SIN + table, mask=m2, other=0.0).to(COMPUTE)
    else:
        turns = tl.load(TURNS + i, mask=i_mask, other=0)  # (BHALF,) int64
        angle = (pos[:, None] * turns[None, :]).to(COMPUTE) * TWO_PI_OVER_2_64  # wraps mod 2^64 = mod 2π
        cos = tl.cos(angle) * factor
        sin = tl.sin(angle) * factor
    if CONJ:
        sin = -sin
    cos, sin = cos[None, :, :], sin[None, :, :]  # (1, BT, BHALF): the same for every head

    # ---- q or k, and which heads: the body is written once and compiled twice (``which`` is a constant)
    for which in tl.static_range(2):
        if which == 0:
            X, O, n_heads, h0 = Q, QO, HQ, pid_h * BLOCK_H
            sx_b, sx_h, sx_t, so_b, so_h, so_t = sq_b, sq_h, sq_t, sqo_b, sqo_h, sqo_t
        else:
            X, O, n_heads, h0 = K, KO, HK, (pid_h - n_q_blocks) * BLOCK_H
            sx_b, sx_h, sx_t, so_b, so_h, so_t = sk_b, sk_h, sk_t, sko_b, sko_h, sko_t
        if (pid_h < n_q_blocks) == (which == 0):
            h = (h0 + tl.arange(0, BLOCK_H)).to(tl.int64)  # (BH,)
            h_mask = h < n_heads
            x_base = X + b * sx_b + h[:, None, None] * sx_h + row[None, :, None] * sx_t  # (BH, BT, 1)
            o_base = O + b * so_b + h[:, None, None] * so_h + row[None, :, None] * so_t
            m3 = h_mask[:, None, None] & m2[None, :, :]  # (BH, BT, BHALF)

            if INTERLEAVED:  # pair i is features 2i, 2i + 1: one contiguous load, then split
                j = tl.arange(0, 2 * BLOCK_HALF)
                mj = h_mask[:, None, None] & t_mask[None, :, None] & (j < 2 * HALF)[None, None, :]
                xx = tl.load(x_base + j[None, None, :], mask=mj, other=0.0).to(COMPUTE)  # (BH, BT, 2·BHALF)
                x1, x2 = tl.split(tl.reshape(xx, (BLOCK_H, BLOCK_T, BLOCK_HALF, 2)))
                y1 = x1 * cos - x2 * sin
                y2 = x2 * cos + x1 * sin
                yy = tl.reshape(tl.join(y1, y2), (BLOCK_H, BLOCK_T, 2 * BLOCK_HALF))
                tl.store(o_base + j[None, None, :], yy.to(O.dtype.element_ty), mask=mj)
            else:  # pair i is features i, i + r/2
                x1 = tl.load(x_base + i[None, None, :], mask=m3, other=0.0).to(COMPUTE)  # (BH, BT, BHALF)
                x2 = tl.load(x_base + HALF + i[None, None, :], mask=m3, other=0.0).to(COMPUTE)
                y1 = x1 * cos - x2 * sin
                y2 = x2 * cos + x1 * sin
                tl.store(o_base + i[None, None, :], y1.to(O.dtype.element_ty), mask=m3)
                tl.store(o_base + HALF + i[None, None, :], y2.to(O.dtype.element_ty), mask=m3)

            if COPY_TAIL:  # partial rotary, out of place: features r … D-1 pass through
                c = 2 * HALF + tl.arange(0, BLOCK_TAIL)
                mc = h_mask[:, None, None] & t_mask[None, :, None] & (tl.arange(0, BLOCK_TAIL) < TAIL)[None, None, :]
                tail = tl.load(x_base + c[None, None, :], mask=mc)
                tl.store(o_base + c[None, None, :], tail, mask=mc)


def interpreting() -> bool:
    """Whether TRITON_INTERPRET asks for the CPU interpreter (read now, not at import)."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on")


_native = None if interpreting() else triton.jit(_rope_kernel)
_interpreted = None


def _kernel_for(device: torch.device):
    """The compiled kernel for CUDA tensors; the interpreter (TRITON_INTERPRET=1) for CPU tensors."""
    global _native, _interpreted
    if device.type == "cuda":
        if _native is None:  # the module was imported under TRITON_INTERPRET=1
            from triton.runtime.jit import JITFunction

            _native = JITFunction(_rope_kernel)
        return _native
    if not interpreting():
        raise RuntimeError(
            f"ropebook.kernels: the Triton kernel runs on CUDA tensors, or on CPU tensors only under "
            f"TRITON_INTERPRET=1; got tensors on device={device.type!r} and "
            f"TRITON_INTERPRET={os.environ.get('TRITON_INTERPRET')!r}"
        )
    if _interpreted is None:
        from triton.runtime.interpreter import InterpretedFunction

        _interpreted = InterpretedFunction(_rope_kernel)
    return _interpreted


def default_config(T: int, n_heads: int, table: bool) -> tuple[int, int, int]:
    """(BLOCK_T, BLOCK_H, num_warps): one token and 8 or 16 heads a program, from a sweep on an H100 (ch-rope-gpu)."""
    block_h = 16 if table and T > 1 else 8
    return 1, min(block_h, triton.next_power_of_2(max(n_heads, 1))), 4


def launch(q: Tensor, q_out: Tensor, k: Tensor | None, k_out: Tensor | None, *, half: int, layout: str,
           conj: bool = False, cos: Tensor | None = None, sin: Tensor | None = None, cos_strides=(0, 0),
           turns: Tensor | None = None, factor: float = 1.0, offset: int = 0, offsets: Tensor | None = None,
           positions: Tensor | None = None, pos_strides=(0, 0), cu_seqlens: Tensor | None = None,
           max_seqlen: int | None = None, config: tuple[int, int, int] | None = None) -> None:
    """Launch the kernel. No checks: ``ropebook.kernels.autograd`` validates and prepares.

    Shapes: q, q_out ``(B, Hq, T, D)`` or, packed, ``(Hq, N, D)`` with ``cu_seqlens (B + 1,)``; k likewise
    with Hk heads; feature stride 1. The first ``2 * half`` features are rotated.
    """
    varlen = cu_seqlens is not None
    if varlen:
        B, T = cu_seqlens.numel() - 1, max_seqlen
        qs = (0, q.stride(0), q.stride(1))
        qos = (0, q_out.stride(0), q_out.stride(1))
        HQ, D = q.shape[0], q.shape[-1]
    else:
        B, HQ, T, D = q.shape
        qs, qos = (q.stride(0), q.stride(1), q.stride(2)), (q_out.stride(0), q_out.stride(1), q_out.stride(2))
    if k is None:
        k, k_out, ks, kos, HK = q, q_out, qs, qos, 0
    else:
        HK = k.shape[0] if varlen else k.shape[1]
        if varlen:
            ks, kos = (0, k.stride(0), k.stride(1)), (0, k_out.stride(0), k_out.stride(1))
        else:
            ks = (k.stride(0), k.stride(1), k.stride(2))
            kos = (k_out.stride(0), k_out.stride(1), k_out.stride(2))
    block_t, block_h, num_warps = config or default_config(T, max(HQ, HK), cos is not None)
    n_q_blocks = triton.cdiv(HQ, block_h)
    grid = (triton.cdiv(T, block_t), n_q_blocks + triton.cdiv(HK, block_h), B)
    tail = D - 2 * half
    compute = tl.float64 if q.dtype == torch.float64 else tl.float32
    angles = 0 if cos is not None else 1
    pos_mode = 2 if positions is not None else (1 if offsets is not None else 0)
    dummy = q  # any pointer for arguments a mode does not read
    _kernel_for(q.device)[grid](
        q, q_out, k, k_out,
        cos if cos is not None else dummy, sin if sin is not None else dummy, turns if turns is not None else dummy,
        positions if positions is not None else dummy, offsets if offsets is not None else dummy,
        cu_seqlens if varlen else dummy,
        n_q_blocks, HQ, HK, T, *qs, *qos, *ks, *kos, *cos_strides, *pos_strides, int(offset), float(factor),
        HALF=half, TAIL=tail, BLOCK_HALF=triton.next_power_of_2(half),
        BLOCK_TAIL=triton.next_power_of_2(max(tail, 1)), BLOCK_T=block_t, BLOCK_H=block_h,
        INTERLEAVED=layout == "interleaved", CONJ=conj, ANGLES=angles, POS_MODE=pos_mode, VARLEN=varlen,
        COPY_TAIL=tail > 0 and q_out.data_ptr() != q.data_ptr(), COMPUTE=compute, num_warps=num_warps,
    )
