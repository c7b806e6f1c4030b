"""The fused kernel inside a Hugging Face model: a drop-in ``apply_rotary_pos_emb``.

Hugging Face's modelling files each define a module-level function
``apply_rotary_pos_emb(q, k, cos, sin, unsqueeze_dim=1)`` that their attention
layers call by name. :func:`hf_apply_rotary_pos_emb` has that signature and
rotates q and k in one kernel launch (``rope_qk_cos_sin``); :func:`patch_hf`
puts it in a modelling module's place for the length of a ``with`` block::

    import transformers.models.llama.modeling_llama as llama
    with ropebook.kernels.patch_hf(llama):
        logits = model(input_ids).logits

Nothing here imports ``transformers``: the caller hands over the module.

Chapter: ``ch-rope-gpu``.
"""

from __future__ import annotations

import contextlib
import numbers
import weakref

import torch
from torch import Tensor

from ropebook.kernels.autograd import _rope_qk_cos_sin

__all__ = ["hf_apply_rotary_pos_emb", "patch_hf"]

_checked: list = [None, None, -1, -1]  # weak references to the last cos and sin whose halves were compared, their versions


def _check_halves(cos: Tensor, sin: Tensor) -> None:
    """Hugging Face's rotary modules build ``cat((freqs, freqs), -1)``: each value twice. The kernel
    reads the first half only, so a cos or sin whose halves differ would give a silently wrong result:
    compare them. One model forward pass hands the same cos and sin to every layer, so the comparison
    (a device sync on CUDA) runs once per pass, not once per layer; it is skipped while a CUDA graph is
    being captured, where a sync is not allowed (the eager warm-up before capture has compared them)."""
    c_ref, s_ref, c_ver, s_ver = _checked
    if c_ref is not None and c_ref() is cos and s_ref() is sin and c_ver == _version(cos) and s_ver == _version(sin):
        return
    if cos.is_cuda and torch.cuda.is_current_stream_capturing():
        return
    h = cos.shape[-1] // 2
    for name, x in (("cos", cos), ("sin", sin)):
        if not torch.equal(x[..., :h], x[..., h:]):
            if not torch.isfinite(x).all():  # (NaN never equals itself: "halves differ" would mislead)
                bad = torch.nonzero(~torch.isfinite(x))[0].tolist()
                raise ValueError(f"hf_apply_rotary_pos_emb: {name} must be finite (the cos or sin of an angle), got "
                                 f"{name}[{', '.join(map(str, bad))}] = {x[tuple(bad)].item()}")
            raise ValueError(
                f"hf_apply_rotary_pos_emb: {name} must hold each value twice, {name}[..., :{h}] == {name}[..., {h}:], "
                f"as Hugging Face's rotary modules build it (cat((freqs, freqs), -1)); its halves differ, "
                f"largest difference {(x[..., :h] - x[..., h:]).abs().max().item():.3g}")
    _checked[:] = [weakref.ref(cos), weakref.ref(sin), _version(cos), _version(sin)]


def _assert_halves(cos: Tensor, sin: Tensor) -> None:
    """``_check_halves`` for a graph that ``torch.compile`` traces, where Python cannot read a comparison's
    result: an assertion node (``torch._assert_async``) that fails when the compiled code runs, without
    a device sync on CUDA (a device-side assert there: the error surfaces at the next synchronization)."""
    h = cos.shape[-1] // 2
    for x in (cos, sin):
        torch._assert_async((x[..., :h] == x[..., h:]).all(),
                            "hf_apply_rotary_pos_emb: cos and sin must hold each value twice, x[..., :D/2] == "
                            "x[..., D/2:], as Hugging Face's rotary modules build them (cat((freqs, freqs), -1))")


def _version(x: Tensor):
    """The tensor's in-place version counter; None for an inference tensor (torch.inference_mode), which
    has none: the same inference tensor is then compared once, even if changed in place (no Hugging Face
    model changes its cos or sin in place)."""
    return None if x.is_inference() else x._version


def hf_apply_rotary_pos_emb(q: Tensor, k: Tensor, cos: Tensor, sin: Tensor, unsqueeze_dim: int = 1) -> tuple[Tensor, Tensor]:
    """Hugging Face's ``apply_rotary_pos_emb`` (half layout), in one kernel launch.

    Args:
        q, k: ``(B, Hq, T, D)`` and ``(B, Hk, T, D)`` (``unsqueeze_dim=1``, Hugging Face's default) or
            ``(B, T, H, D)`` (``unsqueeze_dim=2``); the features contiguous.
        cos, sin: ``(B, T, D)`` or ``(T, D)`` as a Hugging Face rotary module returns them, each value twice
            (checked). For partial rotary, where a model rotates ``q[..., :r]``, they are ``(…, T, r)``
            and q, k the slices.

    Returns: ``(q_embed, k_embed)``, new tensors in q's layout; differentiable in q and k.

    Unlike Hugging Face's formula, which multiplies in the input dtype (bf16 for a bf16 model), the
    kernel rotates in float32 and rounds once to the output dtype.

    >>> import os, ropebook as rb
    >>> from unittest import mock
    >>> q, k = torch.randn(1, 4, 3, 8), torch.randn(1, 2, 3, 8)     # (B, H, T, D)
    >>> c, s = rb.rope_cos_sin(torch.arange(3), 8)                   # (T, D/2)
    >>> cos, sin = torch.cat((c, c), -1), torch.cat((s, s), -1)      # Hugging Face's (T, D)
    >>> with mock.patch.dict(os.environ, TRITON_INTERPRET="1"):      # CPU tensors: Triton's interpreter
    ...     qr, kr = hf_apply_rotary_pos_emb(q, k, cos, sin)
    >>> torch.allclose(qr, rb.apply_rope(q), atol=1e-6) and torch.allclose(kr, rb.apply_rope(k), atol=1e-6)
    True
    """
    fn = "hf_apply_rotary_pos_emb"
    if isinstance(unsqueeze_dim, bool) or not isinstance(unsqueeze_dim, numbers.Integral) or unsqueeze_dim not in (1, 2):
        raise ValueError(f"{fn}: unsqueeze_dim must be 1 (q is (B, H, T, D)) or 2 (q is (B, T, H, D)), "
                         f"got unsqueeze_dim={unsqueeze_dim!r}")
    for name, x in (("q", q), ("k", k), ("cos", cos), ("sin", sin)):
        if not isinstance(x, Tensor):
            raise ValueError(f"{fn}: {name} must be a tensor, got type({name})={type(x).__name__}")
    if q.ndim != 4 or k.ndim != 4:
        raise ValueError(f"{fn}: q and k must be 4-d, got q.shape={tuple(q.shape)}, k.shape={tuple(k.shape)}")
    if unsqueeze_dim == 2:  # (B, T, H, D) -> the (B, H, T, D) view the kernel takes
        q, k = q.transpose(1, 2), k.transpose(1, 2)
    T, D = q.shape[2], q.shape[3]
    for name, x in (("cos", cos), ("sin", sin)):
        if not x.is_floating_point():
            raise ValueError(f"{fn}: {name} must be a floating-point tensor, as a Hugging Face rotary module returns "
                             f"it, got {name}.dtype={x.dtype}")
    if (cos.shape != sin.shape or cos.ndim not in (2, 3) or cos.shape[-2] != T or cos.shape[-1] != D or D % 2
            or (cos.ndim == 3 and cos.shape[0] not in (1, q.shape[0]))):
        raise ValueError(f"{fn}: cos and sin must both have shape ({T}, {D}) or (B or 1, {T}, {D}) for q of "
                         f"(B, H, T, D) = {tuple(q.shape)} (an even D), got cos.shape={tuple(cos.shape)}, "
                         f"sin.shape={tuple(sin.shape)}")
    if torch.compiler.is_compiling():  # a graph cannot branch on data: the check becomes an assertion in it
        _assert_halves(cos, sin)
    elif not cos.is_meta:  # (meta tensors, as in a model built on torch.device("meta"), hold no values to compare)
        _check_halves(cos, sin)  # on the very tensors the model hands every layer (what its cache keys on)
    # the kernel reads the first half of each row (D/2 pairs) straight from Hugging Face's tensors: a
    # slice would be one more tensor object for Python to build on every call (ch-rope-gpu)
    qr, kr = _rope_qk_cos_sin(fn, q, k, cos, sin, "half", False, pairs=D // 2)
    if unsqueeze_dim == 2:
        qr, kr = qr.transpose(1, 2), kr.transpose(1, 2)
    return qr, kr


@contextlib.contextmanager
def patch_hf(module):
    """Within the block, ``module.apply_rotary_pos_emb`` is :func:`hf_apply_rotary_pos_emb`; restored after.

    ``module`` is a Hugging Face modelling module whose attention calls ``apply_rotary_pos_emb`` by
    name with the half-layout formula, such as ``transformers.models.llama.modeling_llama``.
    """
    original = getattr(module, "apply_rotary_pos_emb", None)
    if not callable(original):
        raise ValueError(f"patch_hf: module must define apply_rotary_pos_emb (a Hugging Face modelling module), "
                         f"got {getattr(module, '__name__', module)!r} without one")
    module.apply_rotary_pos_emb = hf_apply_rotary_pos_emb
    try:
        yield module
    finally:
        module.apply_rotary_pos_emb = original
