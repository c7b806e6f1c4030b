"""Fused RoPE kernels in Triton (optional: needs ``triton``; CUDA, or the CPU under ``TRITON_INTERPRET=1``).

- ``rope_qk(q, k, cache, ...)``: rotate q and k in one launch, differentiable, in place or not.
- ``rope_qk_cos_sin(q, k, cos, sin, ...)``: the same, with cos/sin the caller formed (Hugging Face's convention).
- ``rope_cache(rotary_dim, ...)``: what the kernel reads about the frequencies, built once.
- ``hf_apply_rotary_pos_emb`` (and ``_interleaved``, ``_pairs``, ``_single``, ``_cohere``, ``_pairs_interleaved``,
  ``_gptj``, ``_nanochat``, ``_deepseek_v4``, ``_dinov3``, ``_clvp``, ``_interleave``, ``_vision``, ``_vision_cohere``; ``hf_apply_rotary_emb``, ``_deepseek_v2`` and
  ``hf_vision_apply_rotary_emb``, Meta's complex form; ``hf_apply_rotary_pos_emb_2d``, SAM 2's, and ``_2d_cross_attn``, EdgeTAM's), ``patch_hf(module)``: the same kernel as
  a drop-in for a Hugging Face model (its text model and its vision tower), the one that computes what the model's
  own function does.
- ``ropebook.kernels.aot`` (imported on its own): compile the launches a call makes for a GPU that is not
  here, and count the machine code.
- ``apply_cos_sin``: the hook behind ``rb.apply_rope(..., backend="triton")``.
- ``torch.ops.ropebook.rope`` (``ropebook.kernels.op``): the kernel as a custom operator, which the functions
  above call while ``torch.compile`` traces them, so a compiled model keeps one graph.

``import ropebook`` never imports this package; ``apply_rope`` imports it lazily.

Chapter: ``ch-rope-gpu``.
"""

from ropebook.kernels.autograd import RopeCache, apply_cos_sin, rope_cache, rope_qk, rope_qk_cos_sin
from ropebook.kernels.hf import (hf_apply_rotary_pos_emb, hf_apply_rotary_pos_emb_interleaved, hf_apply_rotary_pos_emb_pairs,
                                 hf_apply_rotary_pos_emb_single, hf_apply_rotary_pos_emb_cohere,
                                 hf_apply_rotary_pos_emb_pairs_interleaved, hf_apply_rotary_pos_emb_gptj,
                                 hf_apply_rotary_pos_emb_nanochat, hf_apply_rotary_pos_emb_deepseek_v4,
                                 hf_apply_rotary_pos_emb_dinov3, hf_apply_rotary_pos_emb_clvp,
                                 hf_apply_rotary_pos_emb_interleave, hf_apply_rotary_pos_emb_vision,
                                 hf_apply_rotary_pos_emb_vision_cohere, hf_apply_rotary_emb, hf_apply_rotary_emb_deepseek_v2,
                                 hf_vision_apply_rotary_emb, hf_apply_rotary_pos_emb_2d,
                                 hf_apply_rotary_pos_emb_2d_cross_attn, patch_hf)

__all__ = ["RopeCache", "rope_cache", "rope_qk", "rope_qk_cos_sin", "apply_cos_sin", "hf_apply_rotary_pos_emb",
           "hf_apply_rotary_pos_emb_interleaved", "hf_apply_rotary_pos_emb_pairs", "hf_apply_rotary_pos_emb_single",
           "hf_apply_rotary_pos_emb_cohere", "hf_apply_rotary_pos_emb_pairs_interleaved", "hf_apply_rotary_pos_emb_gptj",
           "hf_apply_rotary_pos_emb_nanochat", "hf_apply_rotary_pos_emb_deepseek_v4",
           "hf_apply_rotary_pos_emb_dinov3", "hf_apply_rotary_pos_emb_clvp", "hf_apply_rotary_pos_emb_interleave", "hf_apply_rotary_pos_emb_vision",
           "hf_apply_rotary_pos_emb_vision_cohere", "hf_apply_rotary_emb", "hf_apply_rotary_emb_deepseek_v2",
           "hf_vision_apply_rotary_emb", "hf_apply_rotary_pos_emb_2d",
           "hf_apply_rotary_pos_emb_2d_cross_attn", "patch_hf"]
