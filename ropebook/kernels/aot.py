"""Compile the kernel for a GPU that is not here, and count what that GPU would be given to run.

Triton compiles for a named target without a device. ``compile_launches(call)``
runs ``call`` (say ``rope_qk`` on CPU tensors of the shapes of interest) with
the launcher recording instead of launching, then compiles each recorded launch
for, by default, an H100 (compute capability 9.0), specialized the way Triton's
JIT specializes it on a GPU: its own argument binder decides which pointers are
16-byte aligned and which integers are multiples of 16 or equal to 1. (Those
decide, for one, whether loads are vectorized, so a compile without them would
describe a different kernel.) ``sass_stats`` disassembles the machine code (SASS)
with the ``cuobjdump`` that ships inside Triton.

The tests use this to compile every branch of the kernel natively in CI, which
has no GPU (the interpreter runs the same code through NumPy, which forgives
things a real compile does not); the chapter uses it to compare the ways of
forming cos and sin instruction by instruction. ``compile_call`` compiles one
launch of any Triton kernel the same way: ``tools/sass_counts.py`` counts
Liger-Kernel's rope kernel with it.

Chapter: ``ch-rope-gpu``.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
import warnings
from pathlib import Path

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource, make_backend
from triton.runtime.jit import JITFunction

from ropebook.kernels import rope_triton

try:  # Triton's argument binder: an internal API, as in Triton 3.9 (what requirements.txt pins)
    from triton.runtime.jit import create_function_from_signature
except ImportError:
    create_function_from_signature = None

__all__ = ["compile_call", "compile_launches", "kernel_source_sha256", "sass_stats", "supported"]


def supported() -> bool:
    """Whether this Triton has the internals ``compile_launches`` uses (its binder and ``_pack_args``)."""
    return create_function_from_signature is not None and hasattr(JITFunction, "_pack_args")


def compile_launches(call, *, arch: int = 90) -> list:
    """Compile, for CUDA compute capability ``arch`` (90: H100/H200), every kernel launch that ``call()`` makes.

    ``call`` runs with the launcher recording, not launching (CPU tensors are fine: their data pointers
    decide alignment as a GPU's would). Returns one Triton compiled kernel per launch, in order; its
    ``.asm`` holds ``ptx`` and ``cubin``.

    >>> import torch
    >>> from ropebook import kernels as K
    >>> q = torch.zeros(64, 1, 32, 128, dtype=torch.bfloat16).transpose(1, 2)   # a decoding step, (B, H, T, D)
    >>> (kernel,) = compile_launches(lambda: K.rope_qk(q, None, K.rope_cache(128)))
    >>> sass_stats(kernel)["widest_store_bits"]   # q is written in 16-byte stores
    128
    """
    if not supported():
        raise RuntimeError(f"compile_launches: needs Triton's argument binder (create_function_from_signature, "
                           f"JITFunction._pack_args), as in Triton 3.9; this is Triton {triton.__version__}")
    if rope_triton._capture is not None:
        raise RuntimeError("compile_launches: already recording launches (not re-entrant)")
    rope_triton._capture = captured = []
    try:
        call()
    finally:
        rope_triton._capture = None
    if not captured:
        raise ValueError("compile_launches: call() launched no kernel")
    fn = JITFunction(rope_triton._rope_kernel)
    return [compile_call(fn, args, dict(zip(rope_triton._CONSTEXPRS, consts)), num_warps=num_warps, arch=arch)
            for _grid, num_warps, args, consts in captured]


def compile_call(fn: JITFunction, args: tuple, kwargs: dict, *, num_warps: int = 4, arch: int = 90):
    """Compile one launch of any Triton kernel ``fn`` (``args``: its run-time arguments, tensors as pointers;
    ``kwargs``: its ``tl.constexpr`` ones) for compute capability ``arch``, specialized as Triton's JIT
    specializes that launch on a GPU. ``num_warps``: as the launch asks (Triton's default is 4).
    ``tools/sass_counts.py`` compiles Liger-Kernel's rope kernel with it."""
    if not supported():
        raise RuntimeError(f"compile_call: needs Triton's argument binder (create_function_from_signature, "
                           f"JITFunction._pack_args), as in Triton 3.9; this is Triton {triton.__version__}")
    target = GPUTarget("cuda", arch, 32)
    backend = make_backend(target)
    binder = create_function_from_signature(fn.signature, fn.params, backend)
    # multiplies and adds fused into FMAs: the default of the Triton that launches the kernel on the GPU
    # machine (3.6). Triton 3.9 warns that its default is about to change; the option here says it.
    kwargs = dict(kwargs, num_warps=num_warps, enable_fp_fusion=True, debug=False)
    bound, specialization, options = binder(*args, **kwargs)
    options, signature, constexprs, attrs = fn._pack_args(backend, kwargs, bound, specialization, options)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="TRITON_DEFAULT_FP_FUSION")
        return triton.compile(ASTSource(fn, signature, constexprs, attrs), target=target, options=options.__dict__)


def kernel_source_sha256(rope_triton) -> str:
    """sha256 of what Triton compiles for the kernel of the module ``rope_triton`` (this package's, or an older
    tree's: ``tools/sass_counts.py`` records it next to its counts): the source of ``_rope_kernel``, then of
    the module's device functions (its ``JITFunction`` objects, which the kernel calls), in name order. The
    kernel's own ``JITFunction`` (``_native``, which exists only when the module was imported without
    TRITON_INTERPRET) is not a device function: leaving it out makes the hash the same either way. A change
    of a docstring outside the kernel, or of the Python launcher, does not change it."""
    import hashlib
    import inspect

    device = [obj.src for _, obj in sorted(vars(rope_triton).items())
              if isinstance(obj, JITFunction) and obj.fn is not rope_triton._rope_kernel]
    return hashlib.sha256("\n".join([inspect.getsource(rope_triton._rope_kernel), *device]).encode()).hexdigest()


def _cuobjdump() -> Path:
    import triton.backends.nvidia as nvidia

    return Path(nvidia.__file__).parent / "bin" / "cuobjdump"


def _registers(operand: str) -> set[int]:
    """The general registers an operand names; ``R8.64`` is the pair R8, R9 (a 64-bit address)."""
    out = set()
    for m in re.finditer(r"\bR(\d+)(\.64)?", operand):
        out.update((int(m.group(1)), int(m.group(1)) + 1) if m.group(2) else (int(m.group(1)),))
    return out


def _loads_before_first_wait(sass: str) -> int:
    """Global loads a thread issues before its first instruction that needs the result of one of them:
    the loads in flight together at the start, before the first memory round trip is waited for.
    Reads the program in order from its start (the first of the kernel's q-or-k copies)."""
    pending: set[int] = set()
    count = 0
    for m in re.finditer(r"^\s+/\*[0-9a-f]{4}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)\s*(.*?)\s*;", sass, flags=re.M):
        op, operands = m.group(1), [o.strip() for o in m.group(2).split(",")] if m.group(2) else []
        name = op.split(".")[0]
        sources = operands if name in ("STG", "ST", "STS", "RED", "ATOM", "BRA", "EXIT") else operands[1:]
        if pending & set().union(*map(_registers, sources)):
            return count
        if name == "LDG":
            count += 1
            bits = int((re.findall(r"\.(\d+)\b", op) or [32])[-1])
            first = min(_registers(operands[0]))
            pending.update(range(first, first + max(bits // 32, 1)))
    return count


def sass_stats(kernel) -> dict:
    """Counts from a compiled kernel's SASS: instructions, branches, the instructions before the first
    global load (``before_first_load``: the address arithmetic every program does before memory can start
    working for it, which a decoding step's few microseconds feel), the global loads placed after the first
    store (in program order: a kernel compiled in two copies, one for q and one for k, counts the second
    copy's), global loads and the widest of them (bits; it may be a load of cos and sin), the widest global
    store (bits: only q and k are stored, so this is how wide the kernel moves them), the loads issued
    before the first wait for one (``loads_before_first_wait``: how many memory round trips overlap at the
    start), special-function (MUFU) instructions, arithmetic in bf16
    (``bf16_math``: bf16 adds, multiplies and FMAs in the PTX, each result rounded to bf16; counted there,
    as SASS writes a bf16 FMA as ``HFMA2.MMA``, a form it also uses to move constants), local-memory loads
    and stores (spills, or a stack array), the registers a thread uses and its stack bytes."""
    with tempfile.TemporaryDirectory() as d:
        cubin = Path(d) / "kernel.cubin"
        cubin.write_bytes(kernel.asm["cubin"])
        sass = subprocess.run([str(_cuobjdump()), "-sass", str(cubin)], capture_output=True, text=True, check=True).stdout
        usage = subprocess.run([str(_cuobjdump()), "-res-usage", str(cubin)], capture_output=True, text=True, check=True).stdout
    ops = re.findall(r"^\s+/\*[0-9a-f]{4}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)", sass, flags=re.M)
    names = [op.split(".")[0] for op in ops]
    loads = [op for op in ops if op.split(".")[0] == "LDG"]

    def bits(op):  # LDG.E / STG.E move 32 bits
        return int((re.findall(r"\.[SU]?(\d+)\b", op) or [32])[-1])

    regs, stack = re.search(r"REG:(\d+)", usage), re.search(r"STACK:(\d+)", usage)
    return dict(instructions=len(names), branches=sum(n in ("BRA", "BRX", "JMP", "CALL") for n in names),
                before_first_load=names.index("LDG") if "LDG" in names else None,
                loads_after_first_store=names[names.index("STG"):].count("LDG") if "STG" in names else 0,
                global_loads=len(loads), widest_load_bits=max(map(bits, loads), default=0),
                widest_store_bits=max((bits(op) for op in ops if op.split(".")[0] == "STG"), default=0),
                loads_before_first_wait=_loads_before_first_wait(sass), mufu=names.count("MUFU"),
                bf16_math=len(re.findall(r"^\s*(?:add|sub|mul|fma)(?:\.rn)?\.bf16(?:x2)?\s", kernel.asm["ptx"], re.M)),
                local=sum(n in ("LDL", "STL") for n in names), registers=int(regs.group(1)) if regs else None,
                stack_bytes=int(stack.group(1)) if stack else None)
