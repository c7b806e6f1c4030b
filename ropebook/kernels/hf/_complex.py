"""Drop-ins for Meta's complex form, ``apply_rotary_emb(xq, xk, freqs_cis)`` (Llama 4's, DeepSeek-V2's) and Llama 4's
vision tower's ``vision_apply_rotary_emb(query, key, freqs_ci)``."""

from __future__ import annotations

from ropebook.kernels.hf._factory import _drop_in

hf_apply_rotary_emb = _drop_in("llama4", "hf_apply_rotary_emb", """
    Llama 4's ``apply_rotary_emb(xq, xk, freqs_cis)``, in one kernel launch: Meta's complex form of RoPE, each pair
    of features ``(2i, 2i + 1)`` read as the complex number ``x_2i + i x_2i+1`` and multiplied by ``freqs_cis``, the
    rotation ``e^(i m θ_i)`` (times the rotary module's attention scaling, which the product carries along).

    Args:
        xq, xk: ``(B, T, Hq, D)`` and ``(B, T, Hk, D)``, as Llama 4's attention hands them over (before its
            transpose); the features contiguous.
        freqs_cis: complex, ``(B or 1, T, D/2)``, as Llama 4's rotary module returns it. The kernel reads its real
            and imaginary parts where they lie (``torch.view_as_real``: no copy), as cos and sin one value a pair.

    Returns: ``(xq_out, xk_out)``, new tensors of xq's and xk's shapes and dtype; differentiable in xq and xk. For xq
    in float32, float16 or bfloat16 and freqs_cis in complex64, as the models run, theirs multiplies in float32 and
    rounds once to xq's dtype, as the kernel does; the products are summed in another order, so the two differ by a
    rounding of float32 at most. (A float64 xq they round to float32 first, and a complex128 freqs_cis they multiply
    in float64; the kernel rotates float64 in float64.) A conjugated freqs_cis (``freqs_cis.conj()``, a lazy view) is
    resolved first.

    >>> import os, ropebook as rb
    >>> from unittest import mock
    >>> xq, xk = torch.randn(1, 3, 4, 8), torch.randn(1, 3, 1, 8)   # (B, T, H, D)
    >>> c, s = rb.rope_cos_sin(torch.arange(3), 8)                   # (T, D/2)
    >>> freqs_cis = torch.complex(c, s)[None]                        # e^(i m θ): (1, T, D/2)
    >>> with mock.patch.dict(os.environ, TRITON_INTERPRET="1"):
    ...     yq, yk = hf_apply_rotary_emb(xq, xk, freqs_cis)
    >>> torch.allclose(yq, rb.apply_rope(xq.transpose(1, 2), layout="interleaved").transpose(1, 2), atol=1e-6)
    True
    """)


hf_apply_rotary_emb_deepseek_v2 = _drop_in("deepseek_v2", "hf_apply_rotary_emb_deepseek_v2", """
    DeepSeek-V2's ``apply_rotary_emb(xq, xk, freqs_cis)``, in one kernel launch: Meta's complex form as Llama 4's
    (:func:`hf_apply_rotary_emb`), with xq and xk ``(B, Hq, T, D)`` and ``(B, Hk, T, D)`` (its attention's rotary
    parts of q and of the one latent key head, ``q_pe`` and ``k_pe``: views, read where they lie) and freqs_cis
    ``(B or 1, T, D/2)``.

    >>> import os, ropebook as rb
    >>> from unittest import mock
    >>> xq, xk = torch.randn(1, 4, 3, 8), torch.randn(1, 1, 3, 8)   # (B, H, T, D)
    >>> c, s = rb.rope_cos_sin(torch.arange(3), 8)
    >>> with mock.patch.dict(os.environ, TRITON_INTERPRET="1"):
    ...     yq, yk = hf_apply_rotary_emb_deepseek_v2(xq, xk, torch.complex(c, s)[None])
    >>> torch.allclose(yq, rb.apply_rope(xq, layout="interleaved"), atol=1e-6)
    True
    """)


hf_vision_apply_rotary_emb = _drop_in("llama4_vision", "hf_vision_apply_rotary_emb", """
    Llama 4's vision tower's ``vision_apply_rotary_emb(query, key, freqs_ci)``, in one kernel launch: Meta's complex
    form (:func:`hf_apply_rotary_emb`) of the patches, query and key ``(B, T, H, D)``, with ``freqs_ci`` one table
    for the batch: T·D/2 complex values, which its function views as ``(1, T, 1, D/2)`` (the tower's
    ``(T, 1, D/2)``, each patch's angles from its row and column; the class token's angles zero, so it turns it by
    nothing).

    >>> import os, ropebook as rb
    >>> from unittest import mock
    >>> q, k = torch.randn(2, 5, 2, 8), torch.randn(2, 5, 2, 8)     # (B, T, H, D): 5 patches
    >>> c, s = rb.rope_cos_sin(torch.arange(5), 8)
    >>> with mock.patch.dict(os.environ, TRITON_INTERPRET="1"):
    ...     yq, yk = hf_vision_apply_rotary_emb(q, k, freqs_ci=torch.complex(c, s)[:, None])   # (T, 1, D/2)
    >>> torch.allclose(yk, rb.apply_rope(k.transpose(1, 2), layout="interleaved").transpose(1, 2), atol=1e-6)
    True
    """)

# the form each drop-in here computes (_factory's names) -> the drop-in; patch_hf installs from these
DROP_INS = {
    "llama4": hf_apply_rotary_emb, "deepseek_v2": hf_apply_rotary_emb_deepseek_v2,
    "llama4_vision": hf_vision_apply_rotary_emb}
