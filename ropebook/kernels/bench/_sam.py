"""SAM 2's memory cross-attention at SAM 2's sizes: its inputs and axial table, its rows (their function, the
drop-in, one launch for every frame's keys with a tiled table), the case, and a row's error."""

from __future__ import annotations

import torch

import ropebook as rb

from . import _config, _timing
from ._config import SAM_D, SAM_FRAMES, SAM_POINTERS, SAM_SIDE


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
    side, D, frames, pointers = _config.SAM_SIDE, _config.SAM_D, _config.SAM_FRAMES, _config.SAM_POINTERS
    T = side * side
    case = dict(case="SAM 2 memory cross-attention", T=T, D=D, frames=frames, pointers=pointers,
                dtype="bfloat16", rounds=_config.ROUNDS,
                timing=(f"median over {_config.ROUNDS} rounds (rounds_us) of the median GPU time per call from CUDA-graph "
                        "replays of 20 calls, L2 flushed before each call (flush time subtracted); eager_us: "
                        "triton.testing.do_bench median, Python launch included"))
    try:
        q, k, cos, sin = sam_inputs(device, side, D, frames, pointers)
        case["bytes"] = nbytes = 2 * (q.numel() + k.numel()) * q.element_size()
        case["results"] = results = _timing._time_contenders(_sam_forms(q, k, cos, sin, pointers), (q, k), False,
                                                             lambda outputs: _sam_error(outputs, q, k, cos, sin, pointers))
        _timing._print_case(f"SAM 2 memory cross-attention: q (1, 1, {T}, {D}), k {frames} frames of {T} and "
                            f"{pointers} pointer tokens, bf16", results, nbytes, False)
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
