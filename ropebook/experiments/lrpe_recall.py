"""Copy with an offset: does linear attention find the token k places back, with each LRPE member?

The task: a sequence of random tokens x_0 … x_{T−1} from a vocabulary of V; at
every position t ≥ k the target is x_{t−k}. Solving it needs the relative offset
k, which a causal linear-attention layer without position information cannot
see (its state is an order-free sum over the past). The model is one layer of
causal linear attention (1 + elu features, the encoding in the numerator only),
with a residual connection and a linear read-out; everything else is equal
across encodings, and every encoding sees the same batches for a given seed.

    python -m ropebook.experiments.lrpe_recall --seeds 0 1 2 --steps 600 --out book/data/lrpe_recall.json

writes the full results that the chapter plots: 24 runs, 11 minutes of wall
time on our shared two-core machine (each run's seconds are in the file); the
chapter itself runs ``run(...)`` with fewer steps and one seed live.

Chapter: ``ch-linear-attention``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ropebook import lrpe
from ropebook._validate import _check_positive_int, _check_positive_number, _check_tokens, _is_int
from ropebook.attention import linear_attention

__all__ = ["ENCODINGS", "TaskConfig", "make_encoding", "CopyModel", "copy_batch", "train_one", "run", "main"]

ENCODINGS = ("none", "rope", "permutation", "householder")


@dataclass(frozen=True)
class TaskConfig:
    """One training run's data, model and optimiser settings (equal for every encoding)."""

    offset: int = 3  # k: the target at t is the token at t − k
    vocab: int = 16  # V: tokens drawn uniformly from 0 … V − 1
    seq_len: int = 32  # T
    dim: int = 64  # model width
    heads: int = 2  # head_dim = dim / heads
    steps: int = 600  # Adam steps
    batch_size: int = 32
    lr: float = 3e-3
    eval_batches: int = 8  # held-out batches (a fixed generator) for the accuracy

    def __post_init__(self):
        fn = "TaskConfig"
        for name in ("vocab", "seq_len", "dim", "heads", "steps", "batch_size", "eval_batches"):
            _check_positive_int(fn, getattr(self, name), name)
        if not _is_int(self.offset) or not 0 <= self.offset < self.seq_len:  # else no position t ≥ offset has a target
            raise ValueError(f"{fn}: offset must be an integer in 0 … seq_len − 1 = {self.seq_len - 1}, got offset={self.offset!r}")
        if self.dim % self.heads or (self.dim // self.heads) % 2:
            raise ValueError(f"{fn}: dim / heads must be an even integer (the head dimension RoPE rotates in pairs), "
                             f"got dim={self.dim}, heads={self.heads}")
        _check_positive_number(fn, self.lr, "lr")


def make_encoding(name: str, head_dim: int, *, base: float = 100.0) -> nn.Module | None:
    """The encoding a run uses: None, RoPE, a permutation, or RoPE in a learned Householder basis Q.

    ``base`` is small (100) because T is only 32: with b = 10 000 most pairs barely turn.

    >>> type(make_encoding("permutation", 8)).__name__, make_encoding("none", 8)
    ('Permutation', None)
    """
    if name == "none":
        return None
    if name == "rope":
        return lrpe.Rotation(head_dim, base=base)
    if name == "permutation":
        return lrpe.Permutation(head_dim, seed=0)
    if name == "householder":
        return lrpe.LearnedHouseholder(head_dim, base=base, seed=0)
    raise ValueError(f"make_encoding: name must be one of {ENCODINGS}, got name={name!r}")


class CopyModel(nn.Module):
    """Embedding → one causal linear-attention layer (encoding in the numerator) → residual → read-out."""

    def __init__(self, cfg: TaskConfig, encoding: str):
        super().__init__()
        if not isinstance(cfg, TaskConfig):
            raise ValueError(f"CopyModel: cfg must be a TaskConfig, got type(cfg)={type(cfg).__name__}")
        self.vocab, self.heads, self.head_dim = cfg.vocab, cfg.heads, cfg.dim // cfg.heads
        self.embed = nn.Embedding(cfg.vocab, cfg.dim)
        self.qkv = nn.Linear(cfg.dim, 3 * cfg.dim)
        self.proj = nn.Linear(cfg.dim, cfg.dim)
        self.readout = nn.Linear(cfg.dim, cfg.vocab)
        self.encoding = make_encoding(encoding, self.head_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # (B, T) -> (B, T, V)
        # int64/int32 token ids in [0, vocab) (nn.Embedding's "index out of range in self" names no argument)
        _check_tokens("CopyModel", "tokens", tokens, self.vocab, bound=f"vocab={self.vocab}")
        x = self.embed(tokens)  # (B, T, dim)
        B, T, _ = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)  # (B, H, T, Dh) each
        # one chunk (T ≥ 1: no tokens gave "linear_attention: chunk_size must be a positive integer, got chunk_size=0")
        y = linear_attention(q, k, v, causal=True, encoding=self.encoding, chunk_size=max(T, 1))  # (B, H, T, Dh)
        x = x + self.proj(y.transpose(1, 2).reshape(B, T, self.heads * self.head_dim))
        return self.readout(x)


def copy_batch(cfg: TaskConfig, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens (B, T) and targets (B, T − k): targets[:, j] = tokens[:, j] is predicted at position j + k.

    >>> tokens, targets = copy_batch(TaskConfig(offset=3, seq_len=8), torch.Generator().manual_seed(0))
    >>> tokens.shape, targets.shape, bool((targets == tokens[:, :5]).all())
    (torch.Size([32, 8]), torch.Size([32, 5]), True)
    """
    tokens = torch.randint(cfg.vocab, (cfg.batch_size, cfg.seq_len), generator=generator)
    return tokens, tokens[:, : cfg.seq_len - cfg.offset]


def _loss_acc(model: CopyModel, cfg: TaskConfig, tokens, targets):
    logits = model(tokens)[:, cfg.offset:]  # (B, T − k, V)
    loss = F.cross_entropy(logits.reshape(-1, cfg.vocab), targets.reshape(-1))
    return loss, (logits.argmax(-1) == targets).float().mean().item()


def train_one(cfg: TaskConfig, encoding: str, seed: int) -> dict:
    """Train one model on one CPU thread; return the held-out accuracy (chance is 1/V) and the final loss.

    One thread: the model is tiny, so torch's thread pool only adds overhead (and
    contention on a shared machine). The previous thread count is restored.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train_one(cfg, encoding, seed)
    finally:
        torch.set_num_threads(threads)


def _train_one(cfg: TaskConfig, encoding: str, seed: int) -> dict:
    torch.manual_seed(seed)
    model = CopyModel(cfg, encoding)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    data = torch.Generator().manual_seed(1000 + seed)  # same batches for every encoding
    t0 = time.perf_counter()
    for _ in range(cfg.steps):
        loss, _ = _loss_acc(model, cfg, *copy_batch(cfg, data))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    held_out = torch.Generator().manual_seed(999_999)
    with torch.no_grad():
        accs = [_loss_acc(model, cfg, *copy_batch(cfg, held_out))[1] for _ in range(cfg.eval_batches)]
    return {"encoding": encoding, "seed": seed, "accuracy": sum(accs) / len(accs),
            "final_train_loss": loss.item(), "seconds": time.perf_counter() - t0}


def run(cfg: TaskConfig, *, encodings=ENCODINGS, seeds=(0, 1, 2)) -> dict:
    """Every encoding × seed; returns ``{"config", "runs", "chance"}`` (JSON-ready)."""
    for name in encodings:
        if name not in ENCODINGS:
            raise ValueError(f"run: encodings must be drawn from {ENCODINGS}, got {name!r}")
    runs = [train_one(cfg, name, seed) for name in encodings for seed in seeds]
    return {"config": asdict(cfg), "runs": runs, "chance": 1.0 / cfg.vocab}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ropebook.experiments.lrpe_recall", description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=TaskConfig.steps)
    parser.add_argument("--offsets", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--encodings", nargs="+", default=list(ENCODINGS), choices=ENCODINGS)
    parser.add_argument("--out", default="book/data/lrpe_recall.json")
    args = parser.parse_args(argv)
    configs = [TaskConfig(offset=offset, steps=args.steps) for offset in args.offsets]  # refused before any training
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)  # not after minutes of training
    results = {"command": "python -m ropebook.experiments.lrpe_recall " + " ".join(argv if argv is not None else sys.argv[1:]),
               "torch": torch.__version__, "machine": platform.machine(), "by_offset": {}}
    for cfg in configs:
        results["by_offset"][str(cfg.offset)] = run(cfg, encodings=args.encodings, seeds=args.seeds)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
