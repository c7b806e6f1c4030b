"""GPU benchmark of the fused kernel against the RoPE people use: ``python -m ropebook.bench gpu``.

Shapes: prefill (B=1, T in {1k, 4k, 16k}) and decode (B=64, T=1, a random
position offset per row), 32 query heads, 8 key/value heads, D=128, bf16. q and
k are stored as a projection leaves them, ``(B, T, H, D)``; contenders that
want ``(B, H, T, D)`` get the ``.transpose(1, 2)`` view. Every contender
rotates both q and k; the bytes counted are q and k read once and written once.
A last case times SAM 2's memory cross-attention at SAM 2's sizes (``SAM_*``:
SAM 2's function, its drop-in, and one launch for every frame's keys with a
tiled table), written under ``"sam"`` in the JSON.

Times are medians of GPU time per call from CUDA-graph replays (launch gaps
removed); for prefill the L2 is flushed before every call and the flush's own
time subtracted, for decode inputs stay warm in L2 (as after the projection that
made them). The eager column is ``triton.testing.do_bench`` (median, L2 flushed),
which includes Python launch overhead where it exceeds the flush. Optional contenders: Liger-Kernel (imported as
``liger_kernel``) and flash-attn's Triton rotary kernel, loaded by path from
``$ROPEBOOK_FLASH_ROTARY`` (the file ``flash_attn/ops/triton/rotary.py``).
Every contender is timed in ``$ROPEBOOK_BENCH_ROUNDS`` rounds (default 3); the
table gives the median and the range. Set ``$ROPEBOOK_BENCH_JSON`` to write the results there, with the
device, driver, versions, command, the SHA-256 of the kernel's source file (``kernel_sha256``: which
kernel was timed) and the host time of a decoding call up to the launch (``host_to_launch_us``, on the
machine's CPU, no GPU involved; without CUDA that is all it times); ``$ROPEBOOK_BENCH_SWEEP=1``
also times the kernel's tile configurations and angle sources in one round, then the fastest of them and
the defaults against Liger-Kernel in ``$ROPEBOOK_SWEEP_ROUNDS`` interleaved rounds (default 5), written to
``$ROPEBOOK_SWEEP_JSON``, each row with the device, ``kernel_sha256`` and the date
(``$ROPEBOOK_BENCH_SWEEP=only`` skips the main table; ``$ROPEBOOK_SWEEP_CASES`` picks cases, and the file
keeps the rows of the others). Without CUDA it says so, times ``host_to_launch_us`` and
checks the kernel's agreement under the Triton interpreter.

The parts: ``_config`` (shapes and the knobs a run can change, read there at call time), ``_rows`` (a case's
contenders and their error), ``_timing`` (CUDA-graph timing and the loop over contenders), ``_sam`` (SAM 2's case),
``_sweep`` (the tile and angle sweep), ``_host`` (host time up to the launch; the run without CUDA); here, the run.

Chapter: ``ch-rope-gpu``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import platform
import subprocess
import time
from pathlib import Path

import torch

from . import _config, _host, _rows, _sam, _sweep, _timing
from ._config import (DECODE_B, OPERATOR_ROW, PREFILL_T, SAM_D, SAM_FRAMES, SAM_POINTERS, SAM_SIDE, SOURCES, HK, HQ, D,
                      moved_bytes, shapes)
from ._host import _cpu_name, _cpu_part, _print_host_to_launch, host_to_launch_us
from ._sam import sam_inputs, sam_table
from ._sweep import _variant, default_of, finalists, sweep, sweep_configs  # noqa: F401  (_variant: the chapter builds a launch with it)

__all__ = ["HQ", "HK", "D", "PREFILL_T", "DECODE_B", "OPERATOR_ROW", "SOURCES", "SAM_SIDE", "SAM_D", "SAM_FRAMES",
           "SAM_POINTERS", "shapes", "moved_bytes", "host_to_launch_us", "sam_inputs", "sam_table", "default_of",
           "sweep_configs", "finalists", "sweep", "gpu"]


def gpu(args) -> int:
    """Benchmark the fused kernel against eager HF, torch.compile, Liger-Kernel, flash-attn and a device copy."""
    if not torch.cuda.is_available():
        return _cpu_part(args)
    _timing._FLUSH[0] = torch.empty(2 * torch.cuda.get_device_properties(0).L2_cache_size // 4, device="cuda", dtype=torch.float32)
    return _measure(args, "cuda")


def _measure(args, device: str) -> int:
    """Every case, the SAM case, the host times, the results file and the sweep, on ``device``: "cuda" from
    ``gpu``; the tests run it all on the CPU (the kernel under the Triton interpreter, the GPU timers replaced),
    so that what a GPU session runs has run before it."""
    from ropebook import kernels as K

    cache = K.rope_cache(D, max_positions=_config.MAX_OFFSET + 1, device=device)
    tables = (cache, cache.cos, cache.sin)
    rows = []
    sweep_only = os.environ.get("ROPEBOOK_BENCH_SWEEP") == "only"
    for name, B, T in [] if sweep_only else _config.shapes(args.quick):
        q_mem, k_mem, offsets = _rows._inputs(B, T, device=device)
        nbytes = moved_bytes(B, T)
        contenders = _rows._contenders(B, T, q_mem, k_mem, offsets, tables)
        results = _timing._time_contenders(contenders, (q_mem, k_mem), T == 1,
                                           lambda outputs: _rows._error(outputs, q_mem, k_mem, offsets, T))
        _timing._print_case(f"{name}: B={B} T={T} Hq={HQ} Hk={HK} D={D} bf16", results, nbytes, T == 1)
        rows.append(dict(case=name, B=B, T=T, Hq=HQ, Hk=HK, D=D, dtype="bfloat16", bytes=nbytes,
                         rounds=_config.ROUNDS,
                         timing=(f"median over {_config.ROUNDS} rounds (rounds_us) of the median GPU time per call from CUDA-graph replays of 20 calls"
                                 + (", inputs warm in L2" if T == 1 else ", L2 flushed before each call (flush time subtracted)")
                                 + "; eager_us: triton.testing.do_bench median, Python launch included"),
                         results=results))
    sam = None if sweep_only else _sam._sam_case(device)
    host = None if sweep_only else _host.host_to_launch_us()  # this machine's CPU: the host side of the decode rows' host us
    if host is not None:
        _print_host_to_launch(host)
    out = os.environ.get("ROPEBOOK_BENCH_JSON")
    if out and not sweep_only:
        meta = dict(**_machine(device), kernel_sha256=_kernel_sha256(), cpu=_cpu_name(), host_to_launch_us=host,
                    command=os.environ.get("ROPEBOOK_BENCH_COMMAND") or " ".join(
                        [f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith("ROPEBOOK_")]
                        + ["python -m ropebook.bench gpu"]),
                    date=_utc_now(), cases=rows, sam=sam)
        with open(out, "w") as f:
            json.dump(meta, f, indent=1)
        print(f"wrote {out}")
    if os.environ.get("ROPEBOOK_BENCH_SWEEP") in ("1", "only"):
        swept = _sweep.sweep(tables, device)
        path = os.environ.get("ROPEBOOK_SWEEP_JSON")
        if path:  # rows of the cases not swept this time are kept: the sweep can run one case a call
            stamp = dict(device=_machine(device)["device"], kernel_sha256=_kernel_sha256(), date=_utc_now())
            swept = [{**r, **stamp} for r in swept]  # so each row, kept from whichever run, says what it timed
            done = {r["case"] for r in swept}
            kept = [r for r in json.loads(Path(path).read_text()) if r["case"] not in done] if Path(path).exists() else []
            Path(path).write_text(json.dumps(kept + swept, indent=1))
    return 0


def _utc_now() -> str:
    """The date and time a file or row records, in UTC (``2026-11-23T09:02:14Z``)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _kernel_sha256() -> str:
    """The SHA-256 of the kernel's source file: which kernel a results file or a sweep row timed."""
    from ropebook.kernels import rope_triton

    return hashlib.sha256(Path(rope_triton.__file__).read_bytes()).hexdigest()


def _machine(device: str) -> dict:
    """device, sm_count, driver and versions for the results file: the GPU's, or (a run on the CPU) the CPU's."""
    import triton

    versions = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
                "triton": triton.__version__}
    for pkg in ("transformers", "liger_kernel"):
        if importlib.util.find_spec(pkg) is not None:
            versions[pkg] = getattr(__import__(pkg), "__version__", None) or _dist_version(pkg)
    versions["flash_attn_rotary"] = os.environ.get("ROPEBOOK_FLASH_ROTARY_VERSION")
    if torch.device(device).type != "cuda":
        return dict(device=f"{device} ({_cpu_name()})", sm_count=None, driver=None, versions=versions)
    props = torch.cuda.get_device_properties(0)
    try:
        driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                capture_output=True, text=True).stdout.strip()
    except OSError:
        driver = None
    return dict(device=props.name, sm_count=props.multi_processor_count, driver=driver, versions=versions)


def _dist_version(pkg: str):
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(pkg.replace("_", "-"))
    except PackageNotFoundError:
        return None
