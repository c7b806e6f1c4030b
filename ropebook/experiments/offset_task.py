"""The "next / next-next" toy task: one attention layer that must read one or two places to the right.

A sequence of random content tokens holds one marker at position i. The marker
NEXT asks for the token at i + 1, NEXT2 for the token at i + 2 (see
``ropebook.data.next_token_task``). ``OffsetModel`` is the smallest model that
can answer: an embedding, one bidirectional attention layer with one head, and a
linear read-out at the marker. ``constructed_offset_model`` sets its weights by
hand (complex-linear Q/K/V, so the solution is a CRoPE layer), and
``train_offset_model`` shows that gradient descent finds a solution too.

Chapter: ``ch-crope``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ropebook._validate import (_check_base, _check_index_range, _check_positive_int, _check_positive_number,
                                _check_seed, _check_tokens)
from ropebook.crope import CRoPEAttention, RoPEAttention
from ropebook.data import next_token_task

__all__ = ["OffsetModel", "constructed_offset_model", "train_offset_model", "offset_accuracy"]


class OffsetModel(nn.Module):
    """Embedding → one attention layer (one head, no causal mask) → read-out at the marker.

    Args:
        n_content: number of content tokens; the vocabulary adds NEXT and NEXT2.
        dim: width D (even).
        position: ``"crope"`` (complex-linear Q/K/V), ``"rope"`` (real Q/K/V) or ``"none"``.
        base: RoPE base.

    Shapes: ``tokens (B, T)``, ``marker_pos (B,)`` → logits ``(B, n_content)``.

    >>> model = OffsetModel(4, 16)
    >>> model(torch.zeros(2, 6, dtype=torch.long), torch.tensor([0, 3])).shape
    torch.Size([2, 4])
    """

    def __init__(self, n_content: int, dim: int, *, position: str = "crope", base: float = 10000.0):
        super().__init__()
        if position not in ("crope", "rope", "none"):
            raise ValueError(f"OffsetModel: position must be 'crope', 'rope' or 'none', got position={position!r}")
        n_content = _check_positive_int("OffsetModel", n_content, "n_content")
        self.n_content, self.position = n_content, position
        self.embed = nn.Embedding(n_content + 2, dim)
        attention = CRoPEAttention if position == "crope" else RoPEAttention
        self.attn = attention(dim, 1, base=base, rope=position != "none", causal=False)
        self.readout = nn.Linear(dim, n_content, bias=False)

    def _check(self, fn: str, tokens, marker_pos) -> None:
        """tokens (B, T) in [0, n_content + 2) and marker_pos (B,) in [0, T), int64 or int32: a (1,) marker_pos
        broadcast over the batch, and a negative one wrapped round, silently; a bool or uint8 one is a mask. The
        values are read on every device (one read each; skipped while a compiler traces): out of range on a GPU,
        the embedding or the gather would fail with a device-side assert."""
        fn = f"OffsetModel.{fn}"
        _check_tokens(fn, "tokens", tokens, None)  # the shapes first, then the values
        B, T = tokens.shape
        _check_tokens(fn, "marker_pos", marker_pos, None, ndim=1, shape=f"(B,)=({B},)", what="positions")
        if marker_pos.shape != (B,):
            raise ValueError(f"{fn}: marker_pos must be int64 or int32 of shape (B,)=({B},), "
                             f"got marker_pos.shape={tuple(marker_pos.shape)}")
        _check_index_range(fn, "tokens", tokens, self.n_content + 2, f"n_content + 2={self.n_content + 2}")
        _check_index_range(fn, "marker_pos", marker_pos, T, f"T={T}", what="positions")

    def forward(self, tokens: Tensor, marker_pos: Tensor) -> Tensor:
        self._check("forward", tokens, marker_pos)
        y = self.attn(self.embed(tokens))  # (B, T, D)
        at_marker = y[torch.arange(len(tokens)), marker_pos]  # (B, D)
        return self.readout(at_marker)  # (B, n_content)

    def marker_attention(self, tokens: Tensor, marker_pos: Tensor) -> Tensor:
        """Attention weights of the marker's query over all positions, ``(B, T)``."""
        self._check("marker_attention", tokens, marker_pos)
        scores = self.attn.scores(self.embed(tokens))[:, 0]  # (B, T, T), head 0
        return scores[torch.arange(len(tokens)), marker_pos].softmax(-1)


def _check_model(fn: str, model) -> None:
    if not isinstance(model, OffsetModel):
        raise ValueError(f"{fn}: model must be an OffsetModel, got type(model)={type(model).__name__}")


@torch.no_grad()
def constructed_offset_model(n_content: int, *, sharpness: float = 100.0, gain: float = 20.0,
                             base: float = 10000.0) -> OffsetModel:
    """A hand-set CRoPE solution with D = 2(n_content + 3): n_content + 3 complex coordinates.

    Coordinates 0 … n_content − 1 hold the content token (one-hot), n_content and
    n_content + 1 mark NEXT and NEXT2, the last is 1 for every token. Then, with
    θ_j = base^(−2j/D):

    - keys: k̃ = (1, …, 1) for every token (W_k reads only the constant coordinate);
    - queries: NEXT gives q̃_j = α e^{iθ_j}, NEXT2 gives q̃_j = α e^{2iθ_j}, content gives 0,
      so the score Re Σ_j q̃_j e^{i(m−n)θ_j} = α Σ_j cos((m − n + s)θ_j) peaks at n = m + s;
    - values: ṽ = the content one-hot; the output projection is the identity and the
      read-out takes the real part of coordinate c, times ``gain``.

    >>> model = constructed_offset_model(6)
    >>> offset_accuracy(model, n_content=6, seq_len=16, seed=0)
    1.0
    """
    fn = "constructed_offset_model"
    n_content = _check_positive_int(fn, n_content, "n_content")
    _check_positive_number(fn, sharpness, "sharpness")  # NaN or inf would give NaN weights, silently
    _check_positive_number(fn, gain, "gain")
    base = _check_base(fn, base)
    n = n_content + 3  # complex coordinates
    dim = 2 * n
    model = OffsetModel(n_content, dim, position="crope", base=base)
    for p in model.parameters():
        p.zero_()
    theta = base ** (-2.0 * torch.arange(n, dtype=torch.float64) / dim)  # (n,) the head's frequencies
    emb = model.embed.weight  # (V, D), real parts at 2j
    emb[torch.arange(n_content), 2 * torch.arange(n_content)] = 1.0  # content one-hot
    emb[n_content, 2 * n_content] = 1.0  # NEXT
    emb[n_content + 1, 2 * (n_content + 1)] = 1.0  # NEXT2
    emb[:, 2 * (n - 1)] = 1.0  # the constant coordinate
    attn = model.attn
    attn.k_proj.weight_real[:, n - 1] = 1.0  # k̃ = 1 ⋅ (constant coordinate)
    for s, column in ((1, n_content), (2, n_content + 1)):
        attn.q_proj.weight_real[:, column] = (sharpness * torch.cos(s * theta)).float()
        attn.q_proj.weight_imag[:, column] = (sharpness * torch.sin(s * theta)).float()
    attn.v_proj.weight_real[torch.arange(n_content), torch.arange(n_content)] = 1.0
    attn.out_proj.weight.copy_(torch.eye(dim))
    model.readout.weight[torch.arange(n_content), 2 * torch.arange(n_content)] = gain
    return model


@torch.no_grad()
def offset_accuracy(model: OffsetModel, *, n_content: int, seq_len: int, seed: int, n: int = 512) -> float:
    """Fraction of ``n`` fresh task sequences (seeded) whose answer is the model's top logit."""
    _check_model("offset_accuracy", model)
    _check_positive_int("offset_accuracy", n, "n")  # else next_token_task names its batch_size
    seed = _check_seed("offset_accuracy", seed)
    if n_content != model.n_content:  # another task: its tokens mean other things to the model
        raise ValueError(f"offset_accuracy: n_content must be the model's, {model.n_content}, got n_content={n_content}")
    tokens, pos, answer = next_token_task(n, seq_len, n_content, generator=torch.Generator().manual_seed(seed))
    return float((model(tokens, pos).argmax(-1) == answer).float().mean())


def train_offset_model(model: OffsetModel, *, steps: int = 400, batch_size: int = 64, seq_len: int = 16,
                       lr: float = 1e-2, seed: int = 0) -> list[float]:
    """Adam on the cross-entropy at the marker; returns the loss per step (nats)."""
    fn = "train_offset_model"
    _check_model(fn, model)
    _check_positive_int(fn, steps, "steps")
    _check_positive_int(fn, batch_size, "batch_size")
    _check_positive_number(fn, lr, "lr")
    seed = _check_seed(fn, seed)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        tokens, pos, answer = next_token_task(batch_size, seq_len, model.n_content, generator=gen)
        loss = F.cross_entropy(model(tokens, pos), answer)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses
