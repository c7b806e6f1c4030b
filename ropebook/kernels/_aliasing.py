"""In place, may q and k be rotated where they lie? Only if no memory location is reached twice: not within q or
k (an ``expand()``, overlapping windows) and not by both (two views of one storage that share an element). The
verdicts, worked out from shapes and strides alone, are remembered per layout.

Chapter: ``ch-rope-gpu``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _check_not_aliased(fn: str, q, k, inplace: bool) -> None:
    """``inplace`` is True or False; in place, each element of q and of k has its own memory, and q and k share
    none: an element reached twice would be rotated twice (or raced over by two programs). Views of one fused
    qkv projection pass: their elements interleave in one storage but never coincide. Every call makes this
    check, a plan's repeat included: "yes" or 1 must not pass as True, and the plan's signature holds strides
    but not where q and k start. Separate storages (the common case) cost two pointer reads."""
    if inplace is not True and inplace is not False:
        raise ValueError(f"{fn}: inplace must be True or False, got inplace={inplace!r}")
    if not inplace or not isinstance(q, Tensor) or not isinstance(k, (Tensor, type(None))) or torch.compiler.is_compiling():
        return  # (not tensors: _check_qk says so; compiled: a compiler cannot trace a pointer comparison)
    for name, t in (("q", q), ("k", k)):
        if t is not None and _overlaps_itself(tuple(t.shape), t.stride()):  # (stride 0 included: an expand())
            dim = next((d for d, (n, s) in enumerate(zip(t.shape, t.stride())) if s == 0 and n > 1), None)
            why = (f"stride 0 over dimension {dim} (an expand()), so each element would be rotated {t.shape[dim]} times"
                   if dim is not None else "sorted by stride, a stride no larger than the span of the smaller ones, "
                   "so two elements may share a location and be rotated twice")
            raise ValueError(f"{fn}: inplace=True needs each element of {name} in its own memory, got {name}.shape="
                             f"{tuple(t.shape)}, {name}.stride()={t.stride()}: {why}; pass inplace=False or "
                             f"{name}.contiguous()")
    if (k is not None and q.untyped_storage().data_ptr() == k.untyped_storage().data_ptr() and q.numel() and k.numel()
            and q.dtype == k.dtype and q.device == k.device and not q.is_meta):  # (meta: no memory, every data_ptr 0)
        shared = _shared_elements(q, k)
        if shared is not False:
            how = ("share elements" if shared else "are views of one storage with different strides, and whether "
                   "they share an element was not worked out")
            raise ValueError(
                f"{fn}: inplace=True needs q and k in separate memory, got q and k that {how} "
                f"(q.shape={tuple(q.shape)}, q.stride()={q.stride()}, k.shape={tuple(k.shape)}, k.stride()={k.stride()}, "
                f"k.storage_offset() - q.storage_offset() = {k.storage_offset() - q.storage_offset()}): an element in "
                f"both would be rotated twice; pass inplace=False")


_self_memo: dict = {}


def _overlaps_itself(shape: tuple, stride: tuple) -> bool:
    """Whether a view might reach one memory location from two indices: its dimensions of more than one
    element, sorted by stride, are not nested (each stride larger than the span of the smaller ones). Every
    view of a contiguous tensor (slices, transposes, a fused projection's heads) is nested; an ``unfold`` or
    an ``as_strided`` with windows that overlap is not. A few layouts that never meet but are not nested
    are refused too. Remembered per layout, as ``_shared_elements`` is."""
    key = (shape, stride)
    verdict = _self_memo.get(key)
    if verdict is None:
        if len(_self_memo) >= _SHARED_MAX:
            _self_memo.clear()
        span, verdict = 0, False
        for s, n in sorted((abs(s), n) for n, s in zip(shape, stride) if n > 1):
            if s <= span:
                verdict = True
                break
            span += (n - 1) * s
        _self_memo[key] = verdict
    return verdict


_SHARED_MAX = 1024  # verdicts kept (a model makes a handful of layouts); more, and the memo starts over
_shared_memo: dict = {}


def _shared_elements(q: Tensor, k: Tensor) -> bool | None:
    """Whether two views of one storage (each without a repeated element) have an element in common:
    True, False, or None when that was not worked out (strides that differ over dimensions of more than one
    element, with the two ranges of memory crossing). Remembered per layout: a decoding loop asks the same
    question at every layer and step."""
    key = (tuple(q.shape), q.stride(), tuple(k.shape), k.stride(), k.storage_offset() - q.storage_offset())
    verdict = _shared_memo.get(key, ...)
    if verdict is ...:
        if len(_shared_memo) >= _SHARED_MAX:
            _shared_memo.clear()
        verdict = _shared_memo[key] = _solve_shared(*key)
    return verdict


def _solve_shared(q_shape, q_stride, k_shape, k_stride, delta: int) -> bool | None:
    """Is there an index a of q and b of k with Σ s_i·a_i = delta + Σ s_i·b_i (delta: k's first element less
    q's)? That is, Σ s_i·n_i = delta with n_i = a_i − b_i in [−(k_i − 1), q_i − 1]: a search over the
    dimensions from the largest stride down, where the dimensions left can reach only a bounded range, so
    each level admits few n_i (one, for the nested strides of any view of a contiguous tensor)."""
    q_end = sum((n - 1) * s for n, s in zip(q_shape, q_stride))
    k_end = delta + sum((n - 1) * s for n, s in zip(k_shape, k_stride))
    if q_end < delta or k_end < 0:  # the two ranges of memory do not cross
        return False
    dims = []  # (stride, lowest n, highest n) over the dimensions where either tensor has more than one element
    for nq, sq, nk, sk in zip(q_shape, q_stride, k_shape, k_stride):
        if nq > 1 and nk > 1 and sq != sk:
            return None
        if nq > 1 or nk > 1:
            dims.append((sq if nq > 1 else sk, -(nk - 1), nq - 1))
    dims.sort(reverse=True)
    reach = [(0, 0)] * (len(dims) + 1)  # reach[i]: the lowest and highest sum of dimensions i, i + 1, ...
    for i in range(len(dims) - 1, -1, -1):
        s, lo, hi = dims[i]
        reach[i] = (reach[i + 1][0] + s * lo, reach[i + 1][1] + s * hi)
    budget = 10_000  # search steps; past them, say "not worked out" rather than spend the host's time

    def search(i: int, rest: int) -> bool | None:
        nonlocal budget
        if i == len(dims):
            return rest == 0
        s, lo, hi = dims[i]
        low_rest, high_rest = reach[i + 1]
        first, last = max(lo, -((high_rest - rest) // s)), min(hi, (rest - low_rest) // s)  # ceil, floor
        unsure = False
        for n in range(first, last + 1):
            budget -= 1
            if budget < 0:
                return None
            found = search(i + 1, rest - s * n)
            if found:
                return True
            unsure = unsure or found is None
        return None if unsure else False

    return search(0, delta)
