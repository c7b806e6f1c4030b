"""The public face of the fused kernel: argument checks, ``torch.autograd``, the frequency cache, and the
plans remembered per call signature, with which a repeated call skips the checks and the launch's arithmetic.

``rope_qk`` rotates q and k in one launch; its backward pass is the same kernel
rotating the incoming gradients by −θ (a rotation's inverse is its transpose).
``rope_cache`` (from ``_cache``) builds, once per model, what the kernel reads
about the frequencies. ``apply_cos_sin`` is the hook behind ``rb.apply_rope(...,
backend="triton")``: it rotates one tensor by cos/sin that ``apply_rope`` has
already formed.

Chapter: ``ch-rope-gpu``.
"""

from __future__ import annotations

import numbers
import os
import warnings
import weakref

import torch
from torch import Tensor
from torch.autograd.graph import increment_version

from ropebook.kernels import op, rope_triton
from ropebook.kernels._aliasing import _check_not_aliased
from ropebook.kernels._cache import RopeCache, rope_cache
from ropebook._validate import _broadcasts_to, _check_layout, _check_x, _is_integer_tensor

__all__ = ["RopeCache", "rope_cache", "rope_qk", "rope_qk_cos_sin", "apply_cos_sin"]

DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
ANGLES = ("kernel", "table")
TABLE_MAX_TOKENS = 16  # default angles: the table up to this many tokens a sequence (decode measured at 1, prefill at 1024+)


# ----------------------------------------------------------------------------- autograd


class _RopeFunction(torch.autograd.Function):
    """Forward: rotate by +θ. Backward: rotate the gradients by −θ (same kernel, ``conj`` flipped). The
    backward is itself differentiable (``create_graph=True``: a gradient penalty, a Hessian-vector
    product): when the incoming gradients need a graph it goes through this Function again."""

    @staticmethod
    def forward(ctx, q, k, spec: dict):
        q_out, k_out, _ = _forward(q, k, spec["inplace"], spec["launch"])
        if spec["inplace"]:
            ctx.mark_dirty(*(t for t in (q, k) if t is not None))
        ctx.spec = spec
        return q_out, k_out

    @staticmethod
    def backward(ctx, gq, gk):
        launch = ctx.spec["launch"]  # the rotation by −θ, from the output's layout back to the input's
        launch = {**launch, "conj": not launch.get("conj", False), "layout": rope_triton.inverse_layout(launch["layout"])}
        gq = _feature_contiguous(gq)
        gk = None if gk is None else _feature_contiguous(gk)
        if _records_graph(gq, gk):  # create_graph=True: the rotation by −θ recorded, so it can be differentiated
            gq_in, gk_in = _RopeFunction.apply(gq, gk, {"inplace": False, "launch": launch})
            return gq_in, gk_in, None
        gq_in = torch.empty_like(gq)
        gk_in = None if gk is None else torch.empty_like(gk)
        rope_triton.launch(gq, gq_in, gk, gk_in, **launch)
        return gq_in, gk_in, None


def _forward(q: Tensor, k: Tensor | None, inplace: bool, launch: dict):
    """Outputs (q itself in place), then the launch; returns ``(q_out, k_out, the launch's plan)``."""
    q_out = q if inplace else torch.empty_like(q)
    k_out = None if k is None else (k if inplace else torch.empty_like(k))
    return q_out, k_out, rope_triton.launch(q, q_out, k, k_out, **launch)


def _feature_contiguous(x: Tensor) -> Tensor:
    return x if x.stride(-1) == 1 else x.contiguous()


# ----------------------------------------------------------------------------- checks


def _check_tensor(fn: str, name: str, x, ndim: int) -> None:
    if not isinstance(x, Tensor) or x.ndim != ndim or x.dtype not in DTYPES:
        got = f"{name}.shape={tuple(x.shape)}, {name}.dtype={x.dtype}" if isinstance(x, Tensor) else f"type({name})={type(x).__name__}"
        want = "(B, H, T, D)" if ndim == 4 else "(H, N, D) with cu_seqlens"
        raise ValueError(f"{fn}: {name} must be a tensor of shape {want} and dtype in {[str(d) for d in DTYPES]}, got {got}")


def _int_tensor(fn: str, name: str, v, shape, device, contiguous: bool = True, shared: str | None = None) -> Tensor:
    """``v`` checked: an integer tensor of ``shape`` on ``device`` (``shared``: the other shapes the caller
    accepts, for the message)."""
    if not _is_integer_tensor(v) or tuple(v.shape) != tuple(shape):
        got = f"{name}.shape={tuple(v.shape)}, {name}.dtype={v.dtype}" if isinstance(v, Tensor) else f"{name}={v!r}"
        want = f"{tuple(shape)}" + ("" if shared is None else f", or {shared}")
        raise ValueError(f"{fn}: {name} must be an integer tensor of shape {want}, got {got}")
    if v.device != device:
        raise ValueError(f"{fn}: {name} must be on {device}, got {name}.device={v.device}")
    return v.contiguous() if contiguous else v


def _as_int(v):
    """A numpy (or any other ``numbers.Integral``) integer as a Python int; anything else unchanged, for the
    checks to judge. (An int offset is part of no plan's signature, but its type is.)"""
    if v is None or type(v) is int or isinstance(v, bool) or not isinstance(v, numbers.Integral):
        return v
    return int(v)


def _shared_positions(q, positions):
    """Positions ``(T,)`` or ``(1, T)``, one set for every sequence (``rb.apply_rope`` broadcasts them too), as a
    ``(B, T)`` view with batch stride 0, which the kernel reads as it is. Nothing else is broadcast: ``(B, 1)``
    or ``(1,)`` would give every token one position. Anything else unchanged, for the checks to judge."""
    if isinstance(q, Tensor) and q.ndim == 4 and isinstance(positions, Tensor):
        B, T = q.shape[0], q.shape[2]
        if tuple(positions.shape) in ((T,), (1, T)) and tuple(positions.shape) != (B, T) and _is_integer_tensor(positions):
            return positions.expand(B, T)
    return positions


def _one_offset(q, offsets: Tensor, cu_seqlens) -> Tensor:
    """Offsets of one element (the caller has counted them), an integer one such as ``cache_position[0]``: the
    same offset for every sequence, as ``(B,)``, copied on the device (the kernel reads offsets by sequence,
    contiguous), never read on the host. Anything else unchanged, for the checks to judge."""
    if offsets.ndim > 1 or not _is_integer_tensor(offsets) or not isinstance(q, Tensor):
        return offsets
    if cu_seqlens is None:
        n_seq = q.shape[0] if q.ndim == 4 else None
    else:
        n_seq = cu_seqlens.numel() - 1 if isinstance(cu_seqlens, Tensor) and cu_seqlens.ndim == 1 else None
    if n_seq is None or tuple(offsets.shape) == (n_seq,):
        return offsets
    return offsets.reshape(1).expand(n_seq).contiguous()


def _check_qk(fn: str, q, k, layout, varlen: bool) -> None:
    _check_tensor(fn, "q", q, 3 if varlen else 4)
    if k is not None:
        _check_tensor(fn, "k", k, 3 if varlen else 4)
        same = (k.shape[-2:] == q.shape[-2:]) if varlen else (k.shape[0] == q.shape[0] and k.shape[2:] == q.shape[2:])
        if not same or k.dtype != q.dtype or k.device != q.device:
            raise ValueError(f"{fn}: k must match q in batch, tokens, head_dim, dtype and device, got "
                             f"q.shape={tuple(q.shape)} {q.dtype} {q.device}, k.shape={tuple(k.shape)} {k.dtype} {k.device}")
    _check_layout(fn, layout)


_check_cu_seqlens = op.check_cu_seqlens  # (a module global, so that a test can switch it off)


def _run(fn: str, q: Tensor, k: Tensor | None, inplace: bool, spec: dict, key=None, again=None):
    """Make the features contiguous, then launch through autograd only when there is a graph to record.
    Without one, and given a ``key`` (the call's signature, ``_signature``), remember the launch's plan
    under it for ``_repeat``, with ``again``: what a repeat needs besides the tensors it is handed."""
    for name, t in (("q", q), ("k", k)):
        if t is not None and t.stride(-1) != 1 and inplace:
            raise ValueError(f"{fn}: inplace=True needs {name}.stride(-1) == 1, got {name}.stride()={t.stride()}")
    q = _feature_contiguous(q)
    k = None if k is None else _feature_contiguous(k)
    if torch.compiler.is_compiling():  # torch.compile traces: the custom operator, which it can (ropebook.kernels.op)
        return op.call(q, k, inplace, spec)
    if _records_graph(q, k):
        if inplace and (q._is_view() or (k is not None and k._is_view())):
            # autograd cannot rebase a custom Function's two outputs onto views it wrote in place (a fused
            # projection's slices, a transposed (B, T, H, D)): rotate into new tensors, then copy_ back,
            # which autograd records on the views as it does for any in-place op
            return op.copy_back(q, k, *_RopeFunction.apply(q, k, {"inplace": False, "launch": spec}))
        return _RopeFunction.apply(q, k, {"inplace": inplace, "launch": spec})
    q_out, k_out, plan = _forward(q, k, inplace, spec)  # no graph to record: skip autograd's bookkeeping (decode calls)
    if inplace:
        _written(q, k)
    if key is not None and not q.is_meta:  # (meta tensors: nothing was launched, so there is no plan to repeat)
        if len(_plans) >= PLANS_MAX:  # a bound, not a policy: a model makes a handful of signatures
            _plans.clear()
        _plans[key] = (plan, inplace, *again)
    return q_out, k_out


def _written(q: Tensor, k: Tensor | None) -> None:
    """Tell autograd that the kernel wrote q and k in place (it cannot see a write through a pointer): a graph
    that saved either for its backward then refuses to run, as after any in-place op, instead of computing
    gradients from the rotated values. (``mark_dirty`` does this when the call itself records a graph.)"""
    increment_version((q,) if k is None else (q, k))


def _records_graph(q: Tensor, k: Tensor | None) -> bool:
    return torch.is_grad_enabled() and (q.requires_grad or (k is not None and k.requires_grad))


# ----------------------------------------------------------------------------- repeated calls
# A model calls the kernel with the same shapes, strides, dtypes and options in every layer and at every
# decoding step; only the data (and an int offset) changes. The first such call is checked and worked
# out in full; its plan (rope_triton.Plan: grid, integer arguments, constexprs) is kept under the call's
# signature, and a later call with the same signature checks only what the signature does not fix (an
# int offset's range, in-place aliasing, positions with offsets, a CPU cu_seqlens) and launches through
# the plan: a fraction of the host time (ch-rope-gpu).
# Calls that record an autograd graph are not cached (autograd's own bookkeeping dominates there).

PLANS_MAX = 512  # signatures kept; more, and the cache starts over
_plans: dict = {}  # signature -> (plan, inplace, what a repeat needs: see rope_qk and rope_qk_cos_sin)


_meta = op.meta  # what a plan depends on in an argument (an int offset's value is checked on each call)


def _signature(*parts) -> tuple:
    """A call's key into ``_plans``: its options and tensors' ``_meta``, plus what the launcher reads from
    module state (``SINCOS``, ``default_config``: the tests and the benchmark set them)."""
    return (*parts, rope_triton.SINCOS, rope_triton.default_config)


def _repeat(hit: tuple, q: Tensor, k: Tensor | None, tensors: tuple, offset: int) -> tuple[Tensor, Tensor | None]:
    """Launch again through a remembered plan, for tensors with the signature it was made for."""
    plan = hit[0]
    if hit[1]:  # in place (then the features are contiguous: checked when the plan was made)
        plan.run(q, q, k, k, tensors, offset)
        _written(q, k)
        return q, k
    q = q if q.stride(-1) == 1 else q.contiguous()
    q_out = torch.empty_like(q)
    if k is None:
        plan.run(q, q_out, None, None, tensors, offset)
        return q_out, None
    k = k if k.stride(-1) == 1 else k.contiguous()
    k_out = torch.empty_like(k)
    plan.run(q, q_out, k, k_out, tensors, offset)
    return q_out, k_out


def rope_qk(q: Tensor, k: Tensor | None, cache: RopeCache, *, layout: str = "half", offsets=0, positions=None,
            cu_seqlens: Tensor | None = None, max_seqlen: int | None = None, inplace: bool = False,
            angles: str | None = None) -> tuple[Tensor, Tensor | None]:
    """Rotate q and k by RoPE in one kernel launch; differentiable; optionally in place.

    Args:
        q, k: ``(B, Hq, T, D)`` and ``(B, Hk, T, D)``, any strides with the features contiguous
            (a ``(B, T, H, D)`` tensor passes as ``.transpose(1, 2)``, no copy). Packed
            variable-length batches: ``(H, N, D)`` with ``cu_seqlens``. ``k`` may be None.
        cache: from :func:`rope_cache`; its ``rotary_dim`` features are rotated, the rest pass through.
        layout: ``"half"`` or ``"interleaved"``.
        offsets: position of each sequence's first token: an int (numpy's too), or an integer tensor ``(B,)``
            or of one element (``cache_position[0]``: the same offset for every sequence).
        positions: explicit integer positions ``(B, T)``, or ``(T,)`` / ``(1, T)`` shared by every sequence
            (or ``(N,)`` packed), instead of ``arange + offsets``.
        cu_seqlens: ``(B + 1,)`` int32 starts of the packed sequences; ``max_seqlen`` their longest length
            (computed if None, at the cost of a device synchronization, and cu_seqlens then checked: from
            0, non-decreasing, ending at N; a CPU ``cu_seqlens`` is always checked, ``max_seqlen`` against it
            too). A CUDA ``cu_seqlens`` with ``max_seqlen`` given is not checked, which would cost the same
            synchronization: the rotated features of tokens past a too small ``max_seqlen`` come out NaN, and
            a wrong ``cu_seqlens`` gives wrong values, but the kernel never reads or writes outside q and k.
            Under ``torch.compile`` a packed call needs ``max_seqlen``.
        inplace: write the result into q and k.
        angles: ``"table"`` (read ``cache.cos``/``cache.sin``; a position outside the table gives
            NaN) or ``"kernel"`` (cos/sin from exact fixed-point angles in the kernel, any position).
            Default: the table for up to 16 tokens a sequence when the cache has one (decoding: it
            measured faster on an H100), else the kernel (faster there for prefill of 1024+ tokens).

    Returns: ``(q_out, k_out)``, same shapes and dtypes as q and k, laid out in their dimension order
    (``torch.empty_like``: a fused projection's view comes out as a dense tensor in the same order).

    >>> import ropebook as rb
    >>> from unittest import mock
    >>> q, k = torch.randn(1, 4, 3, 8), torch.randn(1, 2, 3, 8)   # CPU tensors: Triton's interpreter runs them
    >>> with mock.patch.dict(os.environ, TRITON_INTERPRET="1"):
    ...     qr, kr = rope_qk(q, k, rope_cache(8))
    >>> torch.allclose(qr, rb.apply_rope(q), atol=1e-6) and torch.allclose(kr, rb.apply_rope(k), atol=1e-6)
    True
    """
    fn = "rope_qk"
    varlen = cu_seqlens is not None
    if varlen and not isinstance(cu_seqlens, Tensor):
        raise ValueError(f"{fn}: cu_seqlens must be an integer tensor of shape (B + 1,), got "
                         f"type(cu_seqlens)={type(cu_seqlens).__name__}")
    if type(offsets) is not int:  # (each test first rules out the common case: host time, ch-rope-gpu)
        if not isinstance(offsets, Tensor):
            offsets = _as_int(offsets)
        elif offsets.numel() == 1 and positions is None:
            offsets = _one_offset(q, offsets, cu_seqlens)
    if positions is not None and not (type(offsets) is int and offsets == 0):
        raise ValueError(f"{fn}: pass positions or offsets, not both, got positions and offsets={offsets!r}")
    if max_seqlen is not None and type(max_seqlen) is not int:
        max_seqlen = _as_int(max_seqlen)
    _check_not_aliased(fn, q, k, inplace)
    cu_max = None  # the longest packed sequence, once cu_seqlens is checked
    if (varlen and cu_seqlens.device.type == "cpu" and isinstance(q, Tensor)
            and not torch.compiler.is_compiling()):  # compiled: values are not known while tracing
        cu_max = _check_cu_seqlens(fn, cu_seqlens, q.shape[1] if q.ndim == 3 else None, max_seqlen,  # free on the CPU,
                                   n_heads=q.shape[0] if q.ndim == 3 else None)  # even on a repeat
    if varlen and max_seqlen is None and torch.compiler.is_compiling():
        raise ValueError(f"{fn}: under torch.compile, pass max_seqlen with cu_seqlens (reading it from cu_seqlens's "
                         f"values cannot be traced), got max_seqlen=None")
    if varlen and max_seqlen is None and cu_seqlens.is_meta:
        raise ValueError(f"{fn}: on the meta device, pass max_seqlen with cu_seqlens (a meta tensor has no values "
                         f"to read it from), got max_seqlen=None")
    key = None  # not for a packed batch without max_seqlen: that is read from cu_seqlens's data
    if (isinstance(q, Tensor) and isinstance(k, (Tensor, type(None))) and not _records_graph(q, k)
            and not (varlen and max_seqlen is None) and not torch.compiler.is_compiling()):
        key = _signature(fn, _meta(q), _meta(k), id(cache), layout, inplace, angles, _meta(offsets),
                         _meta(positions), _meta(cu_seqlens), type(max_seqlen), max_seqlen)
        hit = _plans.get(key)
        if hit is not None and hit[2]() is cache:  # (plan, inplace, weakref to cache, table?, tokens, position limit)
            tensors = (*((cache.cos, cache.sin, None) if hit[3] else (None, None, cache.turns)), positions,
                       offsets.contiguous() if positions is None and isinstance(offsets, Tensor) else None,
                       None if cu_seqlens is None else cu_seqlens.contiguous())
            if positions is not None or tensors[4] is not None:
                return _repeat(hit, q, k, tensors, 0)
            if 0 <= offsets and offsets + (hit[4] if cu_max is None else cu_max) <= hit[5]:  # else the checks below say what is wrong
                return _repeat(hit, q, k, tensors, offsets)
    if positions is not None and not varlen:
        # (T,) or (1, T) as a (B, T) view: here, past the plans, since a repeat hands the kernel the tensor as
        # given (the same memory, and the plan holds the view's strides) and so pays nothing for it
        positions = _shared_positions(q, positions)
    _check_qk(fn, q, k, layout, varlen)
    if angles is None:  # measured on an H100: the table is faster for decoding, the arithmetic for prefill
        n_tokens = max_seqlen if varlen and max_seqlen is not None else q.shape[-2]
        table = getattr(cache, "cos", None) is not None and q.dtype != torch.float64
        angles = "table" if table and n_tokens <= TABLE_MAX_TOKENS else "kernel"
    if angles not in ANGLES:
        raise ValueError(f"{fn}: angles must be one of {ANGLES}, got angles={angles!r}")
    if not isinstance(cache, RopeCache):
        raise ValueError(f"{fn}: cache must be a RopeCache from rope_cache(...), got type(cache)={type(cache).__name__}")
    if not varlen and max_seqlen is not None:
        raise ValueError(f"{fn}: max_seqlen is the longest packed sequence and goes with cu_seqlens, "
                         f"got max_seqlen={max_seqlen!r} without cu_seqlens")
    D, r = q.shape[-1], cache.rotary_dim
    if r > D:
        raise ValueError(f"{fn}: cache.rotary_dim must be at most head_dim={D}, got rotary_dim={r}")
    dev = q.device
    spec = dict(half=r // 2, layout=layout, factor=cache.attention_factor)
    if angles == "table":
        if cache.cos is None:
            raise ValueError(f"{fn}: angles='table' needs a table: build the cache with rope_cache(..., max_positions=P)")
        cos, sin = cache.cos.to(dev), cache.sin.to(dev)
        if q.dtype == torch.float64:
            raise ValueError(f"{fn}: angles='table' holds float32 cos/sin; use angles='kernel' for float64 q, got q.dtype={q.dtype}")
        spec.update(cos=cos, sin=sin, factor=1.0, **op.table_args(cos, None))  # the table holds cos·factor
    else:
        spec.update(turns=cache.turns.to(dev))
    if varlen:
        cu_seqlens = _int_tensor(fn, "cu_seqlens", cu_seqlens, (cu_seqlens.numel(),), dev)
        if cu_seqlens.ndim != 1 or cu_seqlens.numel() < 2:
            raise ValueError(f"{fn}: cu_seqlens must have shape (B + 1,) with B >= 1, got cu_seqlens.shape={tuple(cu_seqlens.shape)}")
        if max_seqlen is None:  # a device synchronization (pass max_seqlen to avoid it), so check cu_seqlens too
            max_seqlen = cu_max if cu_max is not None else _check_cu_seqlens(fn, cu_seqlens, q.shape[1], n_heads=q.shape[0])
        elif isinstance(max_seqlen, bool) or not isinstance(max_seqlen, int) or max_seqlen < 1:
            raise ValueError(f"{fn}: max_seqlen must be a positive int (the longest sequence's length), got max_seqlen={max_seqlen!r}")
        spec.update(cu_seqlens=cu_seqlens, max_seqlen=int(max_seqlen))
    n_seq = cu_seqlens.numel() - 1 if varlen else q.shape[0]
    if positions is not None:
        shape = (q.shape[1],) if varlen else (n_seq, q.shape[2])
        positions = _int_tensor(fn, "positions", positions, shape, dev, contiguous=False,  # (read by its strides)
                                shared=None if varlen else f"({q.shape[2]},) or (1, {q.shape[2]}) for every sequence")
        spec.update(positions=positions, **op.table_args(None, positions))
    elif isinstance(offsets, Tensor):
        spec.update(offsets=_int_tensor(fn, "offsets", offsets, (n_seq,), dev))
    elif isinstance(offsets, bool) or not isinstance(offsets, int):
        raise ValueError(f"{fn}: offsets must be a non-negative int or an integer tensor of shape ({n_seq},), got offsets={offsets!r}")
    else:
        spec.update(offset=offsets)
        if not torch.compiler.is_compiling():  # compiled, the operator checks the value when it runs (no guard on it)
            op.check_offset(fn, offsets, (max_seqlen if cu_max is None else cu_max) if varlen else q.shape[2], n_seq,
                            cache.cos.shape[0] if angles == "table" else None, unread=varlen and cu_max is None)
    if any(getattr(cache, name).device != dev for name in ("cos", "sin", "turns") if name in spec):
        key = None  # the cache is on another device: its tables were copied over for this call only
        copied = sum(spec[name].numel() * spec[name].element_size() for name in ("cos", "sin", "turns") if name in spec)
        warnings.warn(f"{fn}: cache is on {cache.turns.device} and q on {dev}, so {copied} bytes of it are copied to "
                      f"{dev} on every call; build it there once: rope_cache(..., device={str(dev)!r})",
                      RuntimeWarning, stacklevel=2)
    if key is None:
        return _run(fn, q, k, inplace, spec)
    limit = cache.cos.shape[0] if angles == "table" else 2**63
    n_tokens = max_seqlen if varlen else q.shape[2]
    # the cache by weak reference: a remembered plan must not keep a dropped model's tables in memory
    return _run(fn, q, k, inplace, spec, key, (weakref.ref(cache), angles == "table", n_tokens, limit))


def rope_qk_cos_sin(q: Tensor, k: Tensor | None, cos: Tensor, sin: Tensor, *, layout: str = "half",
                    inplace: bool = False) -> tuple[Tensor, Tensor | None]:
    """Rotate q and k in one launch by cos and sin that the caller has already formed for their positions.

    This is the calling convention of Hugging Face models, where the rotary module forms cos and sin
    once per forward pass and every layer reuses them: the kernel then reads them directly, with no
    position lookup. ``rope_qk`` with a cache is the version that needs nothing precomputed.

    Args:
        q, k: ``(B, Hq, T, D)`` and ``(B, Hk, T, D)``, features contiguous; ``k`` may be None.
        cos, sin: ``(T, r/2)``, ``(B, T, r/2)`` or ``(1, T, r/2)``: one value per rotated pair (``r <= D`` features are
            rotated). Any float dtype; the kernel computes in float32. Hugging Face's duplicated
            ``(B, T, D)`` tensors pass as ``cos[..., :D // 2]`` for the half layout (a view, no copy).
        layout: ``"half"`` or ``"interleaved"``. inplace: write the result into q and k.

    Returns: ``(q_out, k_out)``; differentiable with respect to q and k, not cos and sin.

    >>> import ropebook as rb
    >>> from unittest import mock
    >>> q = torch.randn(1, 4, 3, 8)
    >>> cos, sin = rb.rope_cos_sin(torch.arange(3), 8)   # (T, r/2) float32
    >>> with mock.patch.dict(os.environ, TRITON_INTERPRET="1"):
    ...     qr, _ = rope_qk_cos_sin(q, None, cos, sin)
    >>> torch.allclose(qr, rb.apply_rope(q), atol=1e-6)
    True
    """
    return _rope_qk_cos_sin("rope_qk_cos_sin", q, k, cos, sin, layout, inplace)


def _rope_qk_cos_sin(fn: str, q, k, cos, sin, layout, inplace, pairs: int | None = None, step: int = 1,
                     out_layout: str | None = None, conj: bool = False):
    """``rope_qk_cos_sin``; with ``pairs``, the rotation reads ``pairs`` values of each row of cos and sin, which
    may be wider (Hugging Face's duplicated ``(…, T, r)`` tensors, read without a slicing view on a repeated
    call: ``hf_apply_rotary_pos_emb``): the first ``pairs``, or with ``step`` 2 every other one (Cohere's).
    ``out_layout``: the outputs' layout where it is not ``layout``'s (DeepSeek-V3's, out of place only).
    ``conj``: rotate by −θ (nanochat's; the backward then rotates by +θ)."""
    key = None
    _check_not_aliased(fn, q, k, inplace)
    if (isinstance(q, Tensor) and isinstance(k, (Tensor, type(None))) and not _records_graph(q, k)
            and not torch.compiler.is_compiling()):
        key = _signature(fn, _meta(q), _meta(k), _meta(cos), _meta(sin), layout, inplace, pairs, step, out_layout, conj)
        hit = _plans.get(key)
        if hit is not None and not (torch.is_grad_enabled() and (cos.requires_grad or sin.requires_grad)):
            return _repeat(hit, q, k, (cos, sin, None, None, None, None), 0)  # cos, sin: the (B or 1, T, ·) views' data
    _check_qk(fn, q, k, layout, False)
    B, T, D = q.shape[0], q.shape[2], q.shape[3]
    for name, c in (("cos", cos), ("sin", sin)):
        ok = (isinstance(c, Tensor) and c.is_floating_point() and c.ndim in (2, 3) and c.shape[-2] == T
              and (c.ndim == 2 or c.shape[0] in (1, B))
              and (0 < 2 * c.shape[-1] <= D if pairs is None else 0 < 2 * pairs <= D and (pairs - 1) * step < c.shape[-1]))
        if not ok:
            got = f"{name}.shape={tuple(c.shape)}, {name}.dtype={c.dtype}" if isinstance(c, Tensor) else f"type({name})={type(c).__name__}"
            batch = "1" if B == 1 else f"{B} or 1"
            raise ValueError(f"{fn}: {name} must be a float tensor of shape ({T}, r/2) or ({batch}, {T}, r/2) with "
                             f"r/2 <= head_dim/2 = {D // 2} (q.shape={tuple(q.shape)}), got {got}")
        if c.device != q.device:
            raise ValueError(f"{fn}: {name} must be on {q.device}, got {name}.device={c.device}")
        if torch.is_grad_enabled() and c.requires_grad:
            raise ValueError(f"{fn}: the kernel does not differentiate through cos and sin; got {name} that requires grad")
    if cos.shape != sin.shape:
        raise ValueError(f"{fn}: cos and sin must have the same shape, got cos.shape={tuple(cos.shape)}, sin.shape={tuple(sin.shape)}")
    cos3, sin3 = (cos[None] if cos.ndim == 2 else cos), (sin[None] if sin.ndim == 2 else sin)  # (B or 1, T, r/2)
    if step != 1:  # a view that starts where cos does: a repeat hands the kernel cos's own pointer, with these strides
        cos3, sin3 = cos3[..., ::step], sin3[..., ::step]
    if cos3.stride() != sin3.stride():  # the kernel indexes sin with cos's strides (any strides, features' too)
        cos3, sin3 = cos3.contiguous(), sin3.contiguous()
        key = None  # copies made for this call: a repeat would have to make them too
    if out_layout is not None and out_layout != layout:
        layout = f"{layout}>{out_layout}"  # read one layout, write the other (rope_triton.launch)
    spec = dict(half=cos3.shape[-1] if pairs is None else pairs, layout=layout, cos=cos3, sin=sin3,
                **op.table_args(cos3, None), **({"conj": True} if conj else {}))
    return _run(fn, q, k, inplace, spec, key, ())


# ----------------------------------------------------------------------------- the apply_rope hook


def apply_cos_sin(x: Tensor, cos: Tensor, sin: Tensor, *, layout: str, rotary_dim: int) -> Tensor:
    """Rotate the first ``rotary_dim`` features of x (..., T, D) by cos/sin (..., T, r/2): ``backend="triton"``.

    cos and sin are in the compute dtype (float32, float64 for float64 x) and
    broadcast to x's leading dimensions; they carry no gradient.
    """
    fn = "apply_rope"
    _check_layout(fn, layout)
    _check_x(fn, x, rotary_dim)
    for name, c in (("cos", cos), ("sin", sin)):
        if not isinstance(c, Tensor) or not c.is_floating_point():
            got = f"{name}.dtype={c.dtype}" if isinstance(c, Tensor) else f"type({name})={type(c).__name__}"
            raise ValueError(f"{fn}: {name} must be a floating-point tensor, got {got}")
        if not _broadcasts_to(c.shape, (*x.shape[:-1], rotary_dim // 2)):
            raise ValueError(f"{fn}: {name} must broadcast to x.shape[:-1] + (rotary_dim/2,) = "
                             f"{(*x.shape[:-1], rotary_dim // 2)}, got {name}.shape={tuple(c.shape)}")
    if not x.is_cuda and not rope_triton.interpreting():
        raise RuntimeError(f"{fn}: backend='triton' runs on CUDA tensors, or on CPU tensors only under TRITON_INTERPRET=1; "
                           f"got x.device={x.device} and TRITON_INTERPRET={os.environ.get('TRITON_INTERPRET')!r}")
    if cos.requires_grad or sin.requires_grad:
        raise RuntimeError(f"{fn}: backend='triton' does not differentiate through positions; got positions that "
                           f"require grad (use backend='torch')")
    if x.dtype not in DTYPES:
        raise ValueError(f"{fn}: backend='triton' supports dtypes {[str(d) for d in DTYPES]}, got x.dtype={x.dtype}")
    if x.numel() == 0:  # nothing to rotate (and no shape to fold the leading dimensions into)
        return x.clone()
    T, D, half = x.shape[-2], x.shape[-1], rotary_dim // 2
    ce, se = cos.expand(*x.shape[:-1], half), sin.expand(*x.shape[:-1], half)  # (..., T, r/2)
    if x.ndim >= 3 and ce.stride(-3) == 0 and se.stride(-3) == 0:  # the same angles for every head: share them
        H = x.shape[-3]
        x4 = x.reshape(-1, H, T, D)  # (L, H, T, D)
        c3, s3 = ce.select(-3, 0).reshape(-1, T, half), se.select(-3, 0).reshape(-1, T, half)  # (L, T, r/2)
    else:
        x4 = x.reshape(-1, 1, T, D)
        c3, s3 = ce.reshape(-1, T, half), se.reshape(-1, T, half)
    if c3.stride() != s3.stride():
        c3, s3 = c3.contiguous(), s3.contiguous()
    spec = dict(half=half, layout=layout, cos=c3, sin=s3, **op.table_args(c3, None))
    out, _ = _run(fn, x4, None, False, spec)
    return out.reshape(x.shape)
