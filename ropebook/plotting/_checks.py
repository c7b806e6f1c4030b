"""Argument checks the figure functions share: each error names the function, the argument, what was
expected and what it got (``plot_weight_rows: rows['a'] must have one value per key, len(keys)=3, got
shape=(2,)``), before numpy or matplotlib could fail deep inside or draw a wrong figure silently.

The checks of numbers (``_check_positive_int``, ``_check_positive_number``, ...) are ropebook._validate's;
these are the ones about arrays and the dictionaries the experiments and benchmarks write.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from ropebook._validate import _check_positive_number, _is_int, _is_real, _short_repr

__all__ = ["_array", "_mapping", "_require_keys", "_real_number", "_check_size", "_check_int"]


def _array(fn: str, name: str, value, *, ndim: int | None = 1, nonempty: bool = True, finite: bool = True,
           positive: bool = False, nonnegative: bool = False) -> np.ndarray:
    """``value`` (a tensor on any device, an array, a list or a range of real numbers) as a float64 array,
    checked (what positions.py's ``_numpy`` converted without checks).

    Refused: what is no array of real numbers (a str, None, a dict, a ragged list, complex or bool values);
    another number of dimensions than ``ndim`` (None: any); no elements (unless ``nonempty=False``); NaN or
    inf (unless ``finite=False``); values <= 0 with ``positive``, < 0 with ``nonnegative``.
    """
    raw = arr = None
    try:
        if hasattr(value, "detach"):  # a torch tensor, on any device
            raw = value.detach().cpu()
            kind = "c" if raw.is_complex() else "b" if str(raw.dtype) == "torch.bool" else "f"
            arr = raw.double().numpy() if kind == "f" else None
        else:
            raw = np.asarray(value)
            kind = raw.dtype.kind
            arr = raw.astype(np.float64) if kind in "iuf" else None
    except (TypeError, ValueError, RuntimeError):  # a ragged list, a tensor numpy cannot hold
        pass
    if arr is None:
        raise ValueError(f"{fn}: {name} must be an array of real numbers, got {name}={_short_repr(value)}"
                         + (f" (dtype {raw.dtype})" if raw is not None else ""))
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{fn}: {name} must be {ndim}-D, got {name}.shape={arr.shape}")
    if nonempty and arr.size == 0:
        raise ValueError(f"{fn}: {name} must not be empty, got {name}.shape={arr.shape}")
    for bad, what in ((~np.isfinite(arr) if finite else None, "finite"),
                      (arr <= 0 if positive else None, "> 0"), (arr < 0 if nonnegative else None, ">= 0")):
        if bad is not None and bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(f"{fn}: {name} must be {what} everywhere, got {name}[{', '.join(map(str, where))}]="
                             f"{float(arr[where])!r} ({name}.shape={arr.shape})")
    return arr


def _mapping(fn: str, name: str, value, *, nonempty: bool = True) -> Mapping:
    """A dict (any Mapping), with at least one entry unless ``nonempty=False``."""
    if not isinstance(value, Mapping):
        raise ValueError(f"{fn}: {name} must be a dict, got {name}={_short_repr(value)} (a {type(value).__name__})")
    if nonempty and not value:
        raise ValueError(f"{fn}: {name} must have at least one entry, got {name}={{}}")
    return value


def _require_keys(fn: str, name: str, value, keys: tuple[str, ...]) -> Mapping:
    """A dict holding every one of ``keys``."""
    _mapping(fn, name, value, nonempty=False)
    missing = [k for k in keys if k not in value]
    if missing:
        raise ValueError(f"{fn}: {name} must have the keys {keys}, got {name} without {missing} "
                         f"(its keys: {sorted(map(str, value))})")
    return value


def _real_number(fn: str, name: str, value, *, positive: bool = False) -> float:
    """A finite Python or numpy real number (> 0 with ``positive``), never a bool or a str; returns a float."""
    if not _is_real(value) or not np.isfinite(value) or (positive and value <= 0):
        what = "a positive finite number" if positive else "a finite number"
        raise ValueError(f"{fn}: {name} must be {what}, got {name}={_short_repr(value)}")
    return float(value)


def _check_int(fn: str, name: str, value, *, minimum: int = 0) -> int:
    """An integer (numpy's too, never a bool) >= ``minimum``; returns it as a Python int."""
    if not _is_int(value) or value < minimum:
        raise ValueError(f"{fn}: {name} must be an integer >= {minimum}, got {name}={_short_repr(value)}")
    return int(value)


def _check_size(fn: str, width, height) -> None:
    """The figure's width and height in inches: positive finite numbers."""
    _check_positive_number(fn, width, "width")
    _check_positive_number(fn, height, "height")
