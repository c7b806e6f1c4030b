"""The argument checks of the Hugging Face drop-ins, in the caller's terms (the kernel's own checks would name
the views it is handed): shapes, dtypes, and that cos and sin hold each value twice where the kernel reads one."""

from __future__ import annotations

import numbers
import weakref

import torch
from torch import Tensor

from ropebook._validate import _check_bool
from ropebook.kernels.autograd import DTYPES

# the last two (cos, sin) pairs compared: weak references to them, their versions, how (two: EdgeTAM's memory
# attention hands every layer q's table and the keys' table, which would push each other out of one place)
_checked: list = []


def _twice(x: Tensor, in_a_row: bool) -> tuple[Tensor, Tensor]:
    """The two copies of each value in a Hugging Face cos or sin: the halves (Llama's ``cat((freqs, freqs), -1)``)
    or, ``in_a_row``, the even and the odd features (Cohere's ``repeat_interleave(freqs, 2, -1)``)."""
    if in_a_row:
        return x[..., 0::2], x[..., 1::2]
    h = x.shape[-1] // 2
    return x[..., :h], x[..., h:]


def _rule(name: str, in_a_row: bool, h) -> str:
    """What ``_twice``'s copies must satisfy, for a message (``h``: r/2, or its name)."""
    if in_a_row:
        return (f"in a row, {name}[..., 0::2] == {name}[..., 1::2], as Cohere's rotary module builds it "
                "(repeat_interleave(freqs, 2, -1))")
    return f"{name}[..., :{h}] == {name}[..., {h}:], as Hugging Face's rotary modules build it (cat((freqs, freqs), -1))"


def _check_twice(fn: str, cos: Tensor, sin: Tensor, in_a_row: bool, names: tuple = ("cos", "sin")) -> None:
    """Hugging Face's rotary modules hold each value of cos and sin twice (``_twice``). The kernel reads one
    copy, so a cos or sin whose copies differ would give a silently wrong result: compare them. One model
    forward pass hands the same cos and sin to every layer, so the comparison (a device sync on CUDA) runs
    once per pass, not once per layer (for up to two tables a pass); it is skipped while a CUDA graph is being
    captured, where a sync is not allowed (the eager warm-up before capture has compared them). ``names``: the
    caller's names for the two tensors, in messages."""
    for c_ref, s_ref, c_ver, s_ver, how in _checked:
        if (c_ref() is cos and s_ref() is sin and c_ver == _version(cos) and s_ver == _version(sin)
                and how == in_a_row):
            return
    if cos.is_cuda and torch.cuda.is_current_stream_capturing():
        return
    for name, x in zip(names, (cos, sin)):
        first, second = _twice(x, in_a_row)
        if not torch.equal(first, second):
            if not torch.isfinite(x).all():  # (NaN never equals itself: "halves differ" would mislead)
                bad = torch.nonzero(~torch.isfinite(x))[0].tolist()
                raise ValueError(f"{fn}: {name} must be finite (the cos or sin of an angle), got "
                                 f"{name}[{', '.join(map(str, bad))}] = {x[tuple(bad)].item()}")
            raise ValueError(
                f"{fn}: {name} must hold each value twice, {_rule(name, in_a_row, x.shape[-1] // 2)}; its "
                f"{'even and odd features' if in_a_row else 'halves'} differ, "
                f"largest difference {(first - second).abs().max().item():.3g}")
    _checked[:] = [*_checked[-1:], (weakref.ref(cos), weakref.ref(sin), _version(cos), _version(sin), in_a_row)]


def _assert_twice(fn: str, cos: Tensor, sin: Tensor, in_a_row: bool, shape: str = "(…, T, r)", r: str = "r",
                  names: tuple = ("cos", "sin")) -> None:
    """``_check_twice`` for a graph that ``torch.compile`` traces, where Python cannot read a comparison's
    result: an assertion node (``torch._assert_async``) that fails when the compiled code runs, without
    a device sync on CUDA (a device-side assert there: the error surfaces at the next synchronization).
    Its message names r, not its value: a value read from the shape would make the compiler specialize on
    it (a recompilation for each rotary width under ``dynamic=True``)."""
    for name, x in zip(names, (cos, sin)):
        first, second = _twice(x, in_a_row)
        torch._assert_async((first == second).all(), f"{fn}: {name} {shape} must hold each value twice, "
                                                     f"{_rule(name, in_a_row, f'{r}/2')}")


def _version(x: Tensor):
    """The tensor's in-place version counter; None for an inference tensor (torch.inference_mode), which
    has none: the same inference tensor is then compared once, even if changed in place (no Hugging Face
    model changes its cos or sin in place)."""
    return None if x.is_inference() else x._version


def _check_whole(fn: str, qn: str, q: Tensor, k: Tensor | None, unsqueeze_dim: int) -> None:
    """Before the kernel is handed views of q and k (some of their features or tokens), what its own checks would
    report in terms of the views: q's dtype, and k matching q in batch, tokens, head_dim, dtype and device."""
    lay, t = ("(B, T, H, D)", lambda x: x.transpose(1, 2)) if unsqueeze_dim == 2 else ("(B, H, T, D)", lambda x: x)
    if q.dtype not in DTYPES:
        raise ValueError(f"{fn}: {qn} must be a floating-point tensor {lay}, dtype in {[str(d) for d in DTYPES]}, "
                         f"got {qn}.shape={tuple(t(q).shape)}, {qn}.dtype={q.dtype}")
    if k is not None and (k.shape[0] != q.shape[0] or k.shape[2:] != q.shape[2:] or k.dtype != q.dtype
                          or k.device != q.device):
        raise ValueError(f"{fn}: k must match q in batch, tokens, head_dim, dtype and device, got "
                         f"q.shape={tuple(t(q).shape)} {q.dtype} {q.device}, k.shape={tuple(t(k).shape)} {k.dtype} {k.device}")


def _check_callers(fn: str, named, dim: int) -> tuple[str, int]:
    """The tensors a drop-in with its own signature (CLVP's, Meta's) rotates, checked in the caller's terms and
    layout (``dim`` 2: ``(B, T, H, D)``; 1: ``(B, H, T, D)``): ``named`` holds (name, value) pairs, q first, then
    those that must match it (k, v). Each a 4-d tensor, q of a dtype the kernel takes, the others matching q in
    batch, tokens, head_dim, dtype and device (their heads may differ). Returns the layout's name and the token
    axis."""
    for name, x in named:
        if not isinstance(x, Tensor):
            raise ValueError(f"{fn}: {name} must be a tensor, got type({name})={type(x).__name__}")
    lay, t = ("(B, T, H, D)", 1) if dim == 2 else ("(B, H, T, D)", 2)
    (qn, q), names = named[0], [name for name, _ in named]
    if any(x.ndim != 4 for _, x in named):
        raise ValueError(f"{fn}: {', '.join(names[:-1])} and {names[-1]} must be 4-d {lay}, got "
                         + ", ".join(f"{name}.shape={tuple(x.shape)}" for name, x in named))
    if q.dtype not in DTYPES:
        raise ValueError(f"{fn}: {qn} must be a floating-point tensor {lay}, dtype in {[str(d) for d in DTYPES]}, "
                         f"got {qn}.shape={tuple(q.shape)}, {qn}.dtype={q.dtype}")
    for name, x in named[1:]:
        if (x.shape[0] != q.shape[0] or x.shape[t] != q.shape[t] or x.shape[3] != q.shape[3] or x.dtype != q.dtype
                or x.device != q.device):
            raise ValueError(f"{fn}: {name} must match {qn} in batch, tokens, head_dim, dtype and device ({lay}), got "
                             f"{qn}.shape={tuple(q.shape)} {q.dtype} {q.device}, {name}.shape={tuple(x.shape)} {x.dtype} "
                             f"{x.device}")
    return lay, t


def _gather(fn: str, q, k, v, cos, sin, position_ids, unsqueeze_dim) -> tuple[Tensor, Tensor]:
    """CLVP's arguments checked in the caller's terms (the drop-in it wraps would name q for v, and the gathered
    tensors for the table), the table's halves compared (once per call: CLVP's attention takes a new cos in every
    layer, so on CUDA a sync per layer), and ``cos[position_ids]``, ``sin[position_ids]``: the op their function
    runs, so an index out of range fails as it does in theirs (an IndexError on the CPU; a device-side assert on
    CUDA), and a negative one counts from the end, as in theirs."""
    if isinstance(unsqueeze_dim, bool) or not isinstance(unsqueeze_dim, numbers.Integral) or unsqueeze_dim not in (1, 2):
        raise ValueError(f"{fn}: unsqueeze_dim must be 1 (q, k and v (B, H, T, D)) or 2 ((B, T, H, D)), got "
                         f"unsqueeze_dim={unsqueeze_dim!r}")
    lay, t = _check_callers(fn, (("q", q), ("k", k), ("v", v)), unsqueeze_dim)
    for name, x in (("cos", cos), ("sin", sin), ("position_ids", position_ids)):
        if not isinstance(x, Tensor):
            raise ValueError(f"{fn}: {name} must be a tensor, got type({name})={type(x).__name__}")
    B, T, D = q.shape[0], q.shape[t], q.shape[3]
    shape = cos.shape
    if shape != sin.shape or len(shape) != 2 or shape[1] != D or D % 2 or not (cos.is_floating_point()
                                                                            and sin.is_floating_point()):
        raise ValueError(f"{fn}: cos and sin must both be floating-point tables of shape (S, {D}), the angles of S "
                         f"positions for all D = {D} features of q {lay} = {tuple(q.shape)} (their function rotates every "
                         f"feature it is given), D even; got cos.shape={tuple(cos.shape)} {cos.dtype}, "
                         f"sin.shape={tuple(sin.shape)} {sin.dtype}")
    if (position_ids.dtype not in (torch.int64, torch.int32) or position_ids.ndim != 2
            or position_ids.shape[1] != T or position_ids.shape[0] not in (1, B)):
        raise ValueError(f"{fn}: position_ids must be an int64 or int32 tensor of shape ({'1' if B == 1 else f'{B} or 1'}, {T}), the row of cos "
                         f"for each token of q {lay} = {tuple(q.shape)}; got position_ids.shape={tuple(position_ids.shape)}, "
                         f"position_ids.dtype={position_ids.dtype}")
    if position_ids.device != cos.device and position_ids.device.type != "cpu":
        raise ValueError(f"{fn}: position_ids must be on cos's device ({cos.device}) or the CPU, got "
                         f"position_ids.device={position_ids.device}")
    if torch.compiler.is_compiling():
        _assert_twice(fn, cos, sin, False, "(S, D)", "D")
    elif not cos.is_meta:
        _check_twice(fn, cos, sin, False)
    return cos[position_ids], sin[position_ids]


def _check_2d(fn: str, q, k, cos, sin, n) -> int:
    """What SAM 2's and EdgeTAM's functions share, checked in the caller's terms (the drop-in they wrap would name
    a part of k q): q ``(B, Hq, Tq, D)`` and k ``(B, Hk, Tk, D)``, one dtype and device, their heads and tokens
    their own; cos and sin one table ``(Tq, D)`` or ``(1, Tq, D)`` for the batch (their functions broadcast it over
    q's heads, so a batch of tables would be read as one per head), all D features; ``num_k_exclude_rope`` an
    integer n from 0 to Tk, the last n keys passed through (the object pointers). Returns m = Tk − n."""
    for name, x in (("q", q), ("k", k), ("cos", cos), ("sin", sin)):
        if not isinstance(x, Tensor):
            raise ValueError(f"{fn}: {name} must be a tensor, got type({name})={type(x).__name__}")
    if q.ndim != 4 or k.ndim != 4:
        raise ValueError(f"{fn}: q and k must be 4-d (B, H, T, D), as SAM's attention hands them over, got "
                         f"q.shape={tuple(q.shape)}, k.shape={tuple(k.shape)}")
    B, T, D = q.shape[0], q.shape[2], q.shape[3]
    if q.dtype not in DTYPES:
        raise ValueError(f"{fn}: q must be a floating-point tensor (B, H, T, D), dtype in {[str(d) for d in DTYPES]}, "
                         f"got q.shape={tuple(q.shape)}, q.dtype={q.dtype}")
    if k.shape[0] != B or k.shape[3] != D or k.dtype != q.dtype or k.device != q.device:
        raise ValueError(f"{fn}: k must match q in batch, head_dim, dtype and device (its heads and tokens may differ), "
                         f"got q.shape={tuple(q.shape)} {q.dtype} {q.device}, k.shape={tuple(k.shape)} {k.dtype} {k.device}")
    if D % 2:
        raise ValueError(f"{fn}: q's head_dim must be even (pairs of features turn together), got "
                         f"q.shape={tuple(q.shape)}, head_dim={D}")
    shape = cos.shape
    if (shape != sin.shape or len(shape) not in (2, 3) or shape[-2:] != (T, D) or len(shape) == 3 and shape[0] != 1
            or not (cos.is_floating_point() and sin.is_floating_point())):
        raise ValueError(f"{fn}: cos and sin must both be floating-point tables of shape ({T}, {D}) or (1, {T}, {D}), "
                         f"one for the batch, the angles of q's {T} tokens for all D = {D} features (their function "
                         f"rotates every feature), for q (B, H, T, D) = {tuple(q.shape)}; got "
                         f"cos.shape={tuple(cos.shape)} {cos.dtype}, sin.shape={tuple(sin.shape)} {sin.dtype}")
    Tk = k.shape[2]
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or not 0 <= n <= Tk:
        raise ValueError(f"{fn}: num_k_exclude_rope must be an integer from 0 to k's {Tk} tokens (the last ones pass "
                         f"through unturned), got num_k_exclude_rope={n!r}")
    return Tk - int(n)


def _check_sam(fn: str, q, k, cos, sin, n, repeat) -> tuple[int, int]:
    """SAM 2's arguments (``_check_2d``), and the first m = Tk − n keys turned by the table: m = Tq, or with
    ``repeat_freqs_k`` (or Tq = 1, which theirs broadcasts) a multiple of Tq, the table tiled (the memories of
    m / Tq frames, each of the image's Tq positions). Returns the number of tiles and m."""
    m = _check_2d(fn, q, k, cos, sin, n)
    _check_bool(fn, repeat, "repeat_freqs_k")
    T = q.shape[2]
    tiles = m // T if T else 0
    if m and (tiles * T != m or tiles != 1 and not (repeat or T == 1)):
        raise ValueError(f"{fn}: the keys turned, the first Tk − num_k_exclude_rope = {k.shape[2]} − {n} = {m}, must be "
                         f"q's {T} tokens, or with repeat_freqs_k=True a multiple of them (the memories of several "
                         f"frames, each turned by the same table); got q.shape={tuple(q.shape)}, k.shape={tuple(k.shape)}, "
                         f"repeat_freqs_k={repeat!r}")
    return tiles, m


def _check_edgetam(fn: str, q, k, cos, sin, cos_k, sin_k, n, frames) -> tuple[int, int, int]:
    """EdgeTAM's cross-attention arguments (``_check_2d``); cos_k and sin_k one table ``(S, D)`` or ``(1, S, D)``
    for the keys; ``repeat_freqs_k`` R a positive integer, the frames of memory: the first m = Tk − n keys are R
    frames of m / R tokens each, of which the last S are turned by the table and the first m / R − S (the frame's
    global latents) pass through. Returns R, the tokens of a frame, and m."""
    m = _check_2d(fn, q, k, cos, sin, n)
    for name, x in (("cos_k", cos_k), ("sin_k", sin_k)):
        if not isinstance(x, Tensor):
            raise ValueError(f"{fn}: {name} must be a tensor, got type({name})={type(x).__name__}")
    D, shape = q.shape[3], cos_k.shape
    if (shape != sin_k.shape or len(shape) not in (2, 3) or shape[-1] != D or len(shape) == 3 and shape[0] != 1
            or not (cos_k.is_floating_point() and sin_k.is_floating_point())):
        raise ValueError(f"{fn}: cos_k and sin_k must both be floating-point tables of shape (S, {D}) or (1, S, {D}), "
                         f"one for the batch, the angles of the S turned tokens of each frame of keys, all D = {D} "
                         f"features; got cos_k.shape={tuple(cos_k.shape)} {cos_k.dtype}, sin_k.shape={tuple(sin_k.shape)} "
                         f"{sin_k.dtype}")
    if m == 0:  # no key turned: theirs returns before it reads repeat_freqs_k
        return 0, 0, 0
    if isinstance(frames, bool) or not isinstance(frames, numbers.Integral) or frames < 1:
        raise ValueError(f"{fn}: repeat_freqs_k must be a positive integer, the frames of memory in k, got "
                         f"repeat_freqs_k={frames!r}")
    frames, S = int(frames), shape[-2]
    if m % frames or m // frames < S:
        raise ValueError(f"{fn}: the keys turned, the first Tk − num_k_exclude_rope = {k.shape[2]} − {n} = {m}, must be "
                         f"repeat_freqs_k = {frames} frames of equal length, each at least cos_k's {S} tokens (its last "
                         f"{S} turned, the rest passed through); got k.shape={tuple(k.shape)}, cos_k.shape={tuple(shape)}")
    return frames, m // frames, m


def _check_complex(fn: str, names, q, k, freqs, dim: int, vision: bool) -> Tensor:
    """Meta's complex form's arguments, checked in the caller's terms (the drop-in it wraps would name q, k, cos and
    sin): q and k 4-d, ``(B, T, H, D)`` (``dim`` 2, Llama 4's) or ``(B, H, T, D)`` (1, DeepSeek-V2's), k matching q
    in batch, tokens, head_dim, dtype and device; freqs complex, ``(B or 1, T, D/2)``, or for Llama 4's vision tower
    any shape of T·D/2 values, which its function views as ``(1, T, 1, D/2)`` (one table for the batch). Returns
    freqs as ``(B or 1, T, D/2)``."""
    qn, kn, fn_ = names
    lay, t = _check_callers(fn, ((qn, q), (kn, k)), dim)
    if not isinstance(freqs, Tensor):
        raise ValueError(f"{fn}: {fn_} must be a tensor, got type({fn_})={type(freqs).__name__}")
    B, T, D = q.shape[0], q.shape[t], q.shape[3]
    shape = freqs.shape
    if vision:
        ok = D % 2 == 0 and freqs.numel() == T * D // 2
        want = f"{T * D // 2} values, (T, D/2) = ({T}, {D // 2}) in any shape its function views as (1, T, 1, D/2)"
    else:
        ok = D % 2 == 0 and len(shape) == 3 and shape[1:] == (T, D // 2) and shape[0] in (1, B)
        want = f"shape ({'1' if B == 1 else f'{B} or 1'}, {T}, {D // 2}), (B or 1, T, D/2)"
    if not freqs.is_complex() or not ok:
        raise ValueError(f"{fn}: {fn_} must be a complex tensor of {want}: the rotation e^(i m θ) of each pair "
                         f"(2i, 2i + 1) of {qn} {lay} = {tuple(q.shape)}, D even; got {fn_}.shape={tuple(shape)}, "
                         f"{fn_}.dtype={freqs.dtype}")
    if torch.is_grad_enabled() and freqs.requires_grad:
        raise ValueError(f"{fn}: the kernel does not differentiate through {fn_}; got {fn_} that requires grad")
    if freqs.device != q.device:
        if dim == 2 and not vision:  # (Llama 4's attention moves it before the call; its function does not)
            raise ValueError(f"{fn}: {fn_} must be on {qn}'s device, {q.device}, got {fn_}.device={freqs.device}")
        freqs = freqs.to(q.device)  # (DeepSeek-V2's function and the vision tower's move it themselves)
    # torch's lazy conjugate and negative bits (freqs_cis.conj() is a view): view_as_real would refuse the first and
    # keep the second, which the kernel, reading memory, would not see. Resolved: a copy, only where a bit is set
    freqs = freqs.resolve_conj().resolve_neg()
    return freqs.reshape(1, T, D // 2) if vision else freqs


def _check_vision(fn: str, q, k, cos, sin) -> bool:
    """The shapes a vision tower's ``apply_rotary_pos_emb_vision`` takes, checked in the caller's terms (the
    drop-in it wraps would name the (B, H, T, D) view it hands the kernel): q and k ``(T, H, D)``, the patches of
    every image in one sequence, with cos and sin ``(T, r)``; or ``(B, T, H, D)`` with cos and sin ``(T, r)`` or
    ``(B or 1, T, r)``. r even, at most D. Returns whether q is 3-d."""
    for name, x in (("q", q), ("k", k), ("cos", cos), ("sin", sin)):
        if not isinstance(x, Tensor):
            raise ValueError(f"{fn}: {name} must be a tensor, got type({name})={type(x).__name__}")
    if q.ndim not in (3, 4) or k.ndim != q.ndim:
        raise ValueError(f"{fn}: q and k must both be (T, H, D), a vision tower's patches in one sequence, or (B, T, H, D), "
                         f"got q.shape={tuple(q.shape)}, k.shape={tuple(k.shape)}")
    T, D = q.shape[-3], q.shape[-1]
    if k.shape[-3] != T or k.shape[-1] != D or k.shape[:-3] != q.shape[:-3]:
        raise ValueError(f"{fn}: k must match q in {'batch, ' if q.ndim == 4 else ''}tokens and head_dim, got "
                         f"q.shape={tuple(q.shape)}, k.shape={tuple(k.shape)}")
    shape = cos.shape
    r = shape[-1] if shape else 0
    batch = len(shape) == 2 or len(shape) == 3 and q.ndim == 4 and shape[0] in (1, q.shape[0])
    if shape != sin.shape or not batch or shape[-2] != T or r % 2 or not 0 < r <= D:
        lay, also = ("(T, H, D)", "") if q.ndim == 3 else ("(B, T, H, D)", f" or (B or 1, {T}, r)")
        raise ValueError(f"{fn}: cos and sin must both have shape ({T}, r){also}, r even and at most D = {D}, for q of "
                         f"{lay} = {tuple(q.shape)}; got cos.shape={tuple(cos.shape)}, sin.shape={tuple(sin.shape)}")
    return q.ndim == 3
