"""Position encodings before RoPE: sinusoidal (absolute), Shaw's clipped offsets, T5 buckets, ALiBi.

Absolute encodings add a vector per position to the token embeddings; relative
ones change the attention score of query position m and key position n by
something that depends on n − m only. These are the encodings the chapter
``ch-why-position`` compares, written to match their papers (and, where one
exists, the Hugging Face implementation, which the tests use as an oracle).
Softmax attention itself is ``ropebook.attention.softmax_attention``.

Chapter: ``ch-why-position``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ropebook._validate import _as_tensor, _check_base, _check_bool, _check_float_dtype, _check_positive_int

__all__ = ["sinusoidal_encoding", "shaw_relative_index", "t5_relative_bucket", "alibi_slopes", "alibi_bias"]


def sinusoidal_encoding(seq_len: int, dim: int, *, base: float = 10000.0, dtype: torch.dtype = torch.float32) -> Tensor:
    """The Transformer's absolute encoding: PE[m, 2i] = sin(m·θ_i), PE[m, 2i+1] = cos(m·θ_i).

    θ_i = base^(−2i/dim) are the same frequencies RoPE uses (Vaswani et al. 2017,
    §3.5). Angles are formed in float64 and the result cast to ``dtype``.

    Shapes: returns ``(seq_len, dim)``.

    >>> sinusoidal_encoding(2, 4, base=100.0)
    tensor([[0.0000, 1.0000, 0.0000, 1.0000],
            [0.8415, 0.5403, 0.0998, 0.9950]])
    """
    fn = "sinusoidal_encoding"
    _check_positive_int(fn, seq_len, "seq_len")
    _check_positive_int(fn, dim, "dim", even=True)
    base = _check_base(fn, base)  # a float (numpy scalars too)
    _check_float_dtype(fn, dtype)
    theta = base ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)  # (D/2,)
    angles = torch.arange(seq_len, dtype=torch.float64)[:, None] * theta  # (T, D/2)
    return torch.stack((angles.sin(), angles.cos()), dim=-1).flatten(-2).to(dtype)  # (T, D)


def shaw_relative_index(seq_len: int, max_relative_position: int) -> Tensor:
    """Index of the learned vector a_{n−m} Shaw et al. (2018) add for query m, key n: clip(n − m, −κ, κ) + κ,
    with κ = ``max_relative_position``, the clipping distance.

    Offsets beyond ±κ share the outermost vector, so 2κ + 1 vectors cover every length.

    Shapes: returns ``(seq_len, seq_len)`` int64 with values in ``[0, 2κ]``.

    >>> shaw_relative_index(4, 1)
    tensor([[1, 2, 2, 2],
            [0, 1, 2, 2],
            [0, 0, 1, 2],
            [0, 0, 0, 1]])
    """
    fn = "shaw_relative_index"
    _check_positive_int(fn, seq_len, "seq_len")
    _check_positive_int(fn, max_relative_position, "max_relative_position")
    pos = torch.arange(seq_len)
    relative = pos[None, :] - pos[:, None]  # (T, T): n − m
    k = max_relative_position
    return relative.clamp(-k, k) + k


def t5_relative_bucket(relative_position, *, bidirectional: bool = True, num_buckets: int = 32,
                       max_distance: int = 128) -> Tensor:
    """T5's bucket for the offset n − m: exact for small offsets, logarithmic up to max_distance, then one bucket.

    With ``bidirectional``, half of the buckets are for keys after the query.
    Of the (remaining) buckets, half hold offsets 0 … max_exact − 1 one each;
    the rest cover max_exact … max_distance on a log scale; anything farther
    shares the last bucket. Causal T5 (``bidirectional=False``) sends every
    key after the query to bucket 0. Raffel et al. (2020), §2.1; Mesh TensorFlow.

    Shapes: ``relative_position`` any integer shape → int64 buckets of the same shape.

    >>> t5_relative_bucket(torch.tensor([-200, -20, -3, 0, 3, 20, 200]))
    tensor([15, 10,  3,  0, 19, 26, 31])
    """
    fn = "t5_relative_bucket"
    relative_position = _as_tensor(fn, "relative_position", relative_position)
    if relative_position.is_floating_point() or relative_position.is_complex() or relative_position.dtype == torch.bool:
        raise ValueError(f"{fn}: relative_position must hold integers, got dtype={relative_position.dtype}")
    relative_position = relative_position.long()  # abs() and minus in int8/int16/uint8 overflow or wrap
    _check_bool(fn, bidirectional, "bidirectional")
    _check_positive_int(fn, num_buckets, "num_buckets", even=bidirectional)
    _check_positive_int(fn, max_distance, "max_distance")
    buckets = torch.zeros_like(relative_position, dtype=torch.int64)
    if bidirectional:
        num_buckets //= 2
        buckets += (relative_position > 0).long() * num_buckets  # keys after the query: upper half
        distance = relative_position.abs()
    else:
        distance = (-relative_position).clamp(min=0)  # keys before the query; later keys → 0
    max_exact = num_buckets // 2
    if max_exact < 1 or max_distance <= max_exact:
        raise ValueError(f"{fn}: need max_distance > max_exact = num_buckets//2 (//2 again if bidirectional) ≥ 1, "
                         f"got num_buckets={num_buckets * (2 if bidirectional else 1)}, max_distance={max_distance}")
    ratio = distance.double().clamp(min=1) / max_exact  # clamp avoids log(0); small distances are exact anyway
    log_bucket = max_exact + (ratio.log() / math.log(max_distance / max_exact) * (num_buckets - max_exact)).long()
    log_bucket = log_bucket.clamp(max=num_buckets - 1)
    return buckets + torch.where(distance < max_exact, distance.long(), log_bucket)


def alibi_slopes(n_heads: int) -> Tensor:
    """ALiBi's per-head slopes: the geometric sequence 2^(−8/H), 2^(−16/H), …, 2^(−8) (Press et al. 2022, §3).

    For H not a power of two, the reference implementation takes the slopes for the nearest smaller
    power of two, 2^⌊log₂H⌋, and fills up with every other slope of twice that many.

    Shapes: returns ``(n_heads,)`` float64.

    >>> alibi_slopes(4)
    tensor([0.2500, 0.0625, 0.0156, 0.0039], dtype=torch.float64)
    """
    _check_positive_int("alibi_slopes", n_heads, "n_heads")

    def geometric(h: int) -> list[float]:
        return [2.0 ** (-8.0 * (j + 1) / h) for j in range(h)]

    closest = 2 ** int(math.floor(math.log2(n_heads)))
    slopes = geometric(closest) + geometric(2 * closest)[0::2][: n_heads - closest]
    return torch.tensor(slopes, dtype=torch.float64)


def alibi_bias(seq_len: int, n_heads: int) -> Tensor:
    """The bias ALiBi adds to the scores: −slope_h · (m − n) for keys n ≤ m, −inf for n > m (causal).

    ALiBi is defined for causal language models, so the causal mask is part of the bias:
    add it to qᵀk/√d and take the softmax.

    Shapes: returns ``(n_heads, seq_len, seq_len)`` float64.

    >>> alibi_bias(3, 1)[0]
    tensor([[ 0.0000,    -inf,    -inf],
            [-0.0039,  0.0000,    -inf],
            [-0.0078, -0.0039,  0.0000]], dtype=torch.float64)
    """
    _check_positive_int("alibi_bias", seq_len, "seq_len")
    _check_positive_int("alibi_bias", n_heads, "n_heads")
    slopes = alibi_slopes(n_heads)  # (H,)
    pos = torch.arange(seq_len, dtype=torch.float64)
    offset = pos[None, :] - pos[:, None]  # (T, T): n − m, ≤ 0 for the keys a causal query sees
    bias = slopes[:, None, None] * offset  # (H, T, T)
    return bias.masked_fill(offset > 0, float("-inf"))
