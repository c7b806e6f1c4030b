"""Data that needs no download: Python's own standard library as text, and a synthetic offset task.

``stdlib_corpus`` reads the top-level ``*.py`` files of the running Python's
standard library (``sysconfig.get_paths()["stdlib"]``) in sorted order, as bytes:
a character-level corpus (vocabulary 256) present on every machine. The first
90 % is the training split, the rest validation. The text depends on the Python
version, so experiments record it.

``next_token_task`` draws the toy task of the CRoPE chapter: random content
tokens with one marker; the marker NEXT at position i must output the token at
i + 1, the marker NEXT2 the token at i + 2.

Chapter: ``ch-crope``.
"""

from __future__ import annotations

import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import math
import numbers

import torch
from torch import Tensor

from ropebook._validate import _check_positive_int, _is_int, _is_integer_tensor

__all__ = ["Corpus", "stdlib_corpus", "random_windows", "validation_windows", "next_token_task"]


def _check_data(fn: str, data) -> None:
    if not _is_integer_tensor(data) or data.ndim != 1:
        got = (f"data.shape={tuple(data.shape)}, data.dtype={data.dtype}" if isinstance(data, Tensor)
               else f"type(data)={type(data).__name__}")
        raise ValueError(f"{fn}: data must be a 1-d tensor of integer tokens (N,), got {got}")


def _check_generator(fn: str, generator) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"{fn}: generator must be a torch.Generator, got generator={generator!r}")


@dataclass(frozen=True)
class Corpus:
    """A byte corpus split in two, with where it came from."""

    train: Tensor  # (N_train,) uint8
    val: Tensor  # (N_val,) uint8
    source: str  # the folder read
    n_files: int  # files concatenated
    python_version: str  # the text differs between Python versions

    vocab_size: int = 256


def stdlib_corpus(*, val_fraction: float = 0.1, max_bytes: int | None = None) -> Corpus:
    """The standard library's top-level ``*.py`` files, sorted by name, as one byte string, split.

    Args:
        val_fraction: the trailing fraction kept for validation.
        max_bytes: read at most this many bytes (the split applies to what was read).

    >>> corpus = stdlib_corpus(max_bytes=10_000)
    >>> len(corpus.train), len(corpus.val), corpus.vocab_size
    (9000, 1000, 256)
    """
    ok = not isinstance(val_fraction, bool) and isinstance(val_fraction, numbers.Real) and math.isfinite(val_fraction)
    if not (ok and 0.0 < val_fraction < 1.0):
        raise ValueError(f"stdlib_corpus: val_fraction must be in (0, 1), got val_fraction={val_fraction!r}")
    if max_bytes is not None and (not _is_int(max_bytes) or max_bytes < 2):
        raise ValueError(f"stdlib_corpus: max_bytes must be an integer ≥ 2 or None, got max_bytes={max_bytes!r}")
    folder = Path(sysconfig.get_paths()["stdlib"])
    paths = sorted(folder.glob("*.py"))
    chunks, total = [], 0
    for path in paths:
        data = path.read_bytes()
        chunks.append(data)
        total += len(data)
        if max_bytes is not None and total >= max_bytes:
            break
    text = b"".join(chunks)[: None if max_bytes is None else int(max_bytes)]
    data = torch.frombuffer(bytearray(text), dtype=torch.uint8)  # (N,)
    n_val = min(max(1, int(round(len(data) * val_fraction))), len(data) - 1)  # both splits hold a byte at least
    version = ".".join(map(str, sys.version_info[:3]))
    return Corpus(data[:-n_val].clone(), data[-n_val:].clone(), str(folder), len(chunks), version)


def random_windows(data: Tensor, batch_size: int, seq_len: int, *, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """A batch of random windows and their next-byte targets.

    Shapes: ``data (N,)`` → ``x, y (batch_size, seq_len)`` int64, with ``y[:, t] = data[start + t + 1]``.

    >>> x, y = random_windows(torch.arange(100), 2, 5, generator=torch.Generator().manual_seed(0))
    >>> bool((y[:, :-1] == x[:, 1:]).all())
    True
    """
    fn = "random_windows"
    _check_data(fn, data)
    _check_positive_int(fn, batch_size, "batch_size")
    _check_positive_int(fn, seq_len, "seq_len")
    _check_generator(fn, generator)
    if len(data) < seq_len + 1:
        raise ValueError(f"random_windows: data must hold more than seq_len={seq_len} tokens, got len(data)={len(data)}")
    starts = torch.randint(0, len(data) - seq_len, (batch_size,), generator=generator)  # (B,)
    index = starts[:, None] + torch.arange(seq_len + 1)  # (B, T + 1)
    window = data[index].long()
    return window[:, :-1], window[:, 1:]


def validation_windows(data: Tensor, n_windows: int, seq_len: int) -> tuple[Tensor, Tensor]:
    """``n_windows`` evenly spaced windows over ``data`` (deterministic: every run sees the same).

    >>> x, y = validation_windows(torch.arange(100), 3, 4)
    >>> x[:, 0].tolist()
    [0, 47, 95]
    """
    fn = "validation_windows"
    _check_data(fn, data)
    _check_positive_int(fn, n_windows, "n_windows")
    _check_positive_int(fn, seq_len, "seq_len")
    if len(data) < seq_len + 1:
        raise ValueError(f"validation_windows: data must hold more than seq_len={seq_len} tokens, got len(data)={len(data)}")
    last = len(data) - seq_len - 1
    # float32 linspace, as the committed runs chose their windows; beyond 2^24 tokens it can round the last start up
    # past the end, hence the clamp (an exact integer spacing would move existing windows by a token)
    starts = torch.linspace(0, last, n_windows).long().clamp(max=last)  # (n,)
    window = data[starts[:, None] + torch.arange(seq_len + 1)].long()  # (n, T + 1)
    return window[:, :-1], window[:, 1:]


def next_token_task(batch_size: int, seq_len: int, n_content: int, *, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """The "next / next-next" task: read the token one or two places to the right of a marker.

    Tokens ``0 … n_content − 1`` are content; ``n_content`` is NEXT and
    ``n_content + 1`` is NEXT2. Each sequence holds random content and one marker
    at a random position i ≤ seq_len − 3; the answer is the content at i + 1
    (NEXT) or i + 2 (NEXT2). Solving it needs relative position and a look to
    the right, so it is posed for bidirectional attention.

    Returns:
        ``tokens (B, T)``, ``marker_pos (B,)`` and ``answer (B,)``, all int64.

    >>> tokens, pos, answer = next_token_task(4, 8, 5, generator=torch.Generator().manual_seed(0))
    >>> b = torch.arange(4)
    >>> bool((answer == tokens[b, pos + 1 + (tokens[b, pos] == 6).long()]).all())
    True
    """
    fn = "next_token_task"
    for name, value in (("batch_size", batch_size), ("seq_len", seq_len), ("n_content", n_content)):
        _check_positive_int(fn, value, name)
    _check_generator(fn, generator)
    if seq_len < 3 or n_content < 2:
        raise ValueError(f"next_token_task: need seq_len ≥ 3 and n_content ≥ 2, got seq_len={seq_len}, n_content={n_content}")
    tokens = torch.randint(0, n_content, (batch_size, seq_len), generator=generator)  # (B, T)
    marker_pos = torch.randint(0, seq_len - 2, (batch_size,), generator=generator)  # (B,)
    offset = torch.randint(1, 3, (batch_size,), generator=generator)  # 1 → NEXT, 2 → NEXT2
    rows = torch.arange(batch_size)
    answer = tokens[rows, marker_pos + offset]
    tokens[rows, marker_pos] = n_content + offset - 1
    return tokens, marker_pos, answer
