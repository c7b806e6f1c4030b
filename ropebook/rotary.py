"""The thin ``nn.Module`` around ``apply_rope`` (a cos/sin cache) and the layout converters.

``RotaryEmbedding`` only caches cos and sin per device and dtype; the maths is
``ropebook.rope``. ``layout_permutation`` and ``interleaved_to_half_weights`` are
the permutation that checkpoint converters (Meta → Hugging Face Llama) apply to
the rows of W_q and W_k so that half-split RoPE computes the same attention.

Chapter: ``ch-rope-d-dims``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ropebook import _validate
from ropebook import rope as _rope
from ropebook._rotation import apply_cos_sin
from ropebook.scaling import DynamicNTK, LongRoPE, from_hf_config

__all__ = ["RotaryEmbedding", "layout_permutation", "interleaved_to_half_weights"]


def layout_permutation(head_dim: int, *, rotary_dim: int | None = None) -> Tensor:
    """Indices p with ``x_half = x_interleaved[..., p]``: even features first, then odd ones.

    Pair i sits at features (2i, 2i + 1) in the interleaved layout and at
    (i, i + d/2) in the half layout. ``torch.argsort(p)`` maps back. With partial rotary
    (``rotary_dim`` r < head_dim, as GPT-J) only the first r features are pairs; the rest stay where they are.

    >>> layout_permutation(6)
    tensor([0, 2, 4, 1, 3, 5])
    >>> layout_permutation(6, rotary_dim=4)
    tensor([0, 2, 1, 3, 4, 5])
    """
    fn = "layout_permutation"
    if _validate._is_int(head_dim) and head_dim > 0 and rotary_dim is not None:
        head_dim = int(head_dim)  # with partial rotary an odd head_dim is allowed: only the r rotated features pair up
    else:
        head_dim = _validate._check_dim(fn, head_dim, "head_dim")
    r = head_dim if rotary_dim is None else _check_rotary_dim(fn, rotary_dim, head_dim)
    return torch.cat((torch.arange(0, r, 2), torch.arange(1, r, 2), torch.arange(r, head_dim)))


def _check_rotary_dim(fn: str, rotary_dim, head_dim: int, name: str = "head_dim") -> int:
    r = _validate._check_dim(fn, rotary_dim, "rotary_dim")
    if r > head_dim:
        raise ValueError(f"{fn}: rotary_dim must be at most {name}={head_dim}, got rotary_dim={r}")
    return r


def interleaved_to_half_weights(w: Tensor, n_heads: int, *, head_dim: int | None = None,
                                rotary_dim: int | None = None) -> Tensor:
    """Permute the output rows of a q/k projection, head by head, from interleaved to half layout.

    If ``q = x @ w.T`` is used with ``layout="interleaved"``, then
    ``x @ interleaved_to_half_weights(w, n_heads).T`` with ``layout="half"`` gives
    the same attention scores (it is what Meta → Hugging Face Llama converters do).
    Works for a bias too (a 1-D ``w``).

    Args:
        w: the weight ``(n_heads * head_dim, in_features)``, stored as ``nn.Linear`` stores it, or a bias.
        n_heads: the heads of this projection: for W_k the number of key/value heads, which with
            grouped-query attention is smaller than the number of query heads (Hugging Face's converter
            permutes W_k with ``num_key_value_heads``).
        head_dim: if given, ``w.shape[0] // n_heads`` must equal it. A wrong ``n_heads`` that still divides
            the rows (the query heads passed for W_k) or a weight stored as ``(in, out)`` then raises instead
            of permuting silently with the wrong head size.
        rotary_dim: with partial rotary (GPT-J: ``rotary_dim`` < head_dim), the rotated features, the first
            ``rotary_dim`` of each head; only those are permuted. Default: the whole head. Converting a
            partial-rotary checkpoint without it changes the scores (the pass-through features would be
            permuted as if they were pairs).

    Shapes: ``w (n_heads * head_dim, in_features)`` → same shape.

    >>> w = torch.arange(8.0)[:, None]                 # 2 heads of head_dim 4
    >>> interleaved_to_half_weights(w, 2).flatten()
    tensor([0., 2., 1., 3., 4., 6., 5., 7.])
    """
    fn = "interleaved_to_half_weights"
    if not isinstance(w, Tensor) or w.ndim < 1:
        got = f"w.shape={tuple(w.shape)}" if isinstance(w, Tensor) else f"type(w)={type(w).__name__}"
        raise ValueError(f"{fn}: w must be a weight (n_heads * head_dim, in_features) or a "
                         f"bias (n_heads * head_dim,), got {got}")
    rows = w.shape[0]
    if not _validate._is_int(n_heads) or n_heads <= 0:
        raise ValueError(f"{fn}: n_heads must be a positive divisor of w.shape[0]={rows}, "
                         f"got n_heads={n_heads!r}{_validate._kind(n_heads)}")
    n_heads = int(n_heads)
    if head_dim is not None:
        head_dim = _validate._check_dim(fn, head_dim, "head_dim")
        if rows != n_heads * head_dim:
            raise ValueError(
                f"{fn}: w.shape[0] must be n_heads * head_dim = {n_heads} * {head_dim} = {n_heads * head_dim}, "
                f"got w.shape={tuple(w.shape)} (w.shape[0] // n_heads = {rows // n_heads}); for W_k pass the number "
                f"of key/value heads (fewer than the query heads with grouped-query attention), and pass w as "
                f"nn.Linear stores it, (out_features, in_features)")
    if rows % n_heads:
        raise ValueError(f"{fn}: n_heads must be a positive divisor of w.shape[0]={rows}, got n_heads={n_heads!r}")
    head_dim = rows // n_heads
    if rotary_dim is not None:
        p = layout_permutation(head_dim, rotary_dim=_check_rotary_dim(fn, rotary_dim, head_dim)).to(w.device)
        return w.reshape(n_heads, head_dim, *w.shape[1:])[:, p].reshape(w.shape)
    if head_dim % 2:
        raise ValueError(f"{fn}: head_dim = w.shape[0] / n_heads must be even (pairs of "
                         f"features), got head_dim={head_dim} from w.shape={tuple(w.shape)}, n_heads={n_heads}")
    p = layout_permutation(head_dim).to(w.device)
    return w.reshape(n_heads, head_dim, *w.shape[1:])[:, p].reshape(w.shape)


class RotaryEmbedding(nn.Module):
    """Apply RoPE to queries and keys with a cos/sin table cached per device and dtype.

    Args:
        dim: head dimension D.
        base, layout, scaling, rotary_dim: as in :func:`ropebook.apply_rope`.
        max_positions: initial table length; the table grows (doubling) as positions grow, to at most
            ``TABLE_LIMIT`` rows. A few positions more than twice past the table (a decode step at a far
            offset) are computed directly instead: exact all the same, with no table of every position below.

    ``forward(q, k, positions=None, *, offset=0)``: q ``(B, H, T, D)``, k ``(B, H_kv, T, D)``.
    For decoding with a KV cache pass ``offset`` (an int, or a tensor ``(B,)`` with
    one start position per batch row): the positions are ``offset + arange(T)``.
    Integer positions read the table; float positions and ``DynamicNTK`` (whose
    frequencies depend on the length) are computed directly. ``DynamicNTK`` takes its
    length from each call (``max(positions) + 1``, or ``seq_len`` when given); Hugging
    Face's rotary module instead keeps the longest length it has seen until one drops
    below the training length, so the two differ when a shorter call (at or past the
    training length) follows a longer one (``cos_sin(..., seq_len=...)`` can match it).

    >>> rope = RotaryEmbedding(8)
    >>> q, k = torch.randn(2, 4, 5, 8), torch.randn(2, 1, 5, 8)
    >>> q2, k2 = rope(q, k)
    >>> import ropebook as rb
    >>> torch.allclose(q2, rb.apply_rope(q), atol=1e-6) and torch.allclose(k2, rb.apply_rope(k), atol=1e-6)
    True
    >>> q1, k1 = rope(q[:, :, -1:], k[:, :, -1:], offset=torch.tensor([4, 4]))   # decode step at m = 4
    >>> torch.allclose(q1, q2[:, :, -1:], atol=1e-6)
    True
    """

    TABLE_LIMIT = 1 << 20  # the longest table grown on demand: 2^20 positions

    def __init__(self, dim: int, *, base: float = 10000.0, layout: str = "half", scaling=None,
                 rotary_dim: int | None = None, max_positions: int = 2048):
        super().__init__()
        dim = _validate._check_dim("RotaryEmbedding", dim)
        base = _validate._check_base("RotaryEmbedding", base)
        _validate._check_layout("RotaryEmbedding", layout)
        r = dim if rotary_dim is None else _check_rotary_dim("RotaryEmbedding", rotary_dim, dim, "dim")
        _validate._check_scaling("RotaryEmbedding", scaling)
        _validate._check_positive_int("RotaryEmbedding", max_positions, "max_positions")
        self.dim, self.base, self.layout, self.scaling, self.rotary_dim = dim, base, layout, scaling, r
        self.max_positions = int(max_positions)
        self._cache: dict[tuple, tuple[Tensor, Tensor]] = {}  # (device, dtype, long?) -> cos, sin (L, r/2)

    @classmethod
    def from_hf_config(cls, config, *, layer_type: str | None = None, **kwargs) -> "RotaryEmbedding":
        """The rotary embedding of a Hugging Face model config: head size, base, scaling rule and partial-rotary
        width read as ``transformers`` reads them (:func:`ropebook.scaling.from_hf_config`); ``kwargs``
        (``layout``, ``max_positions``, or any of those) override. Hugging Face's Llama family uses the half
        layout, the default here; GPT-J and other interleaved models need ``layout="interleaved"``.

        >>> rope = RotaryEmbedding.from_hf_config({"hidden_size": 64, "num_attention_heads": 4,
        ...                                        "rope_parameters": {"rope_type": "default", "rope_theta": 1e6}})
        >>> rope.dim, rope.base, rope.rotary_dim
        (16, 1000000.0, 16)
        """
        return cls(**{**from_hf_config(config, layer_type=layer_type), **kwargs})

    def extra_repr(self) -> str:
        return f"dim={self.dim}, base={self.base}, layout={self.layout!r}, scaling={self.scaling}, rotary_dim={self.rotary_dim}"

    def _table(self, length: int, *, dtype, device, seq_len, asked: int) -> tuple[Tensor, Tensor] | None:
        """The table of at least ``length`` positions, grown by doubling; None (compute directly) for ``length``
        more than twice the longest table held on this device (or ``max_positions``) when the call asks for
        few positions (``asked`` < a quarter of the table it would build: a decode step at a far offset). One far
        position does not pay for a table of every position below it (2^20 rows of a head of 128 are 512 MB of
        cos and sin, and seconds to build); a prefill asks for about as many positions as the table has rows,
        so it is built. Never more than ``max(max_positions, TABLE_LIMIT)`` rows."""
        long = isinstance(self.scaling, LongRoPE) and seq_len is not None and seq_len > self.scaling.original_max_positions
        dev = torch.device(device)
        key = (dev, dtype, long)
        table = self._cache.get(key)
        if table is None or table[0].shape[0] < length:
            limit = max(self.max_positions, self.TABLE_LIMIT)
            # any table on this device counts: a second dtype, or LongRoPE's long factors, grows like the first
            have = max([self.max_positions] + [t[0].shape[0] for k, t in self._cache.items() if k[0] == dev])
            if length > limit or (length > 2 * have and 4 * asked < length):
                return None
            size = min(limit, max(self.max_positions, 1 << (length - 1).bit_length()))
            table = _rope.rope_cos_sin(torch.arange(size, device=device), self.rotary_dim, base=self.base,
                                       scaling=self.scaling, seq_len=seq_len, dtype=dtype)  # (L, r/2) each
            self._cache[key] = table
        return table

    def cos_sin(self, positions: Tensor, *, dtype=torch.float32, seq_len=None) -> tuple[Tensor, Tensor]:
        """cos and sin for these positions, ``positions.shape + (rotary_dim // 2,)``, from the cache when possible.

        >>> cos, sin = RotaryEmbedding(8).cos_sin(torch.tensor([0, 5]))
        >>> cos.shape, bool(cos[0].eq(1).all())
        (torch.Size([2, 4]), True)
        """
        fn = "RotaryEmbedding.cos_sin"
        positions = _validate._as_tensor(fn, "positions", positions)
        _validate._check_position_values(fn, "positions", positions)
        _validate._check_float_dtype(fn, dtype)
        _validate._check_seq_len(fn, seq_len)
        if self.scaling is not None and self.scaling.uses_seq_len and seq_len is None and positions.numel():
            seq_len = int(positions.max()) + 1
        cacheable = not positions.is_floating_point() and not isinstance(self.scaling, DynamicNTK)
        if cacheable and positions.numel() and int(positions.min()) >= 0:
            # the table doubles as positions grow, up to a bound; a far position (a huge offset, or a jump more
            # than twice past the table) is computed directly, exact all the same
            table = self._table(int(positions.max()) + 1, dtype=dtype, device=positions.device, seq_len=seq_len,
                                asked=positions.numel())
            if table is not None:
                positions = positions.long()  # int8/int16/uint8 cannot index
                return table[0][positions], table[1][positions]
        return _rope.rope_cos_sin(positions, self.rotary_dim, base=self.base, scaling=self.scaling,
                                  seq_len=seq_len, dtype=dtype)

    def forward(self, q: Tensor, k: Tensor, positions=None, *, offset=0) -> tuple[Tensor, Tensor]:
        """Rotate q ``(B, H, T, D)`` and k ``(B, H_kv, T, D)``; returns the rotated pair."""
        fn = "RotaryEmbedding"
        for name, t in (("q", q), ("k", k)):
            if not isinstance(t, Tensor) or t.ndim < 2 or t.shape[-1] != self.dim:
                got = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
                raise ValueError(f"{fn}: {name} must have shape (..., T, dim={self.dim}), got {name}.shape={got}")
            _validate._check_x(fn, t, self.rotary_dim, name)
        if q.ndim != k.ndim or q.shape[:-3] != k.shape[:-3] or q.shape[-2] != k.shape[-2]:
            hint = ""
            if q.ndim == k.ndim >= 4 and q.shape[:-2] == k.shape[:-2]:  # the heads differ, the tokens agree
                hint = "; q and k look like (B, T, H, D): pass q.transpose(1, 2) and k.transpose(1, 2)"
            raise ValueError(f"{fn}: q (B, H, T, D) and k (B, H_kv, T, D) must share B and T, got "
                             f"q.shape={tuple(q.shape)}, k.shape={tuple(k.shape)}{hint}")
        if isinstance(offset, Tensor) and offset.ndim == 1 and q.ndim >= 3:
            if offset.shape[0] not in (1, q.shape[0]):
                raise ValueError(f"{fn}: a 1-d offset holds one start position per batch row, B={q.shape[0]}, "
                                 f"got offset.shape={tuple(offset.shape)}")
            offset = offset.to(q.device).reshape(-1, *([1] * (q.ndim - 2)))  # (B,) -> (B, 1, 1): one start per row
        out, shared = [], None
        for t in (q, k):
            pos = _rope._positions(fn, t, positions, offset)  # broadcastable to (..., T)
            key = (tuple(pos.shape), _rope._compute_dtype(t))
            if shared is None or shared[0] != key:  # q and k at the same positions share one lookup
                shared = (key, self.cos_sin(pos, dtype=key[1]))
            cos, sin = shared[1]
            out.append(apply_cos_sin(t, cos, sin, layout=self.layout, rotary_dim=self.rotary_dim))
        return out[0], out[1]
