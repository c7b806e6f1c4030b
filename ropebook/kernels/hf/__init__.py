"""The fused kernel inside a Hugging Face model: drop-ins for ``apply_rotary_pos_emb``.

Hugging Face's modelling files each define a module-level function
``apply_rotary_pos_emb(q, k, cos, sin, unsqueeze_dim=1)`` that their attention
layers call by name. Not every file means the same rotation by it. Eleven forms
occur, and each has a drop-in here that rotates q and k in one kernel launch
(``rope_qk_cos_sin``; CLVP's v in a second):

- :func:`hf_apply_rotary_pos_emb`: Llama's. Pairs are features ``(i, i + r/2)``; cos and sin are
  ``(…, T, r)`` with each value twice (``cat((freqs, freqs), -1)``). ``r < D`` rotates the first r
  features and passes the rest through, as GPT-NeoX, Phi-3 and GLM-4-MoE do.
- :func:`hf_apply_rotary_pos_emb_interleaved`: GLM's, ERNIE 4.5's, Helium's, Moonshine's. Pairs are features
  ``(2i, 2i + 1)``, and the angle of pair i is read from the *first half* of cos and sin
  (``cos[..., :r/2].repeat_interleave(2)``); the second half is not read.
- :func:`hf_apply_rotary_pos_emb_pairs`: gpt-oss's. Pairs ``(i, i + D/2)``, cos and sin ``(…, T, D/2)``, one
  value a pair.
- :func:`hf_apply_rotary_pos_emb_single`: Gemma 3n's and Gemma 4's, ``(x, cos, sin, unsqueeze_dim)``: Llama's
  rotation of one tensor a call.
- :func:`hf_apply_rotary_pos_emb_cohere`: Cohere's (Command R, Command A), GLM-4V's, GLM-OCR's, ERNIE 4.5-VL's,
  BLT's, LightGlue's, EfficientLoFTR's. Pairs ``(2i, 2i + 1)`` as GLM's, but cos and sin hold each value twice *in a row*
  (``repeat_interleave(freqs, 2, -1)``), read at every feature; the kernel reads every other one.
- :func:`hf_apply_rotary_pos_emb_pairs_interleaved`: the OpenAI privacy filter's. Pairs ``(2i, 2i + 1)``, cos and sin
  ``(…, T, D/2)``, one value a pair.
- :func:`hf_apply_rotary_pos_emb_gptj`: GPT-J's and CodeGen's, ``(tensor, sin, cos)``: one tensor ``(B, T, H, D)``
  a call, sin before cos, pairs ``(2i, 2i + 1)``, one value a pair.
- :func:`hf_apply_rotary_pos_emb_nanochat`: nanochat's. Llama's pairs and cos, but its ``rotate_half`` has the
  opposite sign: a rotation by −θ.
- :func:`hf_apply_rotary_pos_emb_deepseek_v4`: DeepSeek-V4's, ``(x, cos, sin, unsqueeze_dim)``: one tensor a call,
  the *last* r features rotated (the first D − r pass through), pairs ``(2i, 2i + 1)``, cos ``(…, T, r/2)`` one
  value a pair.
- :func:`hf_apply_rotary_pos_emb_dinov3`: DINOv3's, EoMT-DINOv3's, Sapiens2's. Llama's rotation of the *last* P tokens
  (an image's patches; the class token and registers before them pass through), cos and sin ``(P, D)``, one table
  for the batch.
- :func:`hf_apply_rotary_pos_emb_clvp`: CLVP's, ``(q, k, v, cos, sin, position_ids)``: Llama's rotation of q, k *and*
  v, cos and sin a table ``(S, D)`` read at ``position_ids`` ``(B or 1, T)``.

DeepSeek-V3 and the models built like it (Kimi K2, GLM-4.7-Flash, GLM-5, LongCat-Flash, Mistral Large 3, …) call
another function as well, ``apply_rotary_pos_emb_interleave(q, k, cos, sin, position_ids=None, unsqueeze_dim=1)``
(with ``rope_interleave=True``, their default): pairs ``(2i, 2i + 1)`` rotated by cos's first half, as GLM's, and
written out as ``(i, i + r/2)``, Llama's layout. :func:`hf_apply_rotary_pos_emb_interleave` is its drop-in: the
kernel reads one layout and writes the other in the same pass.

The vision towers of the Qwen-VL family and of others built on them (GLM-4V, ERNIE 4.5-VL, Kimi K2.5, …) call a
third, ``apply_rotary_pos_emb_vision(q, k, cos, sin)``, on the patches of every image packed into one sequence:
q and k ``(T, H, D)``, cos and sin ``(T, r)`` (each patch's angles from its row and column). It computes Llama's
rotation there; Inkling 2's, Cohere's. :func:`hf_apply_rotary_pos_emb_vision` and
:func:`hf_apply_rotary_pos_emb_vision_cohere` are their drop-ins.

Llama 4 and DeepSeek-V2 call neither: their ``apply_rotary_emb(xq, xk, freqs_cis)`` is Meta's complex form,
each pair ``(2i, 2i + 1)`` read as a complex number and multiplied by ``freqs_cis``, complex ``(B or 1, T, D/2)``:
xq ``(B, T, H, D)`` in Llama 4's, ``(B, H, T, D)`` in DeepSeek-V2's. :func:`hf_apply_rotary_emb` and
:func:`hf_apply_rotary_emb_deepseek_v2` are their drop-ins, and :func:`hf_vision_apply_rotary_emb` that of Llama 4's
vision tower's ``vision_apply_rotary_emb(query, key, freqs_ci)``; the kernel reads freqs_cis's real and imaginary
parts where they lie, as cos and sin.

SAM 2's video memory attention (and SAM 3's tracker's) calls ``apply_rotary_pos_emb_2d(q, k, cos, sin,
num_k_exclude_rope=0, repeat_freqs_k=False)``: Cohere's rotation of an image's Tq patches by SAM's axial table
``(1, Tq, D)``, and of the keys, which in cross-attention are the memory of several frames (the table tiled)
and then object pointers (the last ``num_k_exclude_rope``, passed through). SAM 3's ViT and EdgeTAM's memory
self-attention call a shorter copy, ``(q, k, cos, sin)`` (EdgeTAM's named ``apply_rotary_pos_emb_2d_self_attn``).
:func:`hf_apply_rotary_pos_emb_2d` is their drop-in, a launch a tile of keys. EdgeTAM's cross-attention calls
``apply_rotary_pos_emb_2d_cross_attn(q, k, cos, sin, cos_k, sin_k, num_k_exclude_rope, repeat_freqs_k)``, each
frame of memory global latents (passed through) and spatial tokens turned by the keys' own table;
:func:`hf_apply_rotary_pos_emb_2d_cross_attn` is its drop-in.

:func:`patch_hf` puts the right one in a modelling module's place for the length of a ``with``
block, after checking on a small probe which formula the module's own function computes, and
``apply_rotary_pos_emb_interleave``, ``apply_rotary_pos_emb_vision``, ``apply_rotary_emb``,
``vision_apply_rotary_emb``, ``apply_rotary_pos_emb_2d``, ``apply_rotary_pos_emb_2d_self_attn`` and
``apply_rotary_pos_emb_2d_cross_attn`` too where the module defines them. It
refuses a module whose function is none of them instead of changing the model's outputs (an
``apply_rotary_emb`` or ``vision_apply_rotary_emb`` that does not even take Meta's call, such as flash-attn's
imported under that name, is left as it is where the module has another function to patch). It replaces those
eight functions only: a model that calls another runs unpatched there::

    import transformers.models.llama.modeling_llama as llama
    with ropebook.kernels.patch_hf(llama):
        logits = model(input_ids).logits

Nothing here imports ``transformers``: the caller hands over the module.

The package, a module an idea: ``_checks`` (the arguments, checked in the caller's terms), ``_factory`` (the
forms as tables, and the factory that builds each drop-in: checks, then the launch), ``_pos_emb``,
``_complex`` and ``_images`` (the drop-ins, with their documentation), ``_probing`` (which form a function
computes) and ``_patch`` (:func:`patch_hf`).

Chapter: ``ch-rope-gpu``.
"""

import torch  # (the drop-ins' examples run here: their __module__ is this package's)

from ropebook.kernels.hf._complex import hf_apply_rotary_emb, hf_apply_rotary_emb_deepseek_v2, hf_vision_apply_rotary_emb
from ropebook.kernels.hf._images import (hf_apply_rotary_pos_emb_2d, hf_apply_rotary_pos_emb_2d_cross_attn,
                                         hf_apply_rotary_pos_emb_vision, hf_apply_rotary_pos_emb_vision_cohere)
from ropebook.kernels.hf._patch import patch_hf
from ropebook.kernels.hf._pos_emb import (hf_apply_rotary_pos_emb, hf_apply_rotary_pos_emb_clvp,
                                          hf_apply_rotary_pos_emb_cohere, hf_apply_rotary_pos_emb_deepseek_v4,
                                          hf_apply_rotary_pos_emb_dinov3, hf_apply_rotary_pos_emb_gptj,
                                          hf_apply_rotary_pos_emb_interleave, hf_apply_rotary_pos_emb_interleaved,
                                          hf_apply_rotary_pos_emb_nanochat, hf_apply_rotary_pos_emb_pairs,
                                          hf_apply_rotary_pos_emb_pairs_interleaved, hf_apply_rotary_pos_emb_single)
# what the chapter's census reads (ch-rope-gpu): the functions patch_hf replaces and their forms, and the probe
from ropebook.kernels.hf._probing import _CALLS, _FUNCTIONS, _PROBE_Q, _PROBE_TOL, _formula, _probe

__all__ = ["hf_apply_rotary_pos_emb", "hf_apply_rotary_pos_emb_interleaved", "hf_apply_rotary_pos_emb_pairs",
           "hf_apply_rotary_pos_emb_single", "hf_apply_rotary_pos_emb_cohere", "hf_apply_rotary_pos_emb_interleave",
           "hf_apply_rotary_pos_emb_pairs_interleaved", "hf_apply_rotary_pos_emb_gptj", "hf_apply_rotary_pos_emb_nanochat",
           "hf_apply_rotary_pos_emb_deepseek_v4", "hf_apply_rotary_pos_emb_dinov3", "hf_apply_rotary_pos_emb_clvp",
           "hf_apply_rotary_pos_emb_vision", "hf_apply_rotary_emb", "hf_apply_rotary_emb_deepseek_v2",
           "hf_vision_apply_rotary_emb", "hf_apply_rotary_pos_emb_2d", "hf_apply_rotary_pos_emb_2d_cross_attn",
           "hf_apply_rotary_pos_emb_vision_cohere", "patch_hf"]
