"""The contenders of a case: the inputs, every row of the table (eager Hugging Face, torch.compile, Liger-Kernel,
flash-attn, ropebook's launches and drop-ins, a device copy), and the error of a row against float64 RoPE.
Any device: the tests run every row on the CPU, the kernel under the Triton interpreter."""

from __future__ import annotations

import importlib.util
import os

import torch

import ropebook as rb

from . import _config
from ._config import HK, HQ, D


def _inputs(B, T, seed=0, device="cuda"):
    g = torch.Generator(device=device).manual_seed(seed)
    q_mem = torch.randn(B, T, HQ, D, device=device, dtype=torch.bfloat16, generator=g)  # (B, T, Hq, D)
    k_mem = torch.randn(B, T, HK, D, device=device, dtype=torch.bfloat16, generator=g)
    if T == 1:
        offsets = torch.randint(0, _config.MAX_OFFSET, (B,), device=device, generator=g, dtype=torch.int32)  # (B,)
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


def _error(outputs, q_mem, k_mem, offsets, T) -> float:
    """Max |result − float64 RoPE of the same bf16 inputs| over q and k (the references taken first: an in-place
    contender's ``outputs()`` turns the inputs)."""
    offs = offsets.view(-1, 1, 1).long() if T == 1 else 0
    refs = [rb.apply_rope(x.transpose(1, 2).double(), offset=offs, backend="torch") for x in (q_mem, k_mem)]
    return max((y.double() - ref).abs().max().item() for y, ref in zip(outputs(), refs))
