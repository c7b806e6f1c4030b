"""Argument checks shared by the package's public functions: each error names the function, the argument,
what was expected and what it got (``apply_rope: head_dim must be even, got x.shape=(2, 4, 16, 63)``).

Checks that read tensor values (finiteness) are skipped while ``torch.compile`` traces, and none reads a
CUDA tensor's values on a hot path but the finiteness (and, in float32, the range) of float positions.
The module imports no other part of the package at load time, so every module (``scaling`` included) can
import its checks from here.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch
from torch import Tensor

LAYOUTS = ("half", "interleaved")


def _is_int(value) -> bool:
    """A Python or numpy integer, never a bool (``numbers.Integral``: ``np.int64(8)`` is one, a 0-d tensor is not)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _is_real(value) -> bool:
    """A Python or numpy int or float, never a bool. Not any ``numbers.Real``: a Fraction or a sympy number
    would pass and then fail inside torch arithmetic with an error that does not name the argument. (A check
    that takes numpy scalars returns the Python value, which callers use: a numpy float32 kept as it is would
    make the arithmetic float32.)"""
    return _is_int(value) or isinstance(value, (float, np.floating))


def _kind(value) -> str:
    """`` (a Tensor, not a Python or numpy number)`` after a value of another type, so that ``got dim=tensor(8)``
    explains itself; nothing after a number (``got dim=np.int64(7)`` is wrong by its value)."""
    return "" if _is_real(value) or isinstance(value, bool) else f" (a {type(value).__name__}, not a Python or numpy number)"


def _check_dim(fn: str, dim, name: str = "dim") -> int:
    """A positive even integer (numpy's too); returns it as an int."""
    if not _is_int(dim) or dim <= 0 or dim % 2:
        raise ValueError(f"{fn}: {name} must be a positive even integer, got {name}={dim!r}{_kind(dim)}")
    return int(dim)


def _check_base(fn: str, base) -> float:
    """A finite number > 1 (numpy's too), as everywhere in the package: with b = 1 every θ_i is 1, with b < 1
    the frequencies rise instead of fall. Returns it as a float."""
    if not _is_real(base) or not (math.isfinite(base) and base > 1):
        raise ValueError(f"{fn}: base must be a finite number > 1, got base={base!r}{_kind(base)}")
    return float(base)


def _check_layout(fn: str, layout) -> None:
    if layout not in LAYOUTS:
        raise ValueError(f"{fn}: layout must be one of {LAYOUTS}, got layout={layout!r}")


def _check_scaling(fn: str, scaling) -> None:
    if scaling is not None and not callable(getattr(scaling, "inv_freq", None)):
        raise ValueError(f"{fn}: scaling must be None or a rule from ropebook.scaling (Linear, NTKAware, DynamicNTK, "
                         f"YaRN, Llama3, LongRoPE), got scaling={scaling!r}")


def _broadcasts_to(shape, target) -> bool:
    """Whether a tensor of ``shape`` broadcasts to exactly ``target`` (no dimension of its own grows it)."""
    try:
        return torch.broadcast_shapes(shape, target) == tuple(target)
    except RuntimeError:
        return False


def _check_x(fn: str, x, rotary_dim, name: str = "x") -> int:
    """Validate x of shape (..., T, D) and return the number of rotated features."""
    if not isinstance(x, Tensor) or x.ndim < 2 or not x.is_floating_point():
        got = (f"{name}.shape={tuple(x.shape)}, {name}.dtype={x.dtype}" if isinstance(x, Tensor)
               else f"type({name})={type(x).__name__}")
        raise ValueError(f"{fn}: {name} must be a floating-point tensor of shape (..., T, D), got {got}")
    head_dim = x.shape[-1]
    if rotary_dim is None:
        if head_dim % 2:
            raise ValueError(f"{fn}: head_dim must be even, got {name}.shape={tuple(x.shape)}")
        return head_dim
    if not _is_int(rotary_dim) or rotary_dim <= 0 or rotary_dim % 2:
        raise ValueError(f"{fn}: rotary_dim must be a positive even integer, got rotary_dim={rotary_dim!r}{_kind(rotary_dim)}")
    rotary_dim = int(rotary_dim)
    if rotary_dim > head_dim:
        raise ValueError(
            f"{fn}: rotary_dim must be at most head_dim={head_dim}, got rotary_dim={rotary_dim} "
            f"({name}.shape={tuple(x.shape)})"
        )
    return rotary_dim


def _short_repr(value, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _as_tensor(fn: str, name: str, value, device=None) -> Tensor:
    """``torch.as_tensor``, with an error naming the argument when value is no numeric data (a str, a ragged list)."""
    try:
        t = torch.as_tensor(value, device=device)
        if not isinstance(value, (Tensor, np.ndarray, np.generic)) and t.dtype == torch.get_default_dtype():
            t = torch.as_tensor(value, dtype=torch.float64, device=device)  # Python floats: float32 would round them
        return t
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{fn}: {name} must be a tensor, an array or a list of integers or real floats, "
                         f"got {name}={_short_repr(value)}") from err


def _check_float_dtype(fn: str, dtype, *, name: str = "dtype", angles: bool = False) -> None:
    """A floating torch dtype; with ``angles``, float32 or float64 only (angles in fp32 or better)."""
    if angles:
        ok = dtype in (torch.float32, torch.float64)
    else:
        ok = isinstance(dtype, torch.dtype) and dtype.is_floating_point
    if not ok:
        want = "torch.float32 or torch.float64" if angles else "a floating-point torch dtype"
        raise ValueError(f"{fn}: {name} must be {want}, got {name}={dtype!r}")


def _check_seq_len(fn: str, seq_len) -> None:
    """None, a finite number or a one-element tensor (whose value is not read here: no device sync).
    A rule that uses the length checks its value again (``scaling._seq_len``)."""
    if seq_len is None or (type(seq_len) is int):
        return
    if isinstance(seq_len, Tensor):
        if seq_len.numel() != 1 or seq_len.dtype == torch.bool or seq_len.is_complex():
            raise ValueError(f"{fn}: seq_len must be None, a finite number or a one-element real tensor, "
                             f"got seq_len.shape={tuple(seq_len.shape)}, seq_len.dtype={seq_len.dtype}")
        return
    from ropebook.scaling import _seq_len  # here: ropebook.scaling imports this module

    _seq_len(fn, seq_len)


_EXACT_INTEGERS = {torch.float16: 2**11, torch.bfloat16: 2**8, torch.float32: 2**24}  # every integer up to this is exact


def _check_position_values(fn: str, name: str, t: Tensor) -> None:
    """Integers, or finite float32/float64 (the check of values is skipped while a compiler traces).

    float16 and bfloat16 are refused: they have rounded the positions already (bfloat16 holds integers exactly
    only up to 256), and the angles would be wrong by radians. float32 holds integers exactly up to 2^24, so
    float32 positions beyond it are refused too; pass int64 or float64 there.
    """
    if t.dtype == torch.bool or t.is_complex():
        raise ValueError(f"{fn}: {name} must be integers or real floats, got {name}.dtype={t.dtype}")
    if t.dtype in (torch.float16, torch.bfloat16):
        raise ValueError(f"{fn}: {name} must be integers or float32/float64, got {name}.dtype={t.dtype} "
                         f"({str(t.dtype).removeprefix('torch.')} holds integers exactly only up to "
                         f"{_EXACT_INTEGERS[t.dtype]}: the positions have been rounded already)")
    if t.is_floating_point() and not torch.compiler.is_compiling():
        finite = torch.isfinite(t)
        limit = _EXACT_INTEGERS.get(t.dtype)
        ok = finite if limit is None else finite & (t.abs() <= limit)
        if not bool(ok.all()):  # one read of the device either way
            if not bool(finite.all()):
                bad = t[~finite].flatten()[0].item()
                raise ValueError(f"{fn}: {name} must be finite, got {bad} in {name} of shape {tuple(t.shape)}")
            bad = t[~ok].flatten()[0].item()
            raise ValueError(f"{fn}: float32 {name} must be at most 2**24 = {limit} in size (float32 holds integers "
                             f"exactly only up to 2**24; pass int64 or float64), got {bad:.0f} in {name} of shape "
                             f"{tuple(t.shape)}")


def _is_integer_tensor(value) -> bool:
    """A tensor of integers: not floating-point, complex or bool."""
    return isinstance(value, Tensor) and not (value.is_floating_point() or value.is_complex() or value.dtype == torch.bool)


def _check_positive_int(fn: str, value, name: str, *, even: bool = False) -> int:
    """An integer > 0 (numpy's too, never a bool); even, with ``even``. Returns it as a Python int."""
    if not _is_int(value) or value <= 0 or (even and value % 2):
        kind = "a positive even integer" if even else "a positive integer"
        raise ValueError(f"{fn}: {name} must be {kind}, got {name}={value!r}")
    return int(value)


def _check_positive_number(fn: str, value, name: str, *, optional: bool = False, zero: bool = False) -> None:
    """A real, finite number > 0 (>= 0 with ``zero``; None passes with ``optional``), never a bool."""
    if optional and value is None:
        return
    ok = not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(value)
    if not (ok and (value >= 0 if zero else value > 0)):
        what = "a finite number >= 0" if zero else "a positive finite number"
        raise ValueError(f"{fn}: {name} must be {'None or ' if optional else ''}{what}, got {name}={value!r}")


def _check_bool(fn: str, value, name: str) -> None:
    """True or False (numpy's too): not 1, "yes" or None, which would pass an ``if`` silently."""
    if value is not True and value is not False and not isinstance(value, np.bool_):
        raise ValueError(f"{fn}: {name} must be True or False, got {name}={value!r}")


_TOKEN_DTYPES = (torch.int64, torch.int32)  # what nn.Embedding and advanced indexing take (bool, uint8: a mask)


def _reads_values(t: Tensor) -> bool:
    """Whether a check may read ``t``'s values: not while a compiler traces or a CUDA graph is captured (a
    read there fails or breaks the graph), and not on the meta device (no values)."""
    if torch.compiler.is_compiling() or t.device.type == "meta":
        return False
    return not (t.device.type == "cuda" and torch.cuda.is_current_stream_capturing())


def _check_index_range(fn: str, name: str, t: Tensor, high: int, bound: str, what: str = "token ids") -> None:
    """Integer ``t`` in [0, high) (``bound`` names high: ``"vocab_size=256"``). One read of the device (a min and a
    max together), also on a GPU, where an index out of range would fail later in the embedding or gather with a
    device-side assert that names no argument and spoils the CUDA context. Skipped for no elements and where
    :func:`_reads_values` says no."""
    if not t.numel() or not _reads_values(t):
        return
    low, top = torch.stack(torch.aminmax(t)).tolist()  # one transfer
    if low < 0 or top >= high:
        raise ValueError(f"{fn}: {name} must hold {what} in [0, {bound}), got values in [{low}, {top}] "
                         f"({name}.shape={tuple(t.shape)})")


def _check_tokens(fn: str, name: str, t, vocab_size: int | None, *, ndim: int = 2, shape: str = "(B, T)",
                  dtypes: tuple = _TOKEN_DTYPES, bound: str | None = None, max_len: int | None = None,
                  max_name: str = "max_seq_len", what: str = "token ids") -> None:
    """Token ids for a model: a tensor of one of ``dtypes`` (int64 or int32 by default: never float, bool or
    uint8) of ``ndim`` dimensions (``shape`` says which, for the message), values in [0, vocab_size) (``bound``
    names the limit, default ``"vocab_size=<vocab_size>"``; with vocab_size None the values are not read) and,
    with ``max_len``, a last dimension T of at most ``max_len`` (``max_name`` names it). ``what`` the values are,
    for the messages (``"positions"`` for indices that are not tokens).

    ``OffsetModel.forward: tokens must hold token ids in [0, n_content + 2=6), got values in [0, 9] (...)``.
    The range check reads the device once a call (see :func:`_check_index_range`)."""
    if not isinstance(t, Tensor) or t.ndim != ndim or t.dtype not in dtypes:
        got = (f"{name}.shape={tuple(t.shape)}, {name}.dtype={t.dtype}" if isinstance(t, Tensor)
               else f"type({name})={type(t).__name__}")
        kinds = " or ".join(str(d).removeprefix("torch.") for d in dtypes)
        raise ValueError(f"{fn}: {name} must be {kinds} of shape {shape} ({what}), got {got}")
    if max_len is not None and t.shape[-1] > max_len:
        raise ValueError(f"{fn}: the sequence length T of {name} must be at most {max_name}={max_len}, "
                         f"got {name}.shape={tuple(t.shape)}")
    if vocab_size is not None:
        _check_index_range(fn, name, t, vocab_size, f"vocab_size={vocab_size}" if bound is None else bound, what)


def _check_seed(fn: str, seed) -> int:
    """An integer (numpy's too, never a bool), as the Python int that torch's ``manual_seed`` takes."""
    if not _is_int(seed):
        raise ValueError(f"{fn}: seed must be an integer, got seed={seed!r}")
    return int(seed)


def _packed_lengths(fn: str, cu: list, n_tokens: int | None = None, n_heads: int | None = None) -> list[int]:
    """The lengths of packed sequences from their starts ``cu`` (cu_seqlens's values, a list): from 0,
    non-decreasing and, with ``n_tokens`` (q.shape[1]), ending there. ``n_heads``, q.shape[0]: when the starts
    end there instead, q is flash-attn's (N, H, D), and the message says so."""
    lengths = [b - a for a, b in zip(cu, cu[1:])]
    if not cu or cu[0] != 0 or min(lengths, default=0) < 0 or (n_tokens is not None and cu[-1] != n_tokens):
        shown = cu if len(cu) <= 8 else [*cu[:4], "...", *cu[-2:]]
        hint = ""
        if cu and n_heads is not None and cu[-1] == n_heads != n_tokens:
            hint = "; cu_seqlens ends at q.shape[0]: q and k look like (N, H, D), pass q.transpose(0, 1) and k.transpose(0, 1)"
        rule = "start at 0 and be non-decreasing" if n_tokens is None else \
            f"start at 0, be non-decreasing and end at q.shape[1]={n_tokens}"
        raise ValueError(f"{fn}: cu_seqlens must {rule}, got cu_seqlens={shown}{hint}")
    return lengths
