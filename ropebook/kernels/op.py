"""The kernel as a PyTorch custom operator, ``torch.ops.ropebook.rope``: what ``torch.compile`` sees.

Eager calls launch the kernel directly (``ropebook.kernels.autograd``: checks, then a plan remembered
per call signature). Neither of those can be traced: Dynamo stops at the launcher's storage and
pointer arithmetic, so a compiled model that called the kernel directly would break its graph in every
attention layer, or fail. While ``torch.compile`` traces (``torch.compiler.is_compiling()``), the same
public functions check their arguments as usual (on fake tensors: shapes, dtypes, devices) and then
call this operator instead. To the compiler it is one opaque node with a declared output (a fake
implementation, ``register_fake``) and a declared derivative (an autograd kernel: the same operator
with ``conj=True``, a rotation by −θ), so a whole model compiles into one graph, ``fullgraph=True``
included. When the compiled code runs, the operator's body launches the kernel.

Its body keeps a launch plan per signature of its arguments, as the eager path does, and its autograd
kernel hands plain tensors straight to that body: code compiled by Inductor calls the operator in every
layer, so its host time counts as the eager path's does (``ropebook.kernels.bench.host_to_launch_us``).

The operator is functional: it returns new tensors. Under ``torch.compile`` an ``inplace=True`` call is
that operator followed by a copy into q and k (one more buffer while it runs), which keeps autograd's
view of the mutation in PyTorch's hands.

Chapter: ``ch-rope-gpu``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ropebook._validate import _packed_lengths
from ropebook.kernels import rope_triton

__all__ = ["rope", "call", "check_offset", "check_cu_seqlens", "table_args", "meta"]


def table_args(cos: Tensor | None, positions: Tensor | None) -> dict:
    """The launch's integers that follow from the tensors of angles and positions: the strides with which
    the kernel indexes cos/sin (per sequence, per position, per pair; sequence stride 0 when all share them),
    the number of positions they hold, and the strides of explicit positions. ``cos`` is a table ``(P, r/2)``
    or per sequence ``(B or 1, T, r/2)``; ``positions`` is ``(B, T)`` or, packed, ``(N,)``."""
    out = {}
    if cos is not None:
        if cos.ndim == 2:
            strides = (0, cos.stride(0), cos.stride(1))
        else:
            strides = (0 if cos.shape[0] == 1 else cos.stride(0), cos.stride(1), cos.stride(2))
        out.update(cos_strides=strides, n_pos=cos.shape[-2])
    if positions is not None:
        out.update(pos_strides=(0, positions.stride(0)) if positions.ndim == 1 else (positions.stride(0), positions.stride(1)))
    return out


def check_offset(fn: str, offset: int, n_tokens: int, n_seq: int, n_pos: int | None, unread: bool = False) -> None:
    """An int offset's range: non-negative, positions within int64, and within a table of ``n_pos``
    positions (None: angles computed in the kernel, any position). ``unread``: ``n_tokens`` is a packed
    batch's ``max_seqlen``, taken on trust because cu_seqlens is on the device (its lengths unread)."""
    if offset < 0:
        raise ValueError(f"{fn}: offsets must be a non-negative int or an integer tensor of shape ({n_seq},), got offsets={offset!r}")
    tokens = (f"max_seqlen={n_tokens} (cu_seqlens is on the device and not read, so max_seqlen bounds the positions: "
              f"pass the true longest length)" if unread else f"{n_tokens} tokens")
    if offset + n_tokens > 2**63:  # the kernel's positions are int64
        raise ValueError(f"{fn}: positions must fit in int64: offsets + tokens <= 2**63, got offsets={offset} and {tokens}")
    if n_pos is not None and offset + n_tokens > n_pos:
        raise ValueError(f"{fn}: the table holds {n_pos} positions, got offsets={offset} and {tokens}")


def check_cu_seqlens(fn: str, cu_seqlens: Tensor, n_tokens: int | None, max_seqlen=None, *,
                     n_heads: int | None = None) -> int:
    """Packed starts: from 0, non-decreasing, ending at the token count, and no sequence longer than an int
    ``max_seqlen``; returns the longest length. Reads the values: a device synchronization for a CUDA tensor.
    ``n_heads``, q.shape[0]: when the starts end there instead, q is flash-attn's (N, H, D), and the message
    says so."""
    lengths = _packed_lengths(fn, cu_seqlens.flatten().tolist(), n_tokens, n_heads)
    longest = max(lengths, default=0)
    if type(max_seqlen) is int and max_seqlen < longest:
        raise ValueError(f"{fn}: max_seqlen must be at least the longest packed sequence, {longest} tokens "
                         f"(from cu_seqlens), got max_seqlen={max_seqlen}")
    return longest


SCHEMA = ("rope(Tensor q, Tensor? k, Tensor? cos, Tensor? sin, Tensor? turns, Tensor? positions, Tensor? offsets, "
          "Tensor? cu_seqlens, SymInt half, str layout, float factor, SymInt offset, SymInt? max_seqlen, bool conj) "
          "-> (Tensor, Tensor)")
# Defined with torch.library.Library rather than the @custom_op decorator: the same schema and fake, and
# an autograd kernel of our own (_autograd), with less Python between the dispatcher and the launch. On
# a 2-core AMD EPYC VM, a decoding step's call cost about 65 µs of host time through @custom_op (with no
# plans) and 24-30 µs this way (host_to_launch_us's last row; the body alone, about 15)
_lib = torch.library.Library("ropebook", "DEF")
_lib.define(SCHEMA)
PLANS_MAX = 512  # signatures kept, as in ropebook.kernels.autograd
_plans: dict = {}  # the operator's arguments but the data and the offset -> rope_triton.Plan


def rope(q: Tensor, k: Tensor | None, cos: Tensor | None, sin: Tensor | None, turns: Tensor | None,
         positions: Tensor | None, offsets: Tensor | None, cu_seqlens: Tensor | None, half: int, layout: str,
         factor: float, offset: int, max_seqlen: int | None, conj: bool) -> tuple[Tensor, Tensor]:
    """The operator's body: rotate q and k (k may be None: its output is then an empty tensor) into new
    tensors. The arguments are ``rope_triton.launch``'s, already checked by the public function that
    calls the operator; the features of q and k must be contiguous (the callers make them so). A launch's
    plan is remembered per signature of the arguments, as eager calls' are."""
    if q.stride(-1) != 1 or (k is not None and k.stride(-1) != 1):
        raise ValueError(f"ropebook::rope: q and k must have contiguous features, got q.stride()={q.stride()}, "
                         f"k.stride()={None if k is None else k.stride()}")
    if cos is not None and cos.stride() != sin.stride():
        cos, sin = cos.contiguous(), sin.contiguous()  # the kernel indexes sin with cos's strides
    table = cos is not None and cos.ndim == 2  # rope_qk's (P, r/2) table (rope_qk_cos_sin passes (B or 1, T, r/2))
    longest = None
    if cu_seqlens is not None and cu_seqlens.device.type == "cpu":  # checked in eager calls too; here the values are known
        longest = check_cu_seqlens("rope_qk", cu_seqlens, q.shape[1], max_seqlen)
    if offset or (table and positions is None and offsets is None):
        # rope_qk's int offset, checked here under torch.compile, where its value is symbolic while tracing; with
        # a table it is checked even when 0: the kernel reads arange(T) + offset from the table unmasked (the
        # range check is the launcher's), so T past the table's end would read memory beyond it
        if cu_seqlens is None:
            n_tokens, n_seq = q.shape[-2], q.shape[0]
        else:
            n_tokens, n_seq = (max_seqlen if longest is None else longest), cu_seqlens.numel() - 1
        check_offset("rope_qk", offset, n_tokens, n_seq, cos.shape[0] if table else None,
                     unread=cu_seqlens is not None and longest is None)
    tensors = (cos, sin, turns, positions, offsets, cu_seqlens)
    key = (meta(q), meta(k), *[meta(t) for t in tensors], half, layout, factor, max_seqlen, conj,
           rope_triton.SINCOS, rope_triton.default_config)
    q_out = torch.empty_like(q)
    k_out = q.new_empty(0) if k is None else torch.empty_like(k)
    plan = _plans.get(key)
    if plan is not None:
        plan.run(q, q_out, k, None if k is None else k_out, tensors, offset)
        return q_out, k_out
    plan = rope_triton.launch(q, q_out, k, None if k is None else k_out, half=half, layout=layout, conj=conj, cos=cos,
                              sin=sin, turns=turns, factor=factor, offset=offset, offsets=offsets, positions=positions,
                              cu_seqlens=cu_seqlens, max_seqlen=max_seqlen, **table_args(cos, positions))
    if len(_plans) >= PLANS_MAX:
        _plans.clear()
    _plans[key] = plan
    return q_out, k_out


def meta(x):
    """What a launch's plan depends on in an argument: a tensor's shape, strides, dtype and device; for
    anything else, its type."""
    return (x.shape, x.stride(), x.dtype, x.device) if isinstance(x, Tensor) else type(x)


def _fake(q, k, cos, sin, turns, positions, offsets, cu_seqlens, half, layout, factor, offset, max_seqlen, conj):
    return torch.empty_like(q), (q.new_empty(0) if k is None else torch.empty_like(k))


class _Rope(torch.autograd.Function):
    """The operator's derivative: the rotation by −θ of the incoming gradients (a rotation's inverse is its
    transpose), by the same operator with ``conj=True``. ``apply(keyset, *the operator's arguments)``."""

    @staticmethod
    def forward(keyset, *args):
        with torch._C._AutoDispatchBelowAutograd():
            return torch.ops.ropebook.rope.default.redispatch(keyset & torch._C._after_autograd_keyset, *args)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.has_k = inputs[2] is not None
        ctx.saved = inputs[3:9]  # cos, sin, turns, positions, offsets, cu_seqlens: read again, not differentiated
        ctx.options = inputs[9:14]  # half, layout, factor, offset, max_seqlen
        ctx.conj = inputs[14]  # the backward rotates the other way (and its own backward back again)

    @staticmethod
    def backward(ctx, gq, gk):
        gk = gk if ctx.has_k else None
        gq = gq if gq.stride(-1) == 1 else gq.contiguous()
        if gk is not None and gk.stride(-1) != 1:
            gk = gk.contiguous()
        half, layout, *rest = ctx.options  # from the output's layout back to the input's
        gq_in, gk_in = torch.ops.ropebook.rope.default(gq, gk, *ctx.saved, half, rope_triton.inverse_layout(layout), *rest,
                                                       not ctx.conj)
        return None, gq_in, (gk_in if ctx.has_k else None), *([None] * 12)


_D = torch._C.DispatchKey
# below autograd, the dispatch keys of plain CPU and CUDA tensors with no mode active: for these the
# dispatcher's next stop is the operator's body itself
_PLAIN = {torch._C.DispatchKeySet(key).raw_repr() for key in (_D.CPU, _D.CUDA)}


def _autograd(keyset, *args):
    """The operator at the Autograd key: record the derivative only when q or k needs one (the generic
    ``torch.library.register_autograd`` does the same but looks for a gradient in every argument through
    pytree). Without one, plain tensors go straight to the body, sparing a second pass through the
    dispatcher; anything else (fake or functional tensors while torch.compile traces, a dispatch mode)
    is handed on to the keys below autograd."""
    q, k = args[0], args[1]
    if torch.is_grad_enabled() and (q.requires_grad or (k is not None and k.requires_grad)):
        return _Rope.apply(keyset, *args)
    below = keyset & torch._C._after_autograd_keyset
    if below.raw_repr() in _PLAIN:
        return rope(*args)
    return torch.ops.ropebook.rope.default.redispatch(below, *args)


_lib.impl("rope", rope, "CompositeExplicitAutograd")
_lib.impl("rope", _autograd, "Autograd", with_keyset=True)
torch.library.register_fake("ropebook::rope", _fake, lib=_lib)


def call(q: Tensor, k: Tensor | None, inplace: bool, spec: dict) -> tuple[Tensor, Tensor | None]:
    """What ``_run`` does under ``torch.compile``: the operator on a launch's ``spec`` (features already
    contiguous), copied back into q and k for ``inplace``."""
    q_out, k_out = torch.ops.ropebook.rope.default(
        q, k, spec.get("cos"), spec.get("sin"), spec.get("turns"), spec.get("positions"), spec.get("offsets"),
        spec.get("cu_seqlens"), spec["half"], spec["layout"], spec.get("factor", 1.0), spec.get("offset", 0),
        spec.get("max_seqlen"), spec.get("conj", False))
    if k is None:
        k_out = None
    return copy_back(q, k, q_out, k_out) if inplace else (q_out, k_out)


def copy_back(q: Tensor, k: Tensor | None, q_out: Tensor, k_out: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """An in-place call made out of place: the results copied into q and k, which autograd and the compiler
    record as any in-place op (the write through a pointer, neither can see)."""
    q.copy_(q_out)
    if k is not None:
        k.copy_(k_out)
    return q, k
