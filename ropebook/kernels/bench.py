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
``$ROPEBOOK_SWEEP_JSON`` (``$ROPEBOOK_BENCH_SWEEP=only`` skips the main table; ``$ROPEBOOK_SWEEP_CASES``
picks cases, and the file keeps the rows of the others). Without CUDA it says so, times ``host_to_launch_us`` and
checks the kernel's agreement under the Triton interpreter.

Chapter: ``ch-rope-gpu``.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import platform
import subprocess
import statistics
import sys
import time
from pathlib import Path

import torch

import ropebook as rb

HQ, HK, D = 32, 8, 128
PREFILL_T = (1024, 4096, 16384)
DECODE_B, MAX_OFFSET = 64, 1_000_000
ROUNDS = int(os.environ.get("ROPEBOOK_BENCH_ROUNDS", "3"))  # rounds over all contenders; `us` is their median


def shapes(quick: bool):
    """(name, B, T) of every case."""
    cases = [(f"prefill T={T}", 1, T) for T in PREFILL_T] + [(f"decode B={DECODE_B}", DECODE_B, 1)]
    return cases[:1] + cases[-1:] if quick else cases


def moved_bytes(B: int, T: int, itemsize: int = 2) -> int:
    """Bytes of q and k read once plus written once: the floor of any RoPE."""
    return 2 * B * T * (HQ + HK) * D * itemsize


OPERATOR_ROW = "torch.ops.ropebook.rope (compiled)"


def host_to_launch_us(batches: int = 30, calls: int = 200) -> dict:
    """Host time of a decoding step's call (B=64, our head counts, bf16, offsets per sequence), up to the
    GPU launch: the launcher records the launch instead of making it (``rope_triton._capture``), so this
    runs on CPU tensors, with or without a GPU, and leaves out only Triton's launch itself. ``first``: the
    call's signature is new (the plan cache emptied before every call: all checks, all of the launch's
    arithmetic); ``repeat``: seen before (``ropebook.kernels.autograd``'s plans). The last row calls the
    custom operator as code compiled by ``torch.compile`` does, through PyTorch's dispatcher
    (``ropebook.kernels.op``; its body keeps plans too). Microseconds a call, the fastest of ``batches``
    batches of ``calls`` calls (the least disturbed by the rest of the machine)."""
    from ropebook import kernels as K
    from ropebook.kernels import autograd, op, rope_triton

    q = torch.randn(DECODE_B, 1, HQ, D, dtype=torch.bfloat16).transpose(1, 2)  # (B, H, 1, D) views, as benchmarked
    k = torch.randn(DECODE_B, 1, HK, D, dtype=torch.bfloat16).transpose(1, 2)
    cache = K.rope_cache(D, max_position=4096)
    offsets = torch.randint(0, 4095, (DECODE_B,), dtype=torch.int32)
    c, s = cache.cos[offsets.long()][:, None], cache.sin[offsets.long()][:, None]  # (B, 1, D/2)
    c_hf, s_hf = torch.cat((c, c), -1).bfloat16(), torch.cat((s, s), -1).bfloat16()  # Hugging Face's (B, 1, D)
    cases = {
        "rope_qk, angles=table": lambda: K.rope_qk(q, k, cache, offsets=offsets, angles="table"),
        "rope_qk, angles=kernel": lambda: K.rope_qk(q, k, cache, offsets=offsets, angles="kernel"),
        "rope_qk, angles=table, in place": lambda: K.rope_qk(q, k, cache, offsets=offsets, angles="table", inplace=True),
        "rope_qk_cos_sin": lambda: K.rope_qk_cos_sin(q, k, c, s),
        "hf_apply_rotary_pos_emb": lambda: K.hf_apply_rotary_pos_emb(q, k, c_hf, s_hf),
        # what code compiled by torch.compile calls in each layer: the operator, through PyTorch's dispatcher
        OPERATOR_ROW: lambda: torch.ops.ropebook.rope.default(q, k, cache.cos, cache.sin, None, None, offsets, None,
                                                              D // 2, "half", 1.0, 0, None, False),
    }
    out = {name: {"first": float("inf"), "repeat": float("inf")} for name in cases}
    before, rope_triton._capture = rope_triton._capture, []
    try:
        with torch.no_grad():
            for _ in range(batches):  # round-robin: a slow spell of the machine spreads over every row
                for name, call in cases.items():
                    for kind in ("first", "repeat"):
                        autograd._plans.clear()
                        op._plans.clear()
                        call()  # a first call (its signature new); every repeat below finds its plan
                        t0 = time.perf_counter()
                        for _ in range(calls):
                            if kind == "first":
                                autograd._plans.clear()
                                op._plans.clear()
                            call()
                            rope_triton._capture.clear()
                        out[name][kind] = min(out[name][kind], (time.perf_counter() - t0) / calls * 1e6)
    finally:
        rope_triton._capture = before
        autograd._plans.clear()
        op._plans.clear()
    return out


def _print_host_to_launch(rows: dict) -> None:
    print(f"\nhost µs a decoding call, up to the launch (this machine's CPU: {_cpu_name()})")
    print(f"{'call':<36} {'first':>8} {'repeat':>8}")
    for name, r in rows.items():
        print(f"{name:<36} {r['first']:8.1f} {r['repeat']:8.1f}")


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def _cpu_part(args) -> int:
    print("ropebook.bench gpu: no CUDA device here: GPU numbers were NOT measured.")
    for name, B, T in shapes(args.quick):
        print(f"  {name:>16}: q+k read+write = {moved_bytes(B, T) / 1e6:8.2f} MB")
    if importlib.util.find_spec("triton") is None:
        print("triton is not installed: the kernel was not run.")
        return 0
    _print_host_to_launch(host_to_launch_us(batches=10 if args.quick else 30))
    code = ("import torch, ropebook as rb; from ropebook import kernels as K; q, k = torch.randn(1, 4, 5, 16), torch.randn(1, 2, 5, 16);"
            "a, b = K.rope_qk(q, k, K.rope_cache(16), offsets=7);"
            "torch.testing.assert_close(a, rb.apply_rope(q, offset=7)); torch.testing.assert_close(b, rb.apply_rope(k, offset=7));"
            "print('kernel under TRITON_INTERPRET=1 agrees with rb.apply_rope on a (1, 4, 5, 16) input')")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    return subprocess.run([sys.executable, "-c", code], env=env).returncode


def _inputs(B, T, seed=0, device="cuda"):
    g = torch.Generator(device=device).manual_seed(seed)
    q_mem = torch.randn(B, T, HQ, D, device=device, dtype=torch.bfloat16, generator=g)  # (B, T, Hq, D)
    k_mem = torch.randn(B, T, HK, D, device=device, dtype=torch.bfloat16, generator=g)
    if T == 1:
        offsets = torch.randint(0, MAX_OFFSET, (B,), device=device, generator=g, dtype=torch.int32)  # (B,)
    else:
        offsets = torch.zeros(B, device=device, dtype=torch.int32)
    return q_mem, k_mem, offsets


def _contenders(B, T, q_mem, k_mem, offsets, tables):
    """name -> (fn, note, outputs(): (q_rot, k_rot) as (B, H, T, D) after one call, or None). Any device (the
    tests run every row on the CPU, the kernel's under the Triton interpreter)."""
    from ropebook import kernels as K

    q, k = q_mem.transpose(1, 2), k_mem.transpose(1, 2)  # (B, H, T, D) views
    pos = offsets[:, None].long() + torch.arange(T, device=q_mem.device)  # (B, T)
    cache, cos_t, sin_t = tables
    c, s = cos_t[pos], sin_t[pos]  # (B, T, D/2) float32 from float64 angles
    cos_hf = torch.cat((c, c), -1).to(torch.bfloat16)  # (B, T, D): what HF's rotary module hands over
    sin_hf = torch.cat((s, s), -1).to(torch.bfloat16)
    off = offsets if T == 1 else 0
    out = {}
    src = torch.empty(q_mem.numel() + k_mem.numel(), device=q_mem.device, dtype=torch.bfloat16).normal_()
    dst = torch.empty_like(src)
    out["device copy (same bytes)"] = (lambda: dst.copy_(src), "one copy_ of a buffer of q+k elements", None)
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    hf = lambda: apply_rotary_pos_emb(q, k, cos_hf, sin_hf)  # noqa: E731
    out["HF eager formula"] = (hf, "apply_rotary_pos_emb, cos/sin (B, T, D) bf16 precomputed", hf)
    out["torch.compile(HF formula)"] = (torch.compile(apply_rotary_pos_emb), "same inputs", None)
    cf = out["torch.compile(HF formula)"][0]
    out["torch.compile(HF formula)"] = (lambda: cf(q, k, cos_hf, sin_hf), "same inputs", lambda: cf(q, k, cos_hf, sin_hf))
    offs = offsets.view(B, 1, 1) if T == 1 else 0

    def rb_torch(q, k):
        return rb.apply_rope(q, offset=offs, backend="torch"), rb.apply_rope(k, offset=offs, backend="torch")

    rc = torch.compile(rb_torch)
    out["torch.compile(rb torch path)"] = (lambda: rc(q, k), "angles from positions in float64 inside the graph",
                                           lambda: rc(q, k))
    if importlib.util.find_spec("liger_kernel") is not None:
        from liger_kernel.ops.rope import LigerRopeFunction

        lig = lambda: LigerRopeFunction.apply(q, k, cos_hf, sin_hf)  # noqa: E731
        out["Liger-Kernel rope (in place)"] = (lig, "HF inputs; rotates the (B, T, H, D) storage in place", lig)
    path = os.environ.get("ROPEBOOK_FLASH_ROTARY")
    if path and os.path.exists(path):
        spec = importlib.util.spec_from_file_location("flash_attn_rotary", path)
        fa = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(fa)
        fa_off = offsets if T == 1 else 0
        fa_fn = lambda: (fa.apply_rotary(q_mem, cos_t, sin_t, seqlen_offsets=fa_off),  # noqa: E731
                         fa.apply_rotary(k_mem, cos_t, sin_t, seqlen_offsets=fa_off))
        out["flash-attn apply_rotary (2 calls)"] = (fa_fn, "q then k, (B, T, H, D), float32 table",
                                                    lambda: tuple(x.transpose(1, 2) for x in fa_fn()))
        fa_ip = lambda: (fa.apply_rotary(q_mem, cos_t, sin_t, seqlen_offsets=fa_off, inplace=True),  # noqa: E731
                         fa.apply_rotary(k_mem, cos_t, sin_t, seqlen_offsets=fa_off, inplace=True))
        out["flash-attn apply_rotary (2 calls, in place)"] = (fa_ip, "same, in place",
                                                              lambda: tuple(x.transpose(1, 2) for x in fa_ip()))
    for angles in ("kernel", "table"):
        f = lambda angles=angles: K.rope_qk(q, k, cache, offsets=off, angles=angles)  # noqa: E731
        out[f"ropebook rope_qk, angles={angles}"] = (f, "one launch, q and k", f)
        g = lambda angles=angles: K.rope_qk(q, k, cache, offsets=off, angles=angles, inplace=True)  # noqa: E731
        out[f"ropebook rope_qk, angles={angles}, in place"] = (g, "one launch, in place", g)
    from ropebook.kernels import rope_triton

    def quadrant(inplace):  # the experimental cos/sin of computed angles (rope_triton.SINCOS), to decide on it
        with rope_triton.sincos("quadrant"):
            return K.rope_qk(q, k, cache, offsets=off, angles="kernel", inplace=inplace)

    out["ropebook rope_qk, angles=kernel, quadrant sin/cos"] = (
        lambda: quadrant(False), "computed angles reduced to a quarter turn, polynomial cos/sin", lambda: quadrant(False))
    out["ropebook rope_qk, angles=kernel, quadrant sin/cos, in place"] = (
        lambda: quadrant(True), "same, in place", lambda: quadrant(True))
    h = D // 2  # HF's cos/sin are duplicated, (B, T, D): the first half is one value per pair (a view)
    f = lambda: K.rope_qk_cos_sin(q, k, c, s)  # noqa: E731
    out["ropebook rope_qk_cos_sin, float32 cos/sin"] = (f, "cos/sin (B, T, D/2) float32 formed by the caller", f)
    g = lambda: K.rope_qk_cos_sin(q, k, cos_hf[..., :h], sin_hf[..., :h], inplace=True)  # noqa: E731
    out["ropebook rope_qk_cos_sin, HF bf16 cos/sin, in place"] = (g, "Liger's inputs and in-place writes", g)
    f = lambda: K.hf_apply_rotary_pos_emb(q, k, cos_hf, sin_hf)  # noqa: E731
    out["ropebook hf_apply_rotary_pos_emb (drop-in)"] = (f, "HF's signature and inputs, out of place, as patch_hf calls it", f)
    out.update(_other_forms(q_mem, k_mem, c, s))
    if B == 1 and T > 1:
        out.update(_vision_forms(q_mem, k_mem, c, s))
    # the drop-in as a compiled model runs it: the operator (ropebook.kernels.op) in a graph, called through
    # PyTorch's dispatcher; beside torch.compile(HF formula), where Inductor fuses the formula itself
    cd = torch.compile(K.hf_apply_rotary_pos_emb)
    out["torch.compile(ropebook drop-in)"] = (lambda: cd(q, k, cos_hf, sin_hf),
                                             "the drop-in compiled: torch.ops.ropebook.rope in the graph",
                                             lambda: cd(q, k, cos_hf, sin_hf))
    if T == 1:  # the same launch, bound by Triton's JIT on every call: what the direct launch saves on the host
        def jit_every_call():
            rope_triton._direct[0] = False
            try:
                return K.rope_qk(q, k, cache, offsets=off, angles="table")
            finally:
                rope_triton._direct[0] = True

        out["ropebook rope_qk, angles=table, Triton JIT launch"] = (
            jit_every_call, "as angles=table, without the direct launch of a compiled kernel", jit_every_call)
    return out


def _graph_ms(fn, flush: torch.Tensor | None, n: int = 20, replays: int = 15) -> float:
    """Median GPU milliseconds per call from CUDA-graph replays of n calls (launch gaps removed).

    With ``flush``, every call is preceded by zeroing that buffer (twice the L2), so inputs come
    from DRAM; the time of a graph of the flushes alone is subtracted.
    """
    def graph(body):
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            body()  # warm-up outside the graph
        torch.cuda.current_stream().wait_stream(s)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            body()
        return g

    def timed(g):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        g.replay()
        out = []
        for _ in range(replays):
            start.record()
            g.replay()
            end.record()
            end.synchronize()
            out.append(start.elapsed_time(end))
        return out

    def calls():
        for _ in range(n):
            if flush is not None:
                flush.zero_()
            fn()

    g_fn = graph(calls)
    if flush is None:
        return statistics.median(timed(g_fn)) / n
    g_flush = graph(lambda: [flush.zero_() for _ in range(n)])
    both, only = timed(g_fn), timed(g_flush)
    return (statistics.median(both) - statistics.median(only)) / n


def _time(fn, decode: bool, rep: int = 300) -> float:
    fn()
    torch.cuda.synchronize()
    return _graph_ms(fn, None if decode else _FLUSH[0], replays=15 if rep >= 300 else 5)


def _time_or_eager(fn, decode: bool) -> tuple[float, str]:
    try:
        return _time(fn, decode), "graph"
    except Exception as e:  # a contender that cannot be captured is timed eagerly, and the row says so
        torch.cuda.synchronize()
        return _eager_ms(fn), f"eager (graph capture failed: {type(e).__name__})"


_FLUSH: list = [None]


def _eager_ms(fn) -> float:
    """do_bench median: L2 flushed before each call, Python launch overhead included where it exceeds the flush."""
    import triton.testing as tt

    return tt.do_bench(fn, warmup=25, rep=200, return_mode="median")


def _other_forms(q_mem, k_mem, c, s) -> dict:
    """Rows for the drop-ins of Cohere's and DeepSeek-V3's forms, which read interleaved pairs: each is handed a
    copy of q and k with their features interleaved, pair i of the half layout at (2i, 2i + 1), so that what it
    computes is the benchmark's rotation (``outputs()`` gives it in the half layout ``_error`` compares with).
    Cohere's reads cos and sin (B, T, D) at every other feature; DeepSeek-V3's writes the half layout itself.
    Any device (the tests run it on the CPU); ``c``, ``s``: (B, T, D/2) float32."""
    from ropebook import kernels as K

    h = c.shape[-1]
    order = torch.stack((torch.arange(h), torch.arange(h) + h), -1).flatten().to(q_mem.device)  # half -> interleaved
    back = torch.argsort(order)
    qi, ki = (x[..., order].transpose(1, 2) for x in (q_mem, k_mem))  # (B, H, T, D) views of interleaved copies
    cos_co, sin_co = (x.repeat_interleave(2, -1).to(torch.bfloat16) for x in (c, s))  # Cohere's (B, T, D)
    cos_hf, sin_hf = (torch.cat((x, x), -1).to(torch.bfloat16) for x in (c, s))
    co = lambda: K.hf_apply_rotary_pos_emb_cohere(qi, ki, cos_co, sin_co)  # noqa: E731
    ds = lambda: K.hf_apply_rotary_pos_emb_interleave(qi, ki, cos_hf, sin_hf)  # noqa: E731
    return {"ropebook hf_apply_rotary_pos_emb_cohere (drop-in)": (
                co, "Cohere's: interleaved pairs, cos (B, T, D) read at every other feature",
                lambda: tuple(x[..., back] for x in co())),
            "ropebook hf_apply_rotary_pos_emb_interleave (drop-in)": (
                ds, "DeepSeek-V3's: pairs read interleaved, written as (i, i + D/2)", ds)}


def _vision_forms(q_mem, k_mem, c, s) -> dict:
    """Rows for a vision tower's function, Qwen2-VL's ``apply_rotary_pos_emb_vision`` (eager) and its drop-in, on the
    prefill's one sequence as a tower packs its patches: q and k ``(T, H, D)``, cos and sin ``(T, D)`` float32, as
    the towers pass them (the eager function computes in float32 and rounds once, as the kernel does).
    ``outputs()`` gives the results as ``(1, H, T, D)`` for ``_error``. Any device; ``c``, ``s``: (1, T, D/2)."""
    from transformers.models.qwen2_vl.modeling_qwen2_vl import apply_rotary_pos_emb_vision

    from ropebook import kernels as K

    qv, kv = q_mem[0], k_mem[0]  # (T, H, D) views
    cos_v, sin_v = torch.cat((c[0], c[0]), -1), torch.cat((s[0], s[0]), -1)  # (T, D) float32
    hf = lambda: apply_rotary_pos_emb_vision(qv, kv, cos_v, sin_v)  # noqa: E731
    rb_v = lambda: K.hf_apply_rotary_pos_emb_vision(qv, kv, cos_v, sin_v)  # noqa: E731
    return {"HF eager vision formula (Qwen2-VL)": (hf, "apply_rotary_pos_emb_vision, (T, H, D), cos (T, D) float32",
                                                  lambda: tuple(x[None].transpose(1, 2) for x in hf())),
            "ropebook hf_apply_rotary_pos_emb_vision (drop-in)": (rb_v, "its drop-in, the same inputs",
                                                                  lambda: tuple(x[None].transpose(1, 2) for x in rb_v()))}


# SAM 2's memory cross-attention at its default sizes: the current frame's 64 × 64 patches, one head of 256 features,
# attending to 7 frames of memory (num_maskmem) and 16 object pointers of 4 tokens each (max_object_pointers_in_encoder)
SAM_SIDE, SAM_D, SAM_FRAMES, SAM_POINTERS = 64, 256, 7, 16 * 4


def sam_inputs(device, side: int = SAM_SIDE, D: int = SAM_D, frames: int = SAM_FRAMES, pointers: int = SAM_POINTERS,
               seed: int = 0):
    """q ``(1, 1, T, D)`` and k ``(1, 1, frames·T + pointers, D)`` bf16, as views of SAM's ``(B, T, H, D)``
    projections, T = side²; cos and sin SAM's axial table ``(1, T, D)`` float32 (each patch's column in the first
    half of the pairs, its row in the second, each value twice in a row), as SAM 2's rotary module makes them."""
    g = torch.Generator(device=device).manual_seed(seed)
    T = side * side
    q = torch.randn(1, T, 1, D, device=device, dtype=torch.bfloat16, generator=g).transpose(1, 2)
    k = torch.randn(1, frames * T + pointers, 1, D, device=device, dtype=torch.bfloat16, generator=g).transpose(1, 2)
    return (q, k, *(x.to(device) for x in sam_table(T, side, D)))


def sam_table(T: int, width: int, D: int) -> tuple[torch.Tensor, torch.Tensor]:
    """SAM's axial cos and sin ``(1, T, D)`` float32 for T patches in rows of ``width``: the first half of the
    pairs turned by each patch's column, the second by its row (frequencies θ_i = 10000^(-2i/(D/2)) on each
    axis), each value twice in a row, as SAM 2's rotary module makes them."""
    cols, rows = (rb.rope_cos_sin(p, D // 2) for p in (torch.arange(T) % width, torch.arange(T) // width))
    return tuple(torch.cat((c, r), -1).repeat_interleave(2, -1)[None] for c, r in zip(cols, rows))


def _sam_forms(q, k, cos, sin, pointers: int) -> dict:
    """Rows for SAM 2's ``apply_rotary_pos_emb_2d`` in its memory cross-attention (the table tiled over the frames
    of memory, the pointers passed through): their eager function, the drop-in (a launch a frame), and the other
    way the drop-in could go, one launch for every frame with a tiled copy of the table (as theirs tiles it),
    q in a launch of its own. Any device (the tests run it on the CPU)."""
    from transformers.models.sam2_video.modeling_sam2_video import apply_rotary_pos_emb_2d

    from ropebook import kernels as K

    kw = dict(num_k_exclude_rope=pointers, repeat_freqs_k=True)
    m = k.shape[2] - pointers
    frames = m // q.shape[2]
    c1, s1 = cos[..., 0::2], sin[..., 0::2]  # one value a pair (views)

    def tiled():
        qr, _ = K.rope_qk_cos_sin(q, None, c1, s1, layout="interleaved")
        kr, _ = K.rope_qk_cos_sin(k[:, :, :m], None, c1.repeat(1, frames, 1), s1.repeat(1, frames, 1), layout="interleaved")
        return qr, torch.cat((kr, k[:, :, m:]), 2)

    hf = lambda: apply_rotary_pos_emb_2d(q, k, cos, sin, **kw)  # noqa: E731
    di = lambda: K.hf_apply_rotary_pos_emb_2d(q, k, cos, sin, **kw)  # noqa: E731
    src = torch.empty(q.numel() + k.numel(), device=q.device, dtype=q.dtype).normal_()
    dst = torch.empty_like(src)
    return {"device copy (same bytes)": (lambda: dst.copy_(src), "one copy_ of a buffer of q+k elements", None),
            "HF eager apply_rotary_pos_emb_2d (SAM 2)": (hf, "float32 table (1, T, D), computes in float32", hf),
            "ropebook hf_apply_rotary_pos_emb_2d (drop-in)": (di, f"{frames} launches: q with the first frame, then "
                                                              "one a frame; one concatenation", di),
            "ropebook, table tiled, keys in one launch": (tiled, "two repeats of the table, a launch for q and one for "
                                                          "every frame's keys, one concatenation", tiled)}


def _sam_case(device="cuda") -> dict:
    """SAM 2's memory cross-attention at SAM 2's sizes, timed and printed as the other cases; its results, or what
    went wrong (a failure here loses none of the cases timed before it)."""
    T = SAM_SIDE * SAM_SIDE
    case = dict(case="SAM 2 memory cross-attention", T=T, D=SAM_D, frames=SAM_FRAMES, pointers=SAM_POINTERS,
                dtype="bfloat16", rounds=ROUNDS,
                timing=(f"median over {ROUNDS} rounds (rounds_us) of the median GPU time per call from CUDA-graph "
                        "replays of 20 calls, L2 flushed before each call (flush time subtracted); eager_us: "
                        "triton.testing.do_bench median, Python launch included"))
    try:
        q, k, cos, sin = sam_inputs(device, SAM_SIDE, SAM_D, SAM_FRAMES, SAM_POINTERS)
        case["bytes"] = nbytes = 2 * (q.numel() + k.numel()) * q.element_size()
        case["results"] = results = _time_contenders(_sam_forms(q, k, cos, sin, SAM_POINTERS), (q, k), False,
                                                     lambda outputs: _sam_error(outputs, q, k, cos, sin, SAM_POINTERS))
        _print_case(f"SAM 2 memory cross-attention: q (1, 1, {T}, {SAM_D}), k {SAM_FRAMES} frames of {T} and "
                    f"{SAM_POINTERS} pointer tokens, bf16", results, nbytes, False)
    except Exception as e:  # reported, not hidden, and not fatal to the rest of the run
        case["failed"] = f"{type(e).__name__}: {str(e)[:200]}"
        print(f"\nSAM 2 memory cross-attention: failed: {case['failed']}")
    return case


def _sam_error(outputs, q, k, cos, sin, pointers: int) -> float:
    """Max |result − SAM 2's function run in float64 on the same bf16 inputs| over q and k."""
    from transformers.models.sam2_video.modeling_sam2_video import apply_rotary_pos_emb_2d

    ref = apply_rotary_pos_emb_2d(q.double(), k.double(), cos.double(), sin.double(), num_k_exclude_rope=pointers,
                                  repeat_freqs_k=True)
    return max((y.double() - r).abs().max().item() for y, r in zip(outputs(), ref))


def _error(outputs, q_mem, k_mem, offsets, T) -> float:
    """Max |result − float64 RoPE of the same bf16 inputs| over q and k (the references taken first: an in-place
    contender's ``outputs()`` turns the inputs)."""
    offs = offsets.view(-1, 1, 1).long() if T == 1 else 0
    refs = [rb.apply_rope(x.transpose(1, 2).double(), offset=offs, backend="torch") for x in (q_mem, k_mem)]
    return max((y.double() - ref).abs().max().item() for y, ref in zip(outputs(), refs))


def _host_us(fn, n=100, batches=7) -> float:
    """Wall-clock microseconds of Python per call (launch overhead), GPU work queued behind: the median
    over batches of n calls (one batch alone moved by 3x when the machine's CPU was busy elsewhere)."""
    per_call = []
    for _ in range(batches):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        per_call.append((time.perf_counter() - t0) / n * 1e6)
    torch.cuda.synchronize()
    return statistics.median(per_call)


SOURCES = ("kernel", "table", "quadrant", "cos_sin")
"""Where the sweep's kernel gets cos and sin: computed (math library), the cache's table, computed with
``rope_triton.SINCOS="quadrant"``, or ``rope_qk_cos_sin`` reading float32 ``(B, T, r/2)`` values that the
caller formed for its positions (Liger's and Hugging Face's convention: no position lookup in the kernel)."""
FINAL_ROUNDS = int(os.environ.get("ROPEBOOK_SWEEP_ROUNDS", "5"))  # interleaved rounds of the finals


def default_of(source: str, T: int) -> tuple[int, int, int, bool]:
    """The configuration ``rope_triton.default_config`` gives a source at T tokens (our head counts), as
    (BLOCK_T, BLOCK_H, num_warps, together)."""
    from ropebook.kernels import rope_triton

    return (*rope_triton.default_config(T, max(HQ, HK), source in ("table", "cos_sin"))[:3], False)


def sweep_configs(T: int) -> list[tuple[int, int, int, bool]]:
    """The (BLOCK_T, BLOCK_H, num_warps, together) the sweep times at T tokens a sequence: programs of one
    tensor's heads (4 to 32 of them), and programs of q's heads with k's share (``together``; BLOCK_H = 32
    is one program a token, Liger-Kernel's layout).

    >>> len(sweep_configs(1)), len(sweep_configs(1024)), sweep_configs(1)[-1]
    (18, 36, (1, 32, 8, True))
    """
    out = []
    for bt in ([1] if T == 1 else [1, 2]):
        out += [(bt, bh, w, False) for bh in (4, 8, 16, 32) for w in ((1, 2, 4) if T == 1 else (2, 4, 8))]
        out += [(bt, bh, w, True) for bh in (8, 32) for w in (2, 4, 8)]
    return out


def _sweep_cases() -> list[tuple[str, int, int]]:
    """The cases the sweep runs: every case but prefill T=4096, or those that ``$ROPEBOOK_SWEEP_CASES``
    names (comma-separated parts of a case's name, say ``decode,T=1024``), so a run can fit a time limit."""
    cases = [c for c in shapes(False) if c[2] != 4096]
    wanted = [w.strip() for w in os.environ.get("ROPEBOOK_SWEEP_CASES", "").split(",") if w.strip()]
    return [c for c in cases if not wanted or any(w in c[0] for w in wanted)]


def finalists(rows: list[dict], case: str, n: int = 5) -> list[tuple[str, tuple[int, int, int, bool]]]:
    """(source, (BLOCK_T, BLOCK_H, num_warps, together)) worth timing again: the n fastest of the single-round sweep of
    ``case``, then each source's default configuration (it is what users get, so it is always in the final).

    >>> rows = [dict(case="prefill T=1024", angles=a, BLOCK_T=1, BLOCK_H=h, num_warps=2, together=False, us=u)
    ...         for a, h, u in (("table", 8, 3.0), ("table", 16, 1.0), ("kernel", 8, 2.0))]
    >>> finalists(rows, "prefill T=1024", n=1)   # the fastest, then the table's and the kernel's defaults
    [('table', (1, 16, 2, False)), ('table', (1, 8, 4, False)), ('kernel', (1, 8, 2, False))]
    """
    mine = sorted((r for r in rows if r["case"] == case and r.get("stage", "sweep") == "sweep"), key=lambda r: r["us"])
    if not mine:
        raise ValueError(f"finalists: no sweep rows for case={case!r}")
    out = [(r["angles"], (r["BLOCK_T"], r["BLOCK_H"], r["num_warps"], r.get("together", False))) for r in mine[:n]]
    T = 1 if case.startswith("decode") else int(case.split("=")[1])
    for source in dict.fromkeys(r["angles"] for r in mine):
        if (source, default_of(source, T)) not in out:
            out.append((source, default_of(source, T)))
    return out


def _variant(q, k, cache, off, cos, sin, source: str, cfg, inplace: bool = False):
    """A zero-argument call of the kernel with one angle source and tile configuration forced."""
    from ropebook import kernels as K
    from ropebook.kernels import rope_triton

    fixed = lambda T, H, table: cfg  # noqa: E731  (one function for every call: part of the launch signature)

    def call():
        orig = rope_triton.default_config
        rope_triton.default_config = fixed
        try:
            with rope_triton.sincos("quadrant") if source == "quadrant" else contextlib.nullcontext():
                if source == "cos_sin":
                    return K.rope_qk_cos_sin(q, k, cos, sin, inplace=inplace)
                return K.rope_qk(q, k, cache, offsets=off, angles="table" if source == "table" else "kernel",
                                 inplace=inplace)
        finally:
            rope_triton.default_config = orig

    return call


def sweep(tables, device="cuda") -> list[dict]:
    """Time the kernel over ``sweep_configs`` (BLOCK_T, BLOCK_H, num_warps, together) and the angle ``SOURCES`` in one
    round, then time the finalists (out of place and in place) against Liger-Kernel and a copy in
    ``FINAL_ROUNDS`` interleaved rounds: the run that decides a default (rows with ``stage="final"``)."""
    rows = []
    cache, cos_t, sin_t = tables
    for name, B, T in _sweep_cases():
        q_mem, k_mem, offsets = _inputs(B, T, device=device)
        q, k = q_mem.transpose(1, 2), k_mem.transpose(1, 2)
        off = offsets if T == 1 else 0
        pos = offsets[:, None].long() + torch.arange(T, device=device)  # (B, T)
        cos, sin = cos_t[pos], sin_t[pos]  # (B, T, D/2) float32, as rope_qk_cos_sin takes them
        for cfg in sweep_configs(T):
            for source in SOURCES:
                ms = _time(_variant(q, k, cache, off, cos, sin, source, cfg), T == 1, rep=60)
                rows.append(dict(case=name, stage="sweep", BLOCK_T=cfg[0], BLOCK_H=cfg[1], num_warps=cfg[2],
                                 together=cfg[3], angles=source, us=ms * 1e3))
        best = sorted((r for r in rows if r["case"] == name), key=lambda r: r["us"])[:6]
        for r in best:
            print(f"sweep {name:>16} BT={r['BLOCK_T']:>2} BH={r['BLOCK_H']} w={r['num_warps']}"
                  f"{' together' if r['together'] else ''} {r['angles']:>8}: {r['us']:8.2f} us")
        rows += _final(name, T, q_mem, k_mem, q, k, cache, off, cos, sin, finalists(rows, name))
    return rows


def _final(name, T, q_mem, k_mem, q, k, cache, off, cos, sin, chosen) -> list[dict]:
    """Time the chosen variants, out of place and in place, against Liger-Kernel (in place, HF's bf16
    cos/sin) and a device copy of the same bytes, every contender once per round; print medians and ranges."""
    contenders = {}
    src = torch.empty(q_mem.numel() + k_mem.numel(), device=q_mem.device, dtype=torch.bfloat16).normal_()
    dst = torch.empty_like(src)
    contenders["device copy (same bytes)"] = (dict(contender="device copy (same bytes)"), lambda: dst.copy_(src))
    if importlib.util.find_spec("liger_kernel") is not None:
        from liger_kernel.ops.rope import LigerRopeFunction

        cos_hf = torch.cat((cos, cos), -1).to(torch.bfloat16)  # (B, T, D), what HF's rotary module hands Liger
        sin_hf = torch.cat((sin, sin), -1).to(torch.bfloat16)
        contenders["Liger-Kernel rope (in place)"] = (dict(contender="Liger-Kernel rope (in place)"),
                                                      lambda: LigerRopeFunction.apply(q, k, cos_hf, sin_hf))
    for source, cfg in chosen:
        for inplace in (False, True):
            label = (f"ropebook {source:<8} BT={cfg[0]} BH={cfg[1]:<2} w={cfg[2]}{' together' if cfg[3] else ''}"
                     f"{' in place' if inplace else ''}")
            meta = dict(BLOCK_T=cfg[0], BLOCK_H=cfg[1], num_warps=cfg[2], together=cfg[3], angles=source,
                        inplace=inplace, default=cfg == default_of(source, T))
            contenders[label] = (meta, _variant(q, k, cache, off, cos, sin, source, cfg, inplace))
    q0, k0 = q_mem.clone(), k_mem.clone()
    rounds: dict[str, list[float]] = {label: [] for label in contenders}
    for _ in range(FINAL_ROUNDS):
        for label, (_, fn) in contenders.items():
            q_mem.copy_(q0)  # fresh inputs for every contender: in-place ones rotate them many times
            k_mem.copy_(k0)
            rounds[label].append(_time(fn, T == 1, rep=60) * 1e3)
    out = []
    for label, (meta, _) in contenders.items():
        out.append(dict(case=name, stage="final", **meta, rounds_us=rounds[label], us=statistics.median(rounds[label])))
    liger = next((r["us"] for r in out if r.get("contender", "").startswith("Liger")), None)
    print(f"\nfinal {name}: median of {FINAL_ROUNDS} interleaved rounds" + ("" if liger else " (Liger-Kernel not installed)"))
    for label, r in sorted(zip(contenders, out), key=lambda lr: lr[1]["us"]):
        ratio = f"{r['us'] / liger:6.3f}x Liger" if liger else ""
        print(f"  {label:<54} {r['us']:8.2f} us  {min(r['rounds_us']):7.2f}-{max(r['rounds_us']):<7.2f} {ratio}"
              + ("  (default)" if r.get("default") else ""))
    return out


def gpu(args) -> int:
    """Benchmark the fused kernel against eager HF, torch.compile, Liger-Kernel, flash-attn and a device copy."""
    if not torch.cuda.is_available():
        return _cpu_part(args)
    _FLUSH[0] = torch.empty(2 * torch.cuda.get_device_properties(0).L2_cache_size // 4, device="cuda", dtype=torch.float32)
    return _measure(args, "cuda")


def _measure(args, device: str) -> int:
    """Every case, the SAM case, the host times, the results file and the sweep, on ``device``: "cuda" from
    ``gpu``; the tests run it all on the CPU (the kernel under the Triton interpreter, the GPU timers replaced),
    so that what a GPU session runs has run before it."""
    from ropebook import kernels as K

    cache = K.rope_cache(D, max_position=MAX_OFFSET + 1, device=device)
    tables = (cache, cache.cos, cache.sin)
    rows = []
    sweep_only = os.environ.get("ROPEBOOK_BENCH_SWEEP") == "only"
    for name, B, T in [] if sweep_only else shapes(args.quick):
        q_mem, k_mem, offsets = _inputs(B, T, device=device)
        nbytes = moved_bytes(B, T)
        contenders = _contenders(B, T, q_mem, k_mem, offsets, tables)
        results = _time_contenders(contenders, (q_mem, k_mem), T == 1,
                                   lambda outputs: _error(outputs, q_mem, k_mem, offsets, T))
        _print_case(f"{name}: B={B} T={T} Hq={HQ} Hk={HK} D={D} bf16", results, nbytes, T == 1)
        rows.append(dict(case=name, B=B, T=T, Hq=HQ, Hk=HK, D=D, dtype="bfloat16", bytes=nbytes,
                         rounds=ROUNDS,
                         timing=(f"median over {ROUNDS} rounds (rounds_us) of the median GPU time per call from CUDA-graph replays of 20 calls"
                                 + (", inputs warm in L2" if T == 1 else ", L2 flushed before each call (flush time subtracted)")
                                 + "; eager_us: triton.testing.do_bench median, Python launch included"),
                         results=results))
    sam = None if sweep_only else _sam_case(device)
    host = None if sweep_only else host_to_launch_us()  # this machine's CPU: the host side of the decode rows' host us
    if host is not None:
        _print_host_to_launch(host)
    out = os.environ.get("ROPEBOOK_BENCH_JSON")
    if out and not sweep_only:
        from ropebook.kernels import rope_triton

        kernel_sha256 = hashlib.sha256(Path(rope_triton.__file__).read_bytes()).hexdigest()  # which kernel was timed
        meta = dict(**_machine(device), kernel_sha256=kernel_sha256, cpu=_cpu_name(), host_to_launch_us=host,
                    command=os.environ.get("ROPEBOOK_BENCH_COMMAND") or " ".join(
                        [f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith("ROPEBOOK_")]
                        + ["python -m ropebook.bench gpu"]),
                    date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), cases=rows, sam=sam)
        with open(out, "w") as f:
            json.dump(meta, f, indent=1)
        print(f"wrote {out}")
    if os.environ.get("ROPEBOOK_BENCH_SWEEP") in ("1", "only"):
        swept = sweep(tables, device)
        path = os.environ.get("ROPEBOOK_SWEEP_JSON")
        if path:  # rows of the cases not swept this time are kept: the sweep can run one case a call
            done = {r["case"] for r in swept}
            kept = [r for r in json.loads(Path(path).read_text()) if r["case"] not in done] if Path(path).exists() else []
            Path(path).write_text(json.dumps(kept + swept, indent=1))
    return 0


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


def _time_contenders(contenders: dict, inputs: tuple, decode: bool, error) -> dict:
    """Every contender timed in ``ROUNDS`` rounds (its first round also measures its error, ``error(outputs)``,
    its eager time and, for decode, its host time), on fresh copies of ``inputs`` each time: in-place contenders
    rotate them thousands of times, and with bf16 cos/sin each rotation scales the norm by about 1 ± 2^-8. A
    contender that fails is reported, not hidden; one whose result cannot be compared is timed, and its note says
    why. Returns name -> results (``us``: the median of the rounds)."""
    saved = [x.clone() for x in inputs]
    results = {}
    for rnd in range(ROUNDS):  # every contender once per round: slow drifts of the GPU hit all of them alike
        for cname, (fn, note, outputs) in contenders.items():
            if rnd and "rounds_us" not in results[cname]:  # it failed in the first round
                continue
            for x, x0 in zip(inputs, saved):
                x.copy_(x0)
            try:
                if rnd:
                    results[cname]["rounds_us"].append(_time_or_eager(fn, decode=decode)[0] * 1e3)
                    continue
                err = None
                if outputs is not None:
                    try:
                        err = error(outputs)
                    except Exception as e:  # its result not compared, and the row says so; its time still taken
                        note = f"{note}; error not measured: {type(e).__name__}: {str(e)[:120]}"
                for x, x0 in zip(inputs, saved):  # (outputs() may have turned them in place)
                    x.copy_(x0)
                ms, how = _time_or_eager(fn, decode=decode)
                note = note if how == "graph" else f"{note}; timed {how}"
                eager = _eager_ms(fn)
                host = _host_us(fn) if decode else None
                results[cname] = dict(rounds_us=[ms * 1e3], eager_us=eager * 1e3, note=note, max_abs_err=err,
                                      host_us_per_call=host)
            except Exception as e:  # a contender that fails here is reported, not hidden
                results[cname] = dict(us=None, note=f"failed: {type(e).__name__}: {str(e)[:160]}")
    for r in results.values():
        if "rounds_us" in r:
            r["us"] = statistics.median(r["rounds_us"])
    return results


def _print_case(title: str, results: dict, nbytes: int, decode: bool) -> None:
    """The table of one case; adds GB/s and the percentage of the copy's bandwidth to each result."""
    copy_us = results["device copy (same bytes)"]["us"]
    print(f"\n{title}, q+k read+write {nbytes / 1e6:.2f} MB"
          f" ({'CUDA-graph replays, L2-warm' if decode else 'CUDA-graph replays, L2 flushed before each call'})")
    print(f"{'contender':<52} {'time us':>9} {'range':>15} {'GB/s':>7} {'% copy':>7} {'max err':>9} {'eager us':>9}"
          + (f" {'host us':>8}" if decode else ""))
    for cname, r in results.items():
        if r["us"] is None:
            print(f"{cname:<52} {r['note']}")
            continue
        r["GBps"] = nbytes / (r["us"] * 1e-6) / 1e9
        r["pct_of_copy"] = 100.0 * copy_us / r["us"]
        err = "" if r.get("max_abs_err") is None else f"{r['max_abs_err']:.2e}"
        host = "" if r.get("host_us_per_call") is None else f" {r['host_us_per_call']:8.1f}"
        spread = f"{min(r['rounds_us']):.2f}-{max(r['rounds_us']):.2f}"
        print(f"{cname:<52} {r['us']:9.2f} {spread:>15} {r['GBps']:7.0f} {r['pct_of_copy']:6.1f}% {err:>9} {r['eager_us']:9.2f}{host}")


def _dist_version(pkg: str):
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(pkg.replace("_", "-"))
    except PackageNotFoundError:
        return None
