"""Count the machine code of the RoPE kernel for an H100, and write the counts to a JSON file.

The chapter ``ch-rope-gpu`` compiles the kernel for compute capability 9.0 without a GPU
(``ropebook.kernels.aot``) and reads the SASS. It computes its own table live, with the
Triton that ``requirements.txt`` pins. Two sets of counts it quotes cannot be computed at
build time: the same rows compiled by the Triton the GPU measurements ran with (3.6), and
the rows of an older kernel source. This tool makes both reproducible: it compiles the
chapter's rows (a decoding step of 64 sequences, one prefill of 1024 tokens; the table,
computed angles with the math library's and with the quarter-turn cos and sin, and the
caller's cos and sin) with whatever Triton and ``ropebook`` are importable, counts each
with the repository's ``aot.sass_stats``, and records the command, the Triton version and a
hash of the kernel's source next to the counts.

Usage (from the repository root)::

    # the rows under Triton 3.6 (installed into a folder of its own, not into the environment), with
    # Liger-Kernel's rope kernel beside them (its wheel unpacked: only liger_kernel/ops/rope.py is loaded)
    pip install --no-deps --target /tmp/t36 triton==3.6.0
    pip download --no-deps -d /tmp/lk liger-kernel==0.8.5 && mkdir /tmp/liger && unzip -q /tmp/lk/*.whl -d /tmp/liger
    PYTHONPATH=/tmp/t36 python tools/sass_counts.py --liger /tmp/liger --out book/data/sass_triton36.json

    # the rows of the kernel as it was at a commit (its whole ropebook package, unpacked)
    mkdir /tmp/c817116 && git archive c817116 ropebook | tar -x -C /tmp/c817116
    python tools/sass_counts.py --tree /tmp/c817116 --label c817116 --out book/data/sass_c817116.json
    # the same rows compiled by Triton 3.6, to set beside Liger-Kernel's
    PYTHONPATH=/tmp/t36 python tools/sass_counts.py --tree /tmp/c817116 --label c817116 \
        --out book/data/sass_c817116_triton36.json

``--tree DIR`` imports ``ropebook`` from DIR (the kernel, its launcher and ``compile_launches``
as they were there); the counting is always this repository's ``sass_stats``, so counts from
different trees mean the same thing. ``kernel_functions_sha256`` hashes the source of the kernel
and of its device functions (what the compiler sees), so a change of the module's docstring or of
its Python launcher does not change it. ``--liger DIR`` adds a row ``Liger-Kernel`` to each case:
the program Liger-Kernel launches for the same q and k, given cos and sin as Hugging Face's rotary
module hands them over (``(B, T, D)`` bf16), compiled through this repository's
``aot.compile_call`` and counted the same way, with its launch's ``programs`` and ``num_warps``; the
file records Liger-Kernel's version.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import math
import os
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CASES = {"decode B=64": (64, 1), "prefill T=1024": (1, 1024)}  # (B, T), as ropebook.bench and the chapter
ROWS = ("table", "computed, library", "computed, quadrant", "the caller's", "Liger's inputs, in place")  # the chapter's


def kernel_functions_sha256(rope_triton) -> str:
    """sha256 of what Triton compiles (``aot.kernel_source_sha256``, this repository's, whichever tree's
    ``rope_triton`` it is handed): the chapter compares it with the kernel it is built with."""
    return _repo_aot().kernel_source_sha256(rope_triton)


@functools.cache
def _repo_aot():
    """This repository's ``ropebook.kernels.aot``, whichever ``ropebook`` is imported (``sass_stats`` reads
    only the cubin; ``compile_call`` compiles any Triton kernel)."""
    spec = importlib.util.spec_from_file_location("_sass_counts_aot", ROOT / "ropebook" / "kernels" / "aot.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def liger_rows(folder: Path) -> tuple[str, dict]:
    """(Liger-Kernel's version, {case: sass_stats}) for the program its rope launches on each case's q and k,
    with Hugging Face's bf16 (B, T, D) cos and sin. ``folder`` holds an unpacked liger-kernel wheel; only
    its ``liger_kernel/ops/rope.py`` is loaded (the package's ``__init__`` probes the machine's devices)."""
    import torch
    from triton.runtime.jit import JITFunction

    aot = _repo_aot()
    dist = sorted(folder.glob("liger_kernel-*.dist-info"))
    if len(dist) != 1:
        raise SystemExit(f"--liger {folder}: expected one liger_kernel-*.dist-info there, found {len(dist)}")
    version = dist[0].name[len("liger_kernel-"):-len(".dist-info")]
    spec = importlib.util.spec_from_file_location("_liger_rope", folder / "liger_kernel" / "ops" / "rope.py")
    rope = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rope)
    kernel = rope._triton_rope  # a JITFunction, or an InterpretedFunction under TRITON_INTERPRET=1: its .fn either way
    fn = JITFunction(getattr(kernel, "fn", kernel))
    launches = []

    class _Record:  # stands in for the kernel: kernel[grid](*args, **constexprs) records instead of launching
        def __getitem__(self, grid):
            return lambda *args, **kwargs: launches.append((grid, args, kwargs))

    rope._triton_rope = _Record()
    out = {}
    for case, (B, T) in CASES.items():
        q = torch.zeros(B, T, 32, 128, dtype=torch.bfloat16).transpose(1, 2)  # as count_rows's
        k = torch.zeros(B, T, 8, 128, dtype=torch.bfloat16).transpose(1, 2)
        cos = sin = torch.zeros(B, T, 128, dtype=torch.bfloat16)  # Hugging Face's (B, T, D)
        launches.clear()
        rope.rope_forward(q, k, cos, sin)
        (grid, args, kwargs), = launches
        kwargs = dict(kwargs)
        num_warps = kwargs.pop("num_warps", 4)  # Triton's default: Liger's rope launch does not set it
        out[case] = dict(aot.sass_stats(aot.compile_call(fn, args, kwargs, num_warps=num_warps)),
                         programs=math.prod(grid), num_warps=num_warps)
    return version, out


def count_rows() -> dict:
    """{case: {row: sass_stats}} for the chapter's rows, compiled for compute capability 9.0."""
    import torch

    from ropebook import kernels as K
    from ropebook.kernels import aot

    sass_stats = _repo_aot().sass_stats
    cache = K.rope_cache(128, max_positions=1024)
    out = {}
    for case, (B, T) in CASES.items():
        q = torch.zeros(B, T, 32, 128, dtype=torch.bfloat16).transpose(1, 2)  # (B, Hq, T, D) view of (B, T, Hq, D)
        k = torch.zeros(B, T, 8, 128, dtype=torch.bfloat16).transpose(1, 2)  # (B, Hk, T, D)
        offsets = torch.arange(B, dtype=torch.int32) * 7 if T == 1 else 0
        cos = sin = torch.zeros(B, T, 64)  # (B, T, r/2): cos and sin the caller gathered
        cos_hf = torch.zeros(B, T, 128, dtype=torch.bfloat16)  # Hugging Face's (B, T, D) bf16, as Liger gets them
        calls = {"table": ("libdevice", lambda: K.rope_qk(q, k, cache, offsets=offsets, angles="table")),
                 "computed, library": ("libdevice", lambda: K.rope_qk(q, k, cache, offsets=offsets, angles="kernel")),
                 "computed, quadrant": ("quadrant", lambda: K.rope_qk(q, k, cache, offsets=offsets, angles="kernel")),
                 "the caller's": ("libdevice", lambda: K.rope_qk_cos_sin(q, k, cos, sin)),
                 # the benchmark's row "rope_qk_cos_sin, HF bf16 cos/sin, in place": the first half of each row
                 "Liger's inputs, in place": ("libdevice", lambda: K.rope_qk_cos_sin(q, k, cos_hf[..., :64],
                                                                                    cos_hf[..., :64], inplace=True))}
        out[case] = {}
        for row in ROWS:
            sincos, call = calls[row]
            with K.rope_triton.sincos(sincos):
                (kernel,) = aot.compile_launches(call)
            out[case][row] = sass_stats(kernel)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="the JSON file to write")
    parser.add_argument("--tree", type=Path, help="import ropebook from this folder (holding a ropebook/ package)")
    parser.add_argument("--label", help="what the tree is (a commit, say); recorded in the file")
    parser.add_argument("--liger", type=Path, help="an unpacked liger-kernel wheel: add its rope kernel's row")
    args = parser.parse_args(argv)
    if args.liger is None and args.out.exists() and "liger_kernel" in json.loads(args.out.read_text()):
        parser.error(f"{args.out} holds Liger-Kernel's rows, which this run would drop: pass --liger DIR too")
    os.environ.setdefault("TRITON_INTERPRET", "1")  # compile_launches records launches; nothing runs on a GPU
    sys.path.insert(0, str((args.tree or ROOT).resolve()))
    import torch
    import triton

    import ropebook
    from ropebook.kernels import rope_triton

    if args.tree is not None and not Path(ropebook.__file__).resolve().is_relative_to(args.tree.resolve()):
        parser.error(f"ropebook was imported from {ropebook.__file__}, not from --tree {args.tree}")
    command = " ".join(shlex.quote(a) for a in ["python", "tools/sass_counts.py", *(argv or sys.argv[1:])])
    if os.environ.get("PYTHONPATH"):
        command = f"PYTHONPATH={shlex.quote(os.environ['PYTHONPATH'])} {command}"
    record = dict(command=command, triton=triton.__version__, torch=torch.__version__, arch=90,
                  tree=args.label or "this repository", kernel_functions_sha256=kernel_functions_sha256(rope_triton),
                  date=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), cases=count_rows())
    if args.liger is not None:
        record["liger_kernel"], liger = liger_rows(args.liger)
        for case, stats in liger.items():
            record["cases"][case]["Liger-Kernel"] = stats
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.out}: Triton {record['triton']}, kernel {record['kernel_functions_sha256'][:12]}")
    for case, rows in record["cases"].items():
        for row, st in rows.items():
            print(f"  {case:<15} {row:<19} {st['instructions']:>5} instructions, {st['branches']:>3} branches, "
                  f"first load at {st['before_first_load']}, stack {st['stack_bytes']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
