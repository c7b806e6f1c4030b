"""``patch_hf``: a modelling module's rotary functions replaced, within a block, by the drop-ins that compute
what they do."""

from __future__ import annotations

import contextlib

from ropebook.kernels.hf import _complex, _images, _pos_emb
from ropebook.kernels.hf._factory import _OTHERS
from ropebook.kernels.hf._probing import _FUNCTIONS, _PROBE_Q, _formula, _takes_none

_DROP_INS = {**_pos_emb.DROP_INS, **_complex.DROP_INS, **_images.DROP_INS}  # form -> its drop-in


@contextlib.contextmanager
def patch_hf(module):
    """Within the block, ``module.apply_rotary_pos_emb`` is the drop-in that computes what it does; restored after.

    ``module`` is a Hugging Face modelling module whose attention calls ``apply_rotary_pos_emb(q, k, cos, sin)``
    (or ``(x, cos, sin)``) by name, such as ``transformers.models.llama.modeling_llama``. Its function is first run on a small
    probe (once per function; a few milliseconds on a CPU) and compared with the eleven forms the drop-ins
    compute (:func:`hf_apply_rotary_pos_emb`, ``_interleaved``, ``_pairs``, ``_single``, ``_cohere``,
    ``_pairs_interleaved``, ``_gptj``, ``_nanochat``, ``_deepseek_v4``, ``_dinov3``, ``_clvp``). Where the module
    also defines ``apply_rotary_pos_emb_interleave`` (DeepSeek-V3's), that is probed against
    :func:`hf_apply_rotary_pos_emb_interleave` and replaced by it too, and so is a vision tower's
    ``apply_rotary_pos_emb_vision``, against :func:`hf_apply_rotary_pos_emb_vision` and ``_vision_cohere``; and Meta's
    complex form, Llama 4's and DeepSeek-V2's ``apply_rotary_emb``, against :func:`hf_apply_rotary_emb` and
    ``_deepseek_v2``, and Llama 4's vision tower's ``vision_apply_rotary_emb``, against
    :func:`hf_vision_apply_rotary_emb`; and SAM's ``apply_rotary_pos_emb_2d`` and EdgeTAM's
    ``apply_rotary_pos_emb_2d_self_attn``, against :func:`hf_apply_rotary_pos_emb_2d`, and EdgeTAM's
    ``apply_rotary_pos_emb_2d_cross_attn``, against :func:`hf_apply_rotary_pos_emb_2d_cross_attn`. A function
    that is none of its forms raises a ValueError that says what the probe found, and nothing is patched; except
    an ``apply_rotary_emb`` or ``vision_apply_rotary_emb`` that raises on every probe of Meta's call (another
    library's function under that name, such as flash-attn's ``apply_rotary_emb(x, cos, sin)``), which is left as
    it is where the module has another function to patch.
    """
    name = getattr(module, "__name__", module)
    if not any(callable(getattr(module, attr, None)) for attr in _FUNCTIONS):
        *others, last = _FUNCTIONS
        raise ValueError(f"patch_hf: module must define {', '.join(others)} or {last} (a Hugging Face modelling "
                         f"module), got {name!r} without any")
    patches = {}  # attribute -> (the module's function, its drop-in)
    unmatched = {}  # a name that may be another library's function (_OTHERS') -> what the probe found
    for attr, forms in _FUNCTIONS.items():
        original = getattr(module, attr, None)
        if not callable(original):  # (one of them at least, checked above: BailingMoeV2.5 defines the second alone)
            continue
        if original in _DROP_INS.values():  # patched already (a nested block): keep it
            patches[attr] = (original, original)
            continue
        form, report = _formula(original, forms)
        if form is None and attr in _OTHERS and _takes_none(original, forms):  # left as it is, unless nothing else is (below)
            unmatched[attr] = report
            continue
        if form is None:
            raise ValueError(f"patch_hf: {name}.{attr} computes none of the rotations the kernel's drop-ins do, so "
                             f"patching it would change the model's outputs. On a probe (q {_PROBE_Q}, float32): {report}")
        patches[attr] = (original, _DROP_INS[form])
    if not patches:  # (unmatched holds one at least: some function was found above)
        attr, report = next(iter(unmatched.items()))
        raise ValueError(f"patch_hf: {name}.{attr} computes none of the rotations the kernel's drop-ins do, so "
                         f"patching it would change the model's outputs, and {name} defines no other function to "
                         f"patch. On a probe (q {_PROBE_Q}, float32): {report}")
    for attr, (_, drop_in) in patches.items():
        setattr(module, attr, drop_in)
    try:
        yield module
    finally:
        for attr, (original, _) in patches.items():
            setattr(module, attr, original)
