"""A small decoder-only language model whose position scheme is an option.

``TinyLM`` is a pre-norm GPT: token embedding, optional absolute positions,
``n_layers`` blocks of causal attention + a 4× GELU feed-forward, a final norm
and a head tied to the embedding. ``position`` picks one of five schemes:

- ``"none"``        no position information at all (causal masking only)
- ``"sinusoidal"``  the fixed absolute encoding of Vaswani et al. (``ropebook.positions``), added to the embeddings
- ``"learned"``     a learned absolute embedding per position, added to the embeddings
- ``"rope"``        RoPE on real Q/K/V projections (``ropebook.crope.RoPEAttention``)
- ``"crope"``       RoPE on complex-linear Q/K/V (``ropebook.crope.CRoPEAttention``)

Linear layers carry no bias, so the parameter counts of the chapter are exact.

Chapter: ``ch-crope``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ropebook.crope import CRoPEAttention, RoPEAttention
from ropebook.positions import sinusoidal_encoding
from ropebook._validate import _check_base, _check_index_range, _check_positive_int, _check_tokens

__all__ = ["POSITIONS", "ModelConfig", "TinyLM"]

POSITIONS = ("none", "sinusoidal", "learned", "rope", "crope")


@dataclass(frozen=True)
class ModelConfig:
    """Size and position scheme of a :class:`TinyLM`."""

    vocab_size: int = 256  # bytes
    dim: int = 64  # model width d_model (the book's notation)
    n_layers: int = 2  # transformer blocks
    n_heads: int = 4  # heads per block; head_dim = dim / n_heads must be even
    max_seq_len: int = 128  # longest sequence (sizes the learned/sinusoidal table)
    position: str = "rope"  # one of POSITIONS
    base: float = 10000.0  # RoPE base b
    mlp_ratio: int = 4  # feed-forward width = mlp_ratio · dim

    def __post_init__(self):
        if self.position not in POSITIONS:
            raise ValueError(f"ModelConfig: position must be one of {POSITIONS}, got position={self.position!r}")
        for name in ("vocab_size", "dim", "n_layers", "n_heads", "max_seq_len", "mlp_ratio"):
            # a Python int: to_dict() goes to JSON, which has no np.int64
            object.__setattr__(self, name, _check_positive_int("ModelConfig", getattr(self, name), name))
        object.__setattr__(self, "base", _check_base("ModelConfig", self.base))  # a float (numpy scalars too)
        if self.dim % (2 * self.n_heads):
            raise ValueError(f"ModelConfig: dim / n_heads must be an even integer, got dim={self.dim}, n_heads={self.n_heads}")

    def to_dict(self) -> dict:
        return asdict(self)


class _Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        attention = CRoPEAttention if cfg.position == "crope" else RoPEAttention
        self.norm1 = nn.LayerNorm(cfg.dim)
        self.attn = attention(cfg.dim, cfg.n_heads, base=cfg.base, rope=cfg.position in ("rope", "crope"))
        self.norm2 = nn.LayerNorm(cfg.dim)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.dim, cfg.mlp_ratio * cfg.dim, bias=False),
            nn.GELU(),
            nn.Linear(cfg.mlp_ratio * cfg.dim, cfg.dim, bias=False),
        )

    def forward(self, x: Tensor) -> Tensor:  # (B, T, D)
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TinyLM(nn.Module):
    """A decoder-only LM; ``forward(idx, targets)`` returns ``(logits, loss)``.

    Shapes: ``idx (B, T)`` int64 → ``logits (B, T, vocab_size)``; ``loss`` is a scalar
    (mean cross-entropy in nats) when ``targets (B, T)`` is given, else None.

    >>> torch.manual_seed(0) and None
    >>> model = TinyLM(ModelConfig(dim=32, n_layers=1, n_heads=2, position="crope"))
    >>> logits, loss = model(torch.randint(0, 256, (2, 10)), torch.randint(0, 256, (2, 10)))
    >>> logits.shape, abs(loss.item() - math.log(256)) < 0.2   # near-uniform guesses at initialisation
    (torch.Size([2, 10, 256]), True)
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        if not isinstance(config, ModelConfig):
            raise ValueError(f"TinyLM: config must be a ModelConfig, got type(config)={type(config).__name__}")
        self.config = cfg = config
        self.embed = nn.Embedding(cfg.vocab_size, cfg.dim)
        if cfg.position == "learned":
            self.pos_embed = nn.Parameter(torch.zeros(cfg.max_seq_len, cfg.dim))
            nn.init.normal_(self.pos_embed, std=0.02)
        elif cfg.position == "sinusoidal":
            self.register_buffer("pos_table", sinusoidal_encoding(cfg.max_seq_len, cfg.dim), persistent=False)
        self.blocks = nn.ModuleList(_Block(cfg) for _ in range(cfg.n_layers))
        self.norm = nn.LayerNorm(cfg.dim)
        nn.init.normal_(self.embed.weight, std=0.02)

    def forward(self, idx: Tensor, targets: Tensor | None = None):
        fn, vocab = "TinyLM", self.config.vocab_size
        # int64/int32 (what nn.Embedding takes), ids in range on every device (a GPU would fail with a device-side
        # assert), T at most max_seq_len (the learned and sinusoidal tables have that many rows; all schemes alike)
        _check_tokens(fn, "idx", idx, vocab, max_len=self.config.max_seq_len)
        B, T = idx.shape
        if targets is not None and (B == 0 or T == 0):  # the mean loss over no tokens is NaN (logits alone are fine:
            # a process of a distributed validation can get no windows)
            raise ValueError(f"TinyLM: with targets, idx must hold at least one sequence of at least one token, "
                             f"got idx.shape={tuple(idx.shape)}")
        if targets is not None:
            flat = targets.ndim == 1 if isinstance(targets, Tensor) else False  # (B·T,): the loss flattens them anyway
            view = targets.view(idx.shape) if flat and targets.numel() == idx.numel() else targets
            # int64 or uint8, what cross_entropy takes; in range too (cross_entropy would fail with "Target 10 is out
            # of bounds", or read −100 as "ignore")
            _check_tokens(fn, "targets", view, None, dtypes=(torch.int64, torch.uint8))  # the values after the shape
            if view.shape != idx.shape:
                raise ValueError(f"TinyLM: targets must have the shape of idx {tuple(idx.shape)}, "
                                 f"got targets.shape={tuple(targets.shape)}")
            _check_index_range(fn, "targets", targets, vocab, f"vocab_size={vocab}")
        x = self.embed(idx)  # (B, T, D)
        if self.config.position == "learned":
            x = x + self.pos_embed[:T]
        elif self.config.position == "sinusoidal":
            x = x + self.pos_table[:T] * (0.02 * math.sqrt(2.0))  # entries with the RMS (0.02) of the token embeddings at init
        for block in self.blocks:
            x = block(x)
        logits = F.linear(self.norm(x), self.embed.weight)  # (B, T, V), head tied to the embedding
        loss = None if targets is None else F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        return logits, loss
