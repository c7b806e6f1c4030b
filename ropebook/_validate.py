"""Argument checks shared by the package's public functions: each error names the function, the argument,
what was expected and what it got (``apply_rope: head_dim must be even, got x.shape=(2, 4, 16, 63)``).

Checks that read tensor values (finiteness) are skipped while ``torch.compile`` traces, and none reads a
CUDA tensor's values on a hot path but the finiteness of float positions. The module imports no other
part of the package at load time, so every module (``scaling`` included) can import its checks from here.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch
from torch import Tensor

LAYOUTS = ("half", "interleaved")


def _check_dim(fn: str, dim, name: str = "dim") -> None:
    if isinstance(dim, bool) or not isinstance(dim, int) or dim <= 0 or dim % 2:
        raise ValueError(f"{fn}: {name} must be a positive even integer, got {name}={dim!r}")


def _check_base(fn: str, base) -> None:
    if isinstance(base, bool) or not isinstance(base, (int, float)) or not (math.isfinite(base) and base > 0):
        raise ValueError(f"{fn}: base must be a positive finite number, got base={base!r}")


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
    if isinstance(rotary_dim, bool) or not isinstance(rotary_dim, int) or rotary_dim <= 0 or rotary_dim % 2:
        raise ValueError(f"{fn}: rotary_dim must be a positive even integer, got rotary_dim={rotary_dim!r}")
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
        return torch.as_tensor(value, device=device)
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


def _check_position_values(fn: str, name: str, t: Tensor) -> None:
    """Integers or finite real floats (the check of values is skipped while a compiler traces)."""
    if t.dtype == torch.bool or t.is_complex():
        raise ValueError(f"{fn}: {name} must be integers or real floats, got {name}.dtype={t.dtype}")
    if t.is_floating_point() and not torch.compiler.is_compiling():
        finite = torch.isfinite(t)
        if not bool(finite.all()):
            bad = t[~finite].flatten()[0].item()
            raise ValueError(f"{fn}: {name} must be finite, got {bad} in {name} of shape {tuple(t.shape)}")


def _is_integer_tensor(value) -> bool:
    """A tensor of integers: not floating-point, complex or bool."""
    return isinstance(value, Tensor) and not (value.is_floating_point() or value.is_complex() or value.dtype == torch.bool)


def _check_positive_int(fn: str, value, name: str, *, even: bool = False) -> None:
    """An integer > 0 (numpy's too, never a bool); even, with ``even``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0 or (even and value % 2):
        kind = "a positive even integer" if even else "a positive integer"
        raise ValueError(f"{fn}: {name} must be {kind}, got {name}={value!r}")


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
