"""Drop-ins for the functions named ``apply_rotary_pos_emb`` (eleven forms: Llama's and the ten that differ from
it), and for DeepSeek-V3's ``apply_rotary_pos_emb_interleave``."""

from __future__ import annotations

from ropebook.kernels.hf._factory import _drop_in

hf_apply_rotary_pos_emb = _drop_in("half", "hf_apply_rotary_pos_emb", """
    Hugging Face's ``apply_rotary_pos_emb`` of Llama (half layout), in one kernel launch.

    Args:
        q, k: ``(B, Hq, T, D)`` and ``(B, Hk, T, D)`` (``unsqueeze_dim=1``, Hugging Face's default) or
            ``(B, T, H, D)`` (``unsqueeze_dim=2``); the features contiguous.
        cos, sin: ``(B, T, r)`` or ``(T, r)`` as a Hugging Face rotary module returns them, each value twice
            (checked), r even. ``r = D`` for most models; with ``r < D`` the first r features are rotated
            and the rest pass through, as in the partial-rotary models (GPT-NeoX, Phi-3), whose function
            reads r from ``cos.shape[-1]``.
        unsqueeze_dim: 1 or 2 as above; 0 with a 2-d cos (one table for the batch, as Pixtral passes it) reads
            as 1. With k omitted (``hf_apply_rotary_pos_emb(q, cos=cos, sin=sin)``, as Qwen4's indexer calls
            its function) only q is rotated and returned.

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
    """)

hf_apply_rotary_pos_emb_interleaved = _drop_in("interleaved", "hf_apply_rotary_pos_emb_interleaved", """
    The ``apply_rotary_pos_emb`` of GLM, GLM-4, ERNIE 4.5, Helium and Moonshine, in one kernel launch. (Not GLM-4V's,
    GLM-OCR's or ERNIE 4.5-VL's: those pair features the same way but take cos in Cohere's form,
    :func:`hf_apply_rotary_pos_emb_cohere`.)

    Their rotary modules build cos and sin as Llama's does, ``(…, T, r)`` with each value twice, but
    their function pairs features ``(2i, 2i + 1)`` and takes the angle of pair i from the first half:
    ``cos[..., :r/2].repeat_interleave(2, -1)``. The drop-in reads that first half and nothing else, as
    they do (so the halves are not compared). Arguments and result as :func:`hf_apply_rotary_pos_emb`;
    ``r < D`` rotates the first r features (GLM's partial rotary).

    >>> import os, ropebook as rb
    >>> from unittest import mock
    >>> q, k = torch.randn(1, 4, 3, 8), torch.randn(1, 2, 3, 8)
    >>> c, s = rb.rope_cos_sin(torch.arange(3), 8)
    >>> cos, sin = torch.cat((c, c), -1), torch.cat((s, s), -1)
    >>> with mock.patch.dict(os.environ, TRITON_INTERPRET="1"):
    ...     qr, kr = hf_apply_rotary_pos_emb_interleaved(q, k, cos, sin)
    >>> torch.allclose(qr, rb.apply_rope(q, layout="interleaved"), atol=1e-6)
    True
    """)

hf_apply_rotary_pos_emb_pairs = _drop_in("pairs", "hf_apply_rotary_pos_emb_pairs", """
    gpt-oss's ``apply_rotary_pos_emb``, in one kernel launch: pairs ``(i, i + D/2)`` as Llama's, but cos and
    sin ``(…, T, D/2)``, one value a pair (its rotary module does not duplicate them). Arguments and result
    otherwise as :func:`hf_apply_rotary_pos_emb`.

    >>> import os, ropebook as rb
    >>> from unittest import mock
    >>> q, k = torch.randn(1, 4, 3, 8), torch.randn(1, 2, 3, 8)
    >>> cos, sin = rb.rope_cos_sin(torch.arange(3), 8)              # (T, D/2)
    >>> with mock.patch.dict(os.environ, TRITON_INTERPRET="1"):
    ...     qr, kr = hf_apply_rotary_pos_emb_pairs(q, k, cos, sin)
    >>> torch.allclose(qr, rb.apply_rope(q), atol=1e-6)
    True
    """)


hf_apply_rotary_pos_emb_single = _drop_in("single", "hf_apply_rotary_pos_emb_single", """
    The ``apply_rotary_pos_emb(x, cos, sin, unsqueeze_dim=1)`` of Gemma 3n and Gemma 4, in one kernel launch: Llama's
    rotation of one tensor at a time (their attention rotates q and k in separate calls, each after its own
    norm). Arguments as :func:`hf_apply_rotary_pos_emb` with ``x`` for q and no k; returns the rotated x.

    >>> import os, ropebook as rb
    >>> from unittest import mock
    >>> x = torch.randn(1, 3, 4, 8)                                  # (B, T, H, D), as Gemma passes it
    >>> c, s = rb.rope_cos_sin(torch.arange(3), 8)
    >>> cos, sin = torch.cat((c, c), -1)[None], torch.cat((s, s), -1)[None]   # (1, T, D)
    >>> with mock.patch.dict(os.environ, TRITON_INTERPRET="1"):
    ...     xr = hf_apply_rotary_pos_emb_single(x, cos, sin, unsqueeze_dim=2)
    >>> torch.allclose(xr, rb.apply_rope(x.transpose(1, 2)).transpose(1, 2), atol=1e-6)
    True
    """)


hf_apply_rotary_pos_emb_cohere = _drop_in("cohere", "hf_apply_rotary_pos_emb_cohere", """
    The ``apply_rotary_pos_emb`` of Cohere (Command R, Command R7B, Command A), GLM-4V, GLM-OCR, ERNIE 4.5-VL (the
    text models of these three, with their multi-dimensional positions already in cos and sin), BLT, LightGlue and
    EfficientLoFTR, in one kernel launch: pairs ``(2i, 2i + 1)``, as GLM's, with cos and sin ``(…, T, r)`` holding
    each value twice in a row, as their rotary modules build them (``repeat_interleave(freqs, 2, -1)``; checked).
    The kernel reads every other value, ``cos[..., 0::2]``, in place. Arguments and result as
    :func:`hf_apply_rotary_pos_emb`; ``r < D`` rotates the first r features (GLM-4V's partial rotary). Cohere's and
    ERNIE 4.5-VL's functions rotate in float32 and round once to q's dtype, as the kernel does; BLT's and GLM-4V's
    multiply in q's dtype.

    >>> import os, ropebook as rb
    >>> from unittest import mock
    >>> q, k = torch.randn(1, 4, 3, 8), torch.randn(1, 2, 3, 8)
    >>> c, s = rb.rope_cos_sin(torch.arange(3), 8)
    >>> cos, sin = c.repeat_interleave(2, -1), s.repeat_interleave(2, -1)   # Cohere's (T, D)
    >>> with mock.patch.dict(os.environ, TRITON_INTERPRET="1"):
    ...     qr, kr = hf_apply_rotary_pos_emb_cohere(q, k, cos, sin)
    >>> torch.allclose(qr, rb.apply_rope(q, layout="interleaved"), atol=1e-6)
    True
    """)


hf_apply_rotary_pos_emb_pairs_interleaved = _drop_in("pairs_interleaved", "hf_apply_rotary_pos_emb_pairs_interleaved", """
    The OpenAI privacy filter's ``apply_rotary_pos_emb``, in one kernel launch: pairs ``(2i, 2i + 1)``, as GLM's, with cos
    and sin ``(…, T, D/2)``, one value a pair, as gpt-oss's (its rotary module does not duplicate them). Arguments and
    result otherwise as :func:`hf_apply_rotary_pos_emb`.

    >>> import os, ropebook as rb
    >>> from unittest import mock
    >>> q, k = torch.randn(1, 4, 3, 8), torch.randn(1, 2, 3, 8)
    >>> cos, sin = rb.rope_cos_sin(torch.arange(3), 8)              # (T, D/2)
    >>> with mock.patch.dict(os.environ, TRITON_INTERPRET="1"):
    ...     qr, kr = hf_apply_rotary_pos_emb_pairs_interleaved(q, k, cos, sin)
    >>> torch.allclose(qr, rb.apply_rope(q, layout="interleaved"), atol=1e-6)
    True
    """)


hf_apply_rotary_pos_emb_gptj = _drop_in("gptj", "hf_apply_rotary_pos_emb_gptj", """
    The ``apply_rotary_pos_emb(tensor, sin, cos)`` of GPT-J and CodeGen, in one kernel launch: one tensor a call,
    ``(B, T, H, D)``, sin *before* cos, both ``(B or 1, T, D/2)`` or ``(T, D/2)``, one value a pair (the halves of
    the model's ``sincos`` table), pairs ``(2i, 2i + 1)`` (their ``rotate_every_two``). The model hands it the rotary
    features only, ``key[..., :rotary_dim]``, a view that the kernel reads where it lies, and concatenates the rest
    after. Returns the rotated tensor, a new one of its shape; differentiable in it. Their function multiplies in
    the tensor's dtype; the kernel rotates in float32 and rounds once.

    >>> import os, ropebook as rb
    >>> from unittest import mock
    >>> key = torch.randn(1, 3, 4, 16)                               # (B, T, H, D), as GPT-J's attention holds it
    >>> cos, sin = rb.rope_cos_sin(torch.arange(3), 8)              # (T, rotary_dim/2)
    >>> with mock.patch.dict(os.environ, TRITON_INTERPRET="1"):
    ...     k_rot = hf_apply_rotary_pos_emb_gptj(key[..., :8], sin[None], cos[None])
    >>> want = rb.apply_rope(key.transpose(1, 2), layout="interleaved", rotary_dim=8).transpose(1, 2)
    >>> torch.allclose(k_rot, want[..., :8], atol=1e-6)
    True
    """)


hf_apply_rotary_pos_emb_nanochat = _drop_in("nanochat", "hf_apply_rotary_pos_emb_nanochat", """
    nanochat's ``apply_rotary_pos_emb``, in one kernel launch: Llama's pairs ``(i, i + r/2)`` and cos and sin (each value
    twice, checked), but a rotation by −θ: its ``rotate_half`` returns ``cat((x2, -x1))`` where Llama's returns
    ``cat((-x2, x1))``, so each pair turns clockwise by its angle. q·k still depends on the positions' difference
    alone (the angle of n − m becomes that of m − n). Arguments and result as :func:`hf_apply_rotary_pos_emb`; the
    backward rotates the gradients by +θ.

    >>> import os, ropebook as rb
    >>> from unittest import mock
    >>> q, k = torch.randn(1, 4, 3, 8), torch.randn(1, 2, 3, 8)
    >>> c, s = rb.rope_cos_sin(torch.arange(3), 8)
    >>> cos, sin = torch.cat((c, c), -1), torch.cat((s, s), -1)
    >>> with mock.patch.dict(os.environ, TRITON_INTERPRET="1"):
    ...     qr, kr = hf_apply_rotary_pos_emb_nanochat(q, k, cos, sin)
    >>> torch.allclose(qr, rb.apply_rope(q, positions=-torch.arange(3)), atol=1e-6)   # position m turned by −mθ
    True
    """)


hf_apply_rotary_pos_emb_deepseek_v4 = _drop_in("deepseek_v4", "hf_apply_rotary_pos_emb_deepseek_v4", """
    DeepSeek-V4's ``apply_rotary_pos_emb(x, cos, sin, unsqueeze_dim=1)``, in one kernel launch (and, with r < D, one
    concatenation, as in theirs): one tensor a call, whose *last* r features are rotated in pairs ``(2i, 2i + 1)``
    and whose first D − r pass through (V4 lays a head out as ``[nope | rope]``). cos and sin are ``(…, T, r/2)``,
    one value a pair, as its rotary module returns them. Its attention calls it on q, on the one shared key-value
    head, on the compressed keys, and with ``-sin`` on the attention's output, to turn the rotated values back.

    Args:
        x: ``(B, H, T, D)`` (``unsqueeze_dim=1``, theirs) or ``(B, T, H, D)`` (``unsqueeze_dim=2``); the features
            contiguous.
        cos, sin: ``(B or 1, T, r/2)`` or ``(T, r/2)``, r at most D.

    Returns: the rotated x, a new tensor of its shape; differentiable in x. It rotates in float32 and rounds once to
    x's dtype, as theirs does; a float64 x it rotates in float64, where theirs casts it to float32.

    >>> import os, ropebook as rb
    >>> from unittest import mock
    >>> x = torch.randn(1, 4, 3, 16)                                 # (B, H, T, D): 12 nope features, then 4 rope
    >>> cos, sin = rb.rope_cos_sin(torch.arange(3), 4)              # (T, r/2)
    >>> with mock.patch.dict(os.environ, TRITON_INTERPRET="1"):
    ...     y = hf_apply_rotary_pos_emb_deepseek_v4(x, cos[None], sin[None])
    >>> torch.equal(y[..., :12], x[..., :12]) and torch.allclose(y[..., 12:], rb.apply_rope(x[..., 12:], layout="interleaved"), atol=1e-6)
    True
    """)


hf_apply_rotary_pos_emb_dinov3 = _drop_in("dinov3", "hf_apply_rotary_pos_emb_dinov3", """
    The ``apply_rotary_pos_emb(q, k, cos, sin, **kwargs)`` of DINOv3's ViT and of the models built on it (EoMT-DINOv3,
    Sapiens2), in one kernel launch and two concatenations, as in theirs: Llama's rotation (pairs ``(i, i + D/2)``,
    cos and sin each value twice, checked) of the *last* P tokens of q and k, the image's patches, where
    ``P = cos.shape[0]``; the first T − P tokens (the class token and the registers, and EoMT's queries) pass
    through unchanged.

    Args:
        q, k: ``(B, Hq, T, D)`` and ``(B, Hk, T, D)``; the features contiguous.
        cos, sin: ``(P, D)``, one table for the whole batch (the patches' angles, from their rows and columns, in
            the model's dtype), ``0 < P <= T``. All D features are rotated: their function has no partial rotary.
        kwargs: accepted and not read, as in theirs.

    Returns: ``(q_embed, k_embed)``, new tensors of q's and k's shapes and dtype; differentiable in q and k. Their
    function multiplies in q's dtype when cos has it, as the model passes them (cos in the pixels' dtype), and in
    the promoted dtype otherwise (a bfloat16 q under autocast, a float32 cos: a float32 result); the kernel rotates
    in float32 and rounds once to q's dtype, as every drop-in here does. The concatenations cost what theirs
    do: a copy of q and k besides the kernel's pass over the patches.

    >>> import os, ropebook as rb
    >>> from unittest import mock
    >>> q, k = torch.randn(1, 4, 5, 8), torch.randn(1, 4, 5, 8)     # (B, H, T, D): a class token, then 4 patches
    >>> c, s = rb.rope_cos_sin(torch.arange(4), 8)                   # (P, D/2)
    >>> cos, sin = torch.cat((c, c), -1), torch.cat((s, s), -1)      # DINOv3's (P, D)
    >>> with mock.patch.dict(os.environ, TRITON_INTERPRET="1"):
    ...     qr, kr = hf_apply_rotary_pos_emb_dinov3(q, k, cos, sin)
    >>> torch.equal(qr[:, :, :1], q[:, :, :1]) and torch.allclose(qr[:, :, 1:], rb.apply_rope(q[:, :, 1:]), atol=1e-6)
    True
    """)


hf_apply_rotary_pos_emb_clvp = _drop_in("clvp", "hf_apply_rotary_pos_emb_clvp", """
    CLVP's ``apply_rotary_pos_emb(q, k, v, cos, sin, position_ids, unsqueeze_dim=1)``, in two kernel launches (q and
    k in one, v in the other): Llama's rotation (pairs ``(i, i + D/2)``, cos and sin each value twice, checked) of q,
    k *and* v, each token by the row of the table that ``position_ids`` names, ``cos[position_ids]`` (the op theirs
    runs).

    Args:
        q, k, v: ``(B, Hq, T, D)``, ``(B, Hk, T, D)``, ``(B, Hv, T, D)`` (``unsqueeze_dim=1``) or ``(B, T, H, D)``
            (``unsqueeze_dim=2``); the features contiguous. CLVP's attention hands over the first r features of each
            head (views; it concatenates the rest back itself).
        cos, sin: ``(S, D)``, the angles of S positions, each value twice (CLVP's ``rotary_pos_emb.cos()``).
        position_ids: ``(B or 1, T)``, int64 or int32: the row of cos for each token. An index out of range fails
            as in theirs (an IndexError on the CPU, a device-side assert on CUDA); a negative one counts from the
            end, as in theirs.

    Returns: ``(q_embed, k_embed, v_embed)``, new tensors of q's, k's and v's shapes and dtype; differentiable in
    q, k and v. Their function multiplies in the promoted dtype of q and cos; the kernel rotates in float32 and
    rounds once to q's dtype. CLVP's attention takes a new cos in every layer, so the check of its halves runs in
    every call: on CUDA its device syncs (one for cos, one for sin) come in every layer, where the other drop-ins
    pay them once per forward pass.

    >>> import os, ropebook as rb
    >>> from unittest import mock
    >>> q, k, v = (torch.randn(2, 4, 3, 8) for _ in range(3))       # (B, H, T, D)
    >>> c, s = rb.rope_cos_sin(torch.arange(6), 8)                   # (S, D/2): 6 positions
    >>> cos, sin = torch.cat((c, c), -1), torch.cat((s, s), -1)      # CLVP's (S, D)
    >>> pos = torch.tensor([[0, 1, 2], [3, 4, 5]])                   # (B, T)
    >>> with mock.patch.dict(os.environ, TRITON_INTERPRET="1"):
    ...     qr, kr, vr = hf_apply_rotary_pos_emb_clvp(q, k, v, cos, sin, pos)
    >>> torch.allclose(vr[1], rb.apply_rope(v[1], positions=pos[1]), atol=1e-6)
    True
    """)

hf_apply_rotary_pos_emb_interleave = _drop_in("deepseek", "hf_apply_rotary_pos_emb_interleave", """
    DeepSeek-V3's ``apply_rotary_pos_emb_interleave(q, k, cos, sin, position_ids=None, unsqueeze_dim=1)``, in one kernel
    launch; also that of DeepSeek-V3.2, Kimi K2 (DeepSeek-V3's code), GLM-4.7-Flash, GLM-5, LongCat-Flash, Mistral
    Large 3 and others with multi-head latent attention. It reads pairs ``(2i, 2i + 1)``, rotates pair i by the
    angle in the first half of Hugging Face's cos and sin ``(…, T, r)`` (the second half is not read, as in
    theirs), and writes the pairs out as ``(i, i + r/2)``: the input interleaved, the output in Llama's layout.
    ``position_ids`` is accepted and not used, as in theirs. Arguments and result otherwise as
    :func:`hf_apply_rotary_pos_emb`; the backward reads the gradients in Llama's layout and writes them interleaved.

    >>> import os, ropebook as rb
    >>> from unittest import mock
    >>> q, k = torch.randn(1, 4, 3, 8), torch.randn(1, 1, 3, 8)     # MLA: one key head for the rotary part
    >>> c, s = rb.rope_cos_sin(torch.arange(3), 8)
    >>> cos, sin = torch.cat((c, c), -1), torch.cat((s, s), -1)
    >>> with mock.patch.dict(os.environ, TRITON_INTERPRET="1"):
    ...     qr, kr = hf_apply_rotary_pos_emb_interleave(q, k, cos, sin)
    >>> y = rb.apply_rope(q, layout="interleaved")                   # the rotation, in q's interleaved layout
    >>> torch.allclose(qr, torch.cat((y[..., 0::2], y[..., 1::2]), -1), atol=1e-6)   # written as (i, i + r/2)
    True
    """)

# the form each drop-in here computes (_factory's names) -> the drop-in; patch_hf installs from these
DROP_INS = {
    "half": hf_apply_rotary_pos_emb, "interleaved": hf_apply_rotary_pos_emb_interleaved,
    "pairs": hf_apply_rotary_pos_emb_pairs, "single": hf_apply_rotary_pos_emb_single,
    "cohere": hf_apply_rotary_pos_emb_cohere, "pairs_interleaved": hf_apply_rotary_pos_emb_pairs_interleaved,
    "gptj": hf_apply_rotary_pos_emb_gptj, "nanochat": hf_apply_rotary_pos_emb_nanochat,
    "deepseek_v4": hf_apply_rotary_pos_emb_deepseek_v4, "dinov3": hf_apply_rotary_pos_emb_dinov3,
    "clvp": hf_apply_rotary_pos_emb_clvp, "deepseek": hf_apply_rotary_pos_emb_interleave}
