"""The kernel as a PyTorch custom operator, ``torch.ops.ropebook.rope``: what ``torch.compile`` sees.

Eager calls launch the kernel directly (``ropebook.kernels.autograd``: checks, then a plan remembered
per call signature). Neither of those can be traced: Dynamo stops at the launcher's storage and
pointer arithmetic, so a compiled model that called the kernel directly would break its graph in every
attention layer, or fail. While ``torch.compile`` traces (``torch.compiler.is_compiling()``), the same
public functions check their arguments as usual (on fake tensors: shapes, dtypes, devices) and then
call this operator instead. To the compiler it is one opaque node with a declared output (``register_fake``)
and a declared derivative (``register_autograd``: the same operator with ``conj=True``, a rotation by
−θ), so a whole model compiles into one graph, ``fullgraph=True`` included. When the compiled code runs,
the operator's body launches the kernel.

The operator is functional: it returns new tensors. Under ``torch.compile`` an ``inplace=True`` call is
that operator followed by a copy into q and k (one more buffer while it runs), which keeps autograd's
view of the mutation in PyTorch's hands.

Chapter: ``ch-rope-gpu``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ropebook.kernels import rope_triton

__all__ = ["rope", "call"]


def table_args(cos: Tensor | None, positions: Tensor | None) -> dict:
    """The launch's integers that follow from the tensors of angles and positions: the strides with which
    the kernel indexes cos/sin (per sequence, per position; sequence stride 0 when all share them), the
    number of positions they hold, and the strides of explicit positions. ``cos`` is a table ``(P, r/2)``
    or per sequence ``(B or 1, T, r/2)``; ``positions`` is ``(B, T)`` or, packed, ``(N,)``."""
    out = {}
    if cos is not None:
        if cos.ndim == 2:
            strides = (0, cos.stride(0))
        else:
            strides = (0 if cos.shape[0] == 1 else cos.stride(0), cos.stride(1))
        out.update(cos_strides=strides, n_pos=cos.shape[-2])
    if positions is not None:
        out.update(pos_strides=(0, positions.stride(0)) if positions.ndim == 1 else (positions.stride(0), positions.stride(1)))
    return out


def check_offset(fn: str, offset: int, n_tokens: int, n_seq: int, n_pos: int | None) -> None:
    """An int offset's range: non-negative, positions within int64, and within a table of ``n_pos``
    positions (None: angles computed in the kernel, any position)."""
    if offset < 0:
        raise ValueError(f"{fn}: offsets must be a non-negative int or an integer tensor of shape ({n_seq},), got offsets={offset!r}")
    if offset + n_tokens > 2**63:  # the kernel's positions are int64
        raise ValueError(f"{fn}: positions must fit in int64: offsets + tokens <= 2**63, got offsets={offset} and {n_tokens} tokens")
    if n_pos is not None and offset + n_tokens > n_pos:
        raise ValueError(f"{fn}: the table holds {n_pos} positions, got offsets={offset} and {n_tokens} tokens")


@torch.library.custom_op("ropebook::rope", mutates_args=())
def rope(q: Tensor, k: Tensor | None, cos: Tensor | None, sin: Tensor | None, turns: Tensor | None,
         positions: Tensor | None, offsets: Tensor | None, cu_seqlens: Tensor | None, half: int, layout: str,
         factor: float, offset: int, max_seqlen: int | None, conj: bool) -> tuple[Tensor, Tensor]:
    """Rotate q and k (k may be None: its output is then an empty tensor) into new tensors; the arguments
    are ``rope_triton.launch``'s, already checked by the public function that calls this. The features
    of q and k must be contiguous (the callers make them so)."""
    for name, x in (("q", q), ("k", k)):
        if x is not None and x.stride(-1) != 1:
            raise ValueError(f"ropebook::rope: {name} must have contiguous features, got {name}.stride()={x.stride()}")
    if cos is not None and (cos.stride() != sin.stride() or cos.stride(-1) != 1):
        cos, sin = cos.contiguous(), sin.contiguous()  # the kernel indexes sin with cos's strides
    if offset:  # only rope_qk passes one, and checks it here under torch.compile, where its value is symbolic
        n_tokens, n_seq = (max_seqlen, cu_seqlens.numel() - 1) if cu_seqlens is not None else (q.shape[-2], q.shape[0])
        check_offset("rope_qk", offset, n_tokens, n_seq, cos.shape[0] if cos is not None and cos.ndim == 2 else None)
    q_out = torch.empty_like(q)
    k_out = q.new_empty(0) if k is None else torch.empty_like(k)
    rope_triton.launch(q, q_out, k, None if k is None else k_out, half=half, layout=layout, conj=conj, cos=cos,
                       sin=sin, turns=turns, factor=factor, offset=offset, offsets=offsets, positions=positions,
                       cu_seqlens=cu_seqlens, max_seqlen=max_seqlen, **table_args(cos, positions))
    return q_out, k_out


@rope.register_fake
def _(q, k, cos, sin, turns, positions, offsets, cu_seqlens, half, layout, factor, offset, max_seqlen, conj):
    return torch.empty_like(q), (q.new_empty(0) if k is None else torch.empty_like(k))


def _setup_context(ctx, inputs, output):
    ctx.has_k = inputs[1] is not None
    ctx.saved = inputs[2:8]  # cos, sin, turns, positions, offsets, cu_seqlens: read again, not differentiated
    ctx.options = inputs[8:13]  # half, layout, factor, offset, max_seqlen


def _backward(ctx, gq, gk):
    """The rotation by −θ of the incoming gradients (a rotation's inverse is its transpose)."""
    gk = gk if ctx.has_k else None
    gq = gq if gq.stride(-1) == 1 else gq.contiguous()
    if gk is not None and gk.stride(-1) != 1:
        gk = gk.contiguous()
    gq_in, gk_in = rope(gq, gk, *ctx.saved, *ctx.options, True)
    return gq_in, (gk_in if ctx.has_k else None), None, None, None, None, None, None, None, None, None, None, None, None


rope.register_autograd(_backward, setup_context=_setup_context)


def call(q: Tensor, k: Tensor | None, inplace: bool, spec: dict) -> tuple[Tensor, Tensor | None]:
    """What ``_run`` does under ``torch.compile``: the operator on a launch's ``spec`` (features already
    contiguous), copied back into q and k for ``inplace``."""
    q_out, k_out = rope(q, k, spec.get("cos"), spec.get("sin"), spec.get("turns"), spec.get("positions"),
                        spec.get("offsets"), spec.get("cu_seqlens"), spec["half"], spec["layout"],
                        spec.get("factor", 1.0), spec.get("offset", 0), spec.get("max_seqlen"), spec.get("conj", False))
    if k is None:
        k_out = None
    if inplace:
        q.copy_(q_out)
        if k is not None:
            k.copy_(k_out)
        return q, k
    return q_out, k_out
