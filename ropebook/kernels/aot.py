"""Compile the kernel for a GPU that is not here, and count what the GPU would execute.

Triton compiles for a named target without a device: ``compile_kernel`` builds
one specialization of ``_rope_kernel`` for, say, an H100 (sm_90), and
``sass_stats`` disassembles the machine code (SASS) with the ``cuobjdump`` that
ships inside Triton. The tests use this to compile every branch of the kernel
natively in CI, which has no GPU (the interpreter runs the same code through
NumPy, which forgives things a real compile does not), and the chapter uses it
to compare the two ways of forming cos and sin instruction by instruction.

Chapter: ``ch-rope-gpu``.
"""

from __future__ import annotations

import inspect
import re
import subprocess
import tempfile
import warnings
from pathlib import Path

import triton
import triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from triton.runtime.jit import JITFunction

from ropebook.kernels.rope_triton import _CONSTEXPRS, _pow2, _rope_kernel

__all__ = ["compile_kernel", "sass_stats"]

_TYPES = {"bf16": ("bf16", tl.float32), "fp16": ("fp16", tl.float32), "fp32": ("fp32", tl.float32),
          "fp64": ("fp64", tl.float64)}


def compile_kernel(*, arch: int = 90, dtype: str = "bf16", angles: str = "kernel", sincos: str = "libdevice",
                   positions: str = "offsets", layout: str = "half", conj: bool = False, varlen: bool = False,
                   half: int = 64, tail: int = 0, config: tuple[int, int, int] = (1, 8, 2)):
    """One specialization of the kernel, compiled for CUDA compute capability ``arch`` (90: H100/H200).

    ``angles``: "kernel" or "table"; ``positions``: "arange" (+ a scalar offset), "offsets" (one per
    sequence) or "explicit"; ``tail`` > 0 also copies the features past the rotated ones (out of place).
    Returns Triton's compiled kernel (``.asm`` holds ``ptx`` and ``cubin``).
    """
    if dtype not in _TYPES or angles not in ("kernel", "table") or sincos not in ("libdevice", "quadrant") \
            or positions not in ("arange", "offsets", "explicit") or layout not in ("half", "interleaved"):
        raise ValueError(f"compile_kernel: got dtype={dtype!r} (one of {list(_TYPES)}), angles={angles!r}, "
                         f"sincos={sincos!r}, positions={positions!r}, layout={layout!r}")
    element, compute = _TYPES[dtype]
    block_t, block_h, num_warps = config
    consts = dict(HALF=half, TAIL=tail, BLOCK_HALF=_pow2(half), BLOCK_TAIL=_pow2(max(tail, 1)), BLOCK_T=block_t,
                  BLOCK_H=block_h, INTERLEAVED=layout == "interleaved", CONJ=conj, ANGLES=int(angles == "kernel"),
                  POS_MODE=("arange", "offsets", "explicit").index(positions), VARLEN=varlen, COPY_TAIL=tail > 0,
                  COMPUTE=compute, SINCOS=int(sincos == "quadrant" and dtype != "fp64"))
    assert tuple(consts) == _CONSTEXPRS
    table = "fp64" if dtype == "fp64" else "fp32"
    pointers = dict(Q=element, QO=element, K=element, KO=element, COS=table, SIN=table, TURNS="i64", POS="i64",
                    OFFSETS="i32", CU_SEQLENS="i32")
    params = list(inspect.signature(_rope_kernel).parameters)
    signature = {p: "constexpr" if p in consts else "*" + pointers[p] if p in pointers
                 else "fp32" if p == "factor" else "i64" if p == "offset" else "i32" for p in params}
    source = ASTSource(fn=JITFunction(_rope_kernel), signature=signature,
                       constexprs={(params.index(name),): value for name, value in consts.items()})
    # multiplies and adds fused into FMAs: the default of the Triton that launches the kernel on the GPU
    # machine (3.6). Triton 3.9 warns that its default is about to change; the option here says it.
    options = dict(num_warps=num_warps, enable_fp_fusion=True)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="TRITON_DEFAULT_FP_FUSION")
        return triton.compile(source, target=GPUTarget("cuda", arch, 32), options=options)


def _cuobjdump() -> Path:
    import triton.backends.nvidia as nvidia

    return Path(nvidia.__file__).parent / "bin" / "cuobjdump"


def sass_stats(kernel) -> dict:
    """Counts from the kernel's SASS: instructions, branches, special-function (MUFU) instructions,
    local-memory loads and stores (spills, or a stack array), the registers a thread uses and its stack."""
    with tempfile.TemporaryDirectory() as d:
        cubin = Path(d) / "kernel.cubin"
        cubin.write_bytes(kernel.asm["cubin"])
        sass = subprocess.run([str(_cuobjdump()), "-sass", str(cubin)], capture_output=True, text=True, check=True).stdout
        usage = subprocess.run([str(_cuobjdump()), "-res-usage", str(cubin)], capture_output=True, text=True, check=True).stdout
    ops = re.findall(r"^\s+/\*[0-9a-f]{4}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)", sass, flags=re.M)
    names = [op.split(".")[0] for op in ops]
    regs, stack = re.search(r"REG:(\d+)", usage), re.search(r"STACK:(\d+)", usage)
    return dict(instructions=len(names), branches=sum(n in ("BRA", "BRX", "JMP", "CALL") for n in names),
                mufu=names.count("MUFU"), local=sum(n in ("LDL", "STL") for n in names),
                registers=int(regs.group(1)) if regs else None, stack_bytes=int(stack.group(1)) if stack else None)
