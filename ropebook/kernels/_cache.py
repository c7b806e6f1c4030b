"""What the kernel reads about the frequencies, built once per model: ``rope_cache`` and its ``RopeCache``.

The kernel takes each pair's frequency as a 64-bit fixed-point fraction of a turn (``turns``), from which it forms
exact angles for any integer position, and optionally a float32 cos/sin table rounded from float64 angles.

Chapter: ``ch-rope-gpu``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import torch
from torch import Tensor

from ropebook._validate import _check_base, _check_dim, _check_positive_int, _check_scaling, _check_seq_len
from ropebook.rope import rope_cos_sin, rope_frequencies

__all__ = ["RopeCache", "rope_cache"]


@dataclass(frozen=True)
class RopeCache:
    """What the kernel reads about the frequencies; build it once with :func:`rope_cache`."""

    rotary_dim: int  # r: features rotated, the first r of each head
    turns: Tensor  # (r/2,) int64: θ_i / 2π as a 64-bit fixed-point fraction of a turn
    cos: Tensor | None  # (P, r/2) table, float32 from float64 angles (None: not built)
    sin: Tensor | None  # (P, r/2)
    attention_factor: float  # the scaling rule's factor on cos and sin (1.0 without one)

    def __post_init__(self):
        """A cache built by hand is checked as :func:`rope_cache`'s are made: the kernel indexes ``turns`` and
        the table by pair, and would read past a shorter one."""
        r = self.rotary_dim
        if isinstance(r, bool) or not isinstance(r, int) or r < 2 or r % 2:
            raise ValueError(f"RopeCache: rotary_dim must be a positive even int, got rotary_dim={r!r}")
        t = self.turns
        if not isinstance(t, Tensor) or t.dtype != torch.int64 or tuple(t.shape) != (r // 2,):
            got = f"turns.shape={tuple(t.shape)}, turns.dtype={t.dtype}" if isinstance(t, Tensor) else f"type(turns)={type(t).__name__}"
            raise ValueError(f"RopeCache: turns must be an int64 tensor of shape ({r // 2},) (rotary_dim/2 fixed-point "
                             f"turns, see rope_cache), got {got}")
        if (self.cos is None) != (self.sin is None):
            raise ValueError(f"RopeCache: cos and sin must both be tables or both None, got cos "
                             f"{'None' if self.cos is None else 'a table'} and sin {'None' if self.sin is None else 'a table'}")
        for name, c in (("cos", self.cos), ("sin", self.sin)):
            if c is not None and (not isinstance(c, Tensor) or not c.is_floating_point() or c.ndim != 2
                                  or c.shape[1] != r // 2 or c.shape != self.cos.shape or c.device != t.device):
                got = (f"{name}.shape={tuple(c.shape)}, {name}.dtype={c.dtype}, {name}.device={c.device}"
                       if isinstance(c, Tensor) else f"type({name})={type(c).__name__}")
                raise ValueError(f"RopeCache: {name} must be a floating-point (P, {r // 2}) table on turns's device "
                                 f"{t.device}, shaped as cos, got {got}")
        f = self.attention_factor
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not math.isfinite(f) or f <= 0:
            raise ValueError(f"RopeCache: attention_factor must be a positive finite number, got attention_factor={f!r}")


# π to 70 digits, as an exact fraction: 2^64·θ/2π is then formed exactly for a float64 θ (its error,
# under 10^-50 units of the turn, cannot move the rounding but at an exact tie, which an irrational π rules out)
_PI = Fraction("3.141592653589793238462643383279502884197169399375105820974944592307816")


def _turns(inv_freq: Tensor) -> Tensor:
    """round(2^64 · θ_i / 2π) modulo 2^64, as signed int64: the angle per position in fixed point, the
    nearest integer to the float64 θ_i's exact value (in float64 arithmetic, θ/2π·2^64 has 53 significant
    bits, not 64: up to a few hundred units off, a frequency error of about m·θ_i·2^-53)."""
    out = []
    for theta in inv_freq.double().cpu().tolist():
        v = round(Fraction(theta) * 2**63 / _PI) % 2**64
        out.append(v - 2**64 if v >= 2**63 else v)
    return torch.tensor(out, dtype=torch.int64)


def rope_cache(rotary_dim: int, *, base: float = 10000.0, scaling=None, seq_len=None, max_positions: int | None = None,
               device=None) -> RopeCache:
    """Frequencies for the kernel: fixed-point turns always, a cos/sin table for ``max_positions`` positions if given.

    The table is float32, rounded from float64 angles (``rb.rope_cos_sin``); the
    turns let the kernel form exact angles itself for any integer position. A rule whose frequencies
    depend on the length (``DynamicNTK``, ``LongRoPE``) needs ``seq_len``: the cache freezes it.

    >>> c = rope_cache(8, max_positions=4)
    >>> c.turns.shape, c.cos.shape, c.attention_factor
    (torch.Size([4]), torch.Size([4, 4]), 1.0)
    """
    _check_dim("rope_cache", rotary_dim, "rotary_dim")
    base = _check_base("rope_cache", base)  # a float (numpy scalars too)
    _check_scaling("rope_cache", scaling)
    _check_seq_len("rope_cache", seq_len)
    if scaling is not None and scaling.uses_seq_len and seq_len is None:
        raise ValueError(f"rope_cache: scaling={type(scaling).__name__}(...) depends on the sequence length, which a "
                         f"cache freezes: pass seq_len= (the length it serves; apply_rope and Hugging Face use "
                         f"max(position_ids) + 1), got seq_len=None")
    inv_freq = rope_frequencies(rotary_dim, base=base, scaling=scaling, seq_len=seq_len)  # (r/2,) float64
    factor = 1.0 if scaling is None else float(scaling.attention_factor)
    cos = sin = None
    if max_positions is not None:
        _check_positive_int("rope_cache", max_positions, "max_positions")  # (numpy's integers too)
        cos, sin = rope_cos_sin(torch.arange(int(max_positions)), rotary_dim, base=base, scaling=scaling, seq_len=seq_len)
        cos, sin = cos.to(device), sin.to(device)  # (P, r/2) float32
    return RopeCache(rotary_dim, _turns(inv_freq).to(device), cos, sin, factor)
