"""Train ``TinyLM`` with each position scheme on the same bytes, steps and seeds; write JSON.

One process::

    python -m ropebook.experiments compare --positions rope crope --seeds 0 1 2 --steps 300 --out runs.json

Several processes (DistributedDataParallel; gloo on CPU, NCCL on GPUs)::

    torchrun --nproc_per_node=2 -m ropebook.experiments compare ... --out runs.json

The global batch is split across processes; process r draws its windows from a
generator seeded with (seed, r), so a run with more processes sees different
(equally random) batches. Every scheme sees the same batches for a given seed
and world size, and the same fixed validation windows. Rank 0 writes the file.

Chapter: ``ch-crope``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, fields

import torch
import torch.distributed as dist
import torch.nn.functional as F

from ropebook._validate import _check_positive_int
from ropebook.crope import parameter_count
from ropebook.data import Corpus, random_windows, stdlib_corpus, validation_windows
from ropebook.model import POSITIONS, ModelConfig, TinyLM

__all__ = ["RunConfig", "train_one", "run_comparison", "parameter_breakdown", "main"]


@dataclass(frozen=True)
class RunConfig:
    """What every run of a comparison shares (the model size, the data, the optimiser)."""

    positions: tuple = POSITIONS  # schemes to compare
    seeds: tuple = (0, 1, 2)  # one run per scheme and seed
    steps: int = 300  # optimiser steps per run
    batch_size: int = 32  # global batch (split across processes)
    seq_len: int = 64  # training window, bytes
    dim: int = 64  # model width
    n_layers: int = 2  # blocks
    n_heads: int = 4  # heads per block
    lr: float = 3e-3  # peak AdamW learning rate (linear warm-up, cosine decay)
    warmup: int = 30  # warm-up steps
    eval_every: int = 100  # validation every this many steps (and at the end)
    val_windows: int = 128  # fixed validation windows
    max_bytes: int | None = None  # read at most this much of the corpus (None: all)

    def __post_init__(self):
        bad = [p for p in self.positions if p not in POSITIONS]
        if bad or not self.positions:
            raise ValueError(f"RunConfig: positions must be a non-empty subset of {POSITIONS}, got positions={self.positions!r}")
        for name in ("steps", "batch_size", "seq_len", "eval_every", "val_windows"):
            # a Python int: the config is written to JSON
            object.__setattr__(self, name, _check_positive_int("RunConfig", getattr(self, name), name))
        if not self.seeds:
            raise ValueError(f"RunConfig: seeds must be non-empty, got seeds={self.seeds!r}")
        for name in ("positions", "seeds"):  # a repeated run would count as an independent seed in the summary
            values = list(getattr(self, name))
            if len(set(values)) != len(values):
                raise ValueError(f"RunConfig: {name} must not repeat, got {name}={getattr(self, name)!r}")

    def model_config(self, position: str, vocab_size: int = 256) -> ModelConfig:
        return ModelConfig(vocab_size=vocab_size, dim=self.dim, n_layers=self.n_layers, n_heads=self.n_heads,
                           max_seq_len=self.seq_len, position=position)


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _mean_over_ranks(value: torch.Tensor, world_size: int) -> float:
    if world_size > 1:
        value = value.detach().clone()
        dist.all_reduce(value)
        value /= world_size
    return float(value.detach())


def _lr(step: int, cfg: RunConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def parameter_breakdown(model: TinyLM) -> dict:
    """Real parameters by part, counted from the modules: total, Q/K/V, attention, one block."""
    block = model.blocks[0]
    attn = block.attn
    return {
        "total": parameter_count(model),
        "qkv_per_layer": sum(parameter_count(p) for p in (attn.q_proj, attn.k_proj, attn.v_proj)),
        "attention_per_layer": parameter_count(attn),
        "attention_and_mlp_per_layer": parameter_count(attn) + parameter_count(block.mlp),
    }


@torch.no_grad()
def _validate(model, val_x, val_y, rank: int, world_size: int, device) -> float:
    model.eval()
    x, y = val_x[rank::world_size].to(device), val_y[rank::world_size].to(device)  # this rank's share
    logits, _ = model(x)
    total = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum")
    count = torch.tensor(float(y.numel()), device=device)
    if world_size > 1:
        dist.all_reduce(total)
        dist.all_reduce(count)
    model.train()
    return float(total / count)


def train_one(position: str, seed: int, cfg: RunConfig, corpus: Corpus, *, device="cpu", progress: bool = False) -> dict:
    """Train one model; return its losses and parameter counts (identical on every rank)."""
    rank, world_size = _world()
    if cfg.batch_size % world_size:
        raise ValueError(f"train_one: batch_size must be divisible by the world size {world_size}, got batch_size={cfg.batch_size}")
    torch.manual_seed(seed)  # same initial weights on every rank (DDP also broadcasts rank 0's)
    model = TinyLM(cfg.model_config(position, corpus.vocab_size)).to(device)
    params = parameter_breakdown(model)
    wrapped = model
    if world_size > 1:
        wrapped = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed * 1_000_003 + rank)  # the data order: same for every scheme
    val_x, val_y = validation_windows(corpus.val, cfg.val_windows, cfg.seq_len)
    local_batch = cfg.batch_size // world_size
    train_loss, val_steps, val_loss = [], [], []
    start = time.perf_counter()
    steps = range(cfg.steps)
    if progress and rank == 0:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc=f"{position:>10} seed {seed}", leave=False, file=sys.stderr)
    for step in steps:
        x, y = random_windows(corpus.train, local_batch, cfg.seq_len, generator=gen)
        for group in opt.param_groups:
            group["lr"] = _lr(step, cfg)
        _, loss = wrapped(x.to(device), y.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        train_loss.append(_mean_over_ranks(loss, world_size))
        if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps:
            val_steps.append(step + 1)
            val_loss.append(_validate(model, val_x, val_y, rank, world_size, device))
            if hasattr(steps, "set_postfix"):
                steps.set_postfix(val=f"{val_loss[-1]:.3f}")
    return {
        "position": position,
        "seed": seed,
        "parameters": params,
        "train_loss": train_loss,
        "val_steps": val_steps,
        "val_loss": val_loss,
        "final_val_loss": val_loss[-1],
        "wall_time_s": time.perf_counter() - start,
    }


def run_comparison(cfg: RunConfig, *, device=None, progress: bool = False, on_run=None) -> dict:
    """Every scheme × seed of ``cfg``; returns the JSON-ready results (same on every rank).

    ``on_run(results)``, if given, is called after every run with the results so far
    (the command line uses it to save partial results).
    """
    rank, world_size = _world()
    if device is None:
        device = torch.device(f"cuda:{torch.cuda.current_device()}" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    corpus = stdlib_corpus(max_bytes=cfg.max_bytes)
    start = time.perf_counter()
    runs = []
    results = {
        "experiment": "position schemes on Python standard library bytes",
        "config": asdict(cfg),
        "seeds": list(cfg.seeds),
        "corpus": {"source": corpus.source, "n_files": corpus.n_files, "train_bytes": len(corpus.train),
                   "val_bytes": len(corpus.val), "python": corpus.python_version},
        "environment": {"torch": torch.__version__, "platform": platform.platform(), "device": str(device),
                        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
                        "world_size": world_size, "backend": dist.get_backend() if world_size > 1 else None,
                        "threads": torch.get_num_threads()},
        "runs": runs,
        "wall_time_s": 0.0,
        "complete": False,
    }
    for seed in cfg.seeds:
        for position in cfg.positions:
            runs.append(train_one(position, seed, cfg, corpus, device=device, progress=progress))
            results["wall_time_s"] = time.perf_counter() - start
            results["complete"] = len(runs) == len(cfg.seeds) * len(cfg.positions)
            if on_run is not None:
                on_run(results)
    return results


def _parser() -> argparse.ArgumentParser:
    defaults = RunConfig()
    p = argparse.ArgumentParser(prog="python -m ropebook.experiments compare", description=__doc__.split("\n")[0])
    p.add_argument("--positions", nargs="+", default=list(defaults.positions), choices=POSITIONS)
    p.add_argument("--seeds", nargs="+", type=int, default=list(defaults.seeds))
    for f in fields(RunConfig):
        if f.name in ("positions", "seeds"):
            continue
        kind = float if f.name == "lr" else int
        p.add_argument(f"--{f.name.replace('_', '-')}", type=kind, default=getattr(defaults, f.name))
    p.add_argument("--out", required=True, help="where rank 0 writes the JSON results")
    p.add_argument("--device", default=None, help="default: the local CUDA device if any, else cpu")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    options = {f.name: getattr(args, f.name) for f in fields(RunConfig)}
    cfg = RunConfig(**{**options, "positions": tuple(args.positions), "seeds": tuple(args.seeds)})
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    device = args.device
    if distributed:
        cuda = torch.cuda.is_available() and device != "cpu"
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            device = torch.device("cuda", torch.cuda.current_device())
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    command = " ".join(["python -m ropebook.experiments compare", *(argv if argv is not None else sys.argv[1:])])

    def save(results: dict) -> None:
        if _world()[0] == 0:
            os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
            with open(args.out, "w") as fh:
                json.dump({"command": command, **results}, fh, indent=1)

    try:
        run_comparison(cfg, device=device, progress=not args.no_progress, on_run=save)
    finally:
        if distributed:
            dist.destroy_process_group()
    return 0
