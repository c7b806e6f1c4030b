"""Drop-ins for the functions of image models: the vision towers' ``apply_rotary_pos_emb_vision`` (Qwen2-VL's
family, Inkling 2's), and SAM 2's, SAM 3's and EdgeTAM's ``apply_rotary_pos_emb_2d`` and its variants."""

from __future__ import annotations

from ropebook.kernels.hf._factory import _drop_in

hf_apply_rotary_pos_emb_vision = _drop_in("vision", "hf_apply_rotary_pos_emb_vision", """
    The ``apply_rotary_pos_emb_vision(q, k, cos, sin)`` of the vision towers of Qwen2-VL, Qwen2.5-VL, Qwen2.5-Omni,
    Qwen3-VL, Qwen3.5, GLM-4V, GLM-OCR, ERNIE 4.5-VL, PaddleOCR-VL, Kimi K2.5, MLCD, MiniMax-M3-VL and others, in one
    kernel launch: Llama's rotation (pairs ``(i, i + r/2)``, cos and sin each value twice, checked) of the image
    patches, which these towers lay out as one sequence.

    Args:
        q, k: ``(T, H, D)``, the patches of every image in a batch in one sequence (as Qwen2-VL's tower packs
            them; its attention keeps them apart with ``cu_seqlens``), or ``(B, T, H, D)``; the features contiguous
            (views of one fused qkv projection are read where they lie).
        cos, sin: ``(T, r)``, or ``(B or 1, T, r)`` for a 4-d q; the angles of each patch, which a tower computes
            from its row and column (axial RoPE: half the pairs from each) and passes in float32. ``r < D``
            rotates the first r features and passes the rest through (MiniMax-M3-VL's).
        Its attention's ``cu_seqlens`` are not an argument: each patch's angles are in its row of cos.

    Returns: ``(q_embed, k_embed)``, new tensors of q's shape and dtype; differentiable in q and k. Most of these
    functions rotate in float32 and round once to q's dtype, as the kernel does.

    >>> import os, ropebook as rb
    >>> from unittest import mock
    >>> q, k = torch.randn(6, 2, 8), torch.randn(6, 2, 8)           # (T, H, D): 6 patches
    >>> rows, cols = torch.tensor([0, 0, 0, 1, 1, 1]), torch.tensor([0, 1, 2, 0, 1, 2])
    >>> c, s = (torch.cat((rb.rope_cos_sin(rows, 4)[i], rb.rope_cos_sin(cols, 4)[i]), -1) for i in (0, 1))  # (T, 4)
    >>> cos, sin = torch.cat((c, c), -1), torch.cat((s, s), -1)      # (T, D), each value twice
    >>> with mock.patch.dict(os.environ, TRITON_INTERPRET="1"):
    ...     qr, kr = hf_apply_rotary_pos_emb_vision(q, k, cos, sin)
    >>> want = q * cos[:, None] + torch.cat((-q[..., 4:], q[..., :4]), -1) * sin[:, None]   # Qwen2-VL's formula
    >>> qr.shape == q.shape and torch.allclose(qr, want, atol=1e-6)
    True
    """)


hf_apply_rotary_pos_emb_vision_cohere = _drop_in("vision_cohere", "hf_apply_rotary_pos_emb_vision_cohere", """
    Inkling 2's ``apply_rotary_pos_emb_vision(q, k, cos, sin)``, in one kernel launch: Cohere's rotation (pairs
    ``(2i, 2i + 1)``, cos and sin each value twice in a row, checked; the kernel reads every other one) of a
    vision tower's patches. Arguments and result as :func:`hf_apply_rotary_pos_emb_vision`.

    >>> import os, ropebook as rb
    >>> from unittest import mock
    >>> q, k = torch.randn(5, 2, 8), torch.randn(5, 2, 8)           # (T, H, D)
    >>> c, s = rb.rope_cos_sin(torch.arange(5), 8)
    >>> with mock.patch.dict(os.environ, TRITON_INTERPRET="1"):
    ...     qr, kr = hf_apply_rotary_pos_emb_vision_cohere(q, k, c.repeat_interleave(2, -1), s.repeat_interleave(2, -1))
    >>> torch.allclose(qr, rb.apply_rope(q.transpose(0, 1), layout="interleaved").transpose(0, 1), atol=1e-6)
    True
    """)

hf_apply_rotary_pos_emb_2d = _drop_in("sam2d", "hf_apply_rotary_pos_emb_2d", """
    SAM 2's ``apply_rotary_pos_emb_2d(q, k, cos, sin, num_k_exclude_rope=0, repeat_freqs_k=False)`` (SAM 2 video's
    memory attention, SAM 3's tracker's; SAM 3's ViT's and EdgeTAM's ``apply_rotary_pos_emb_2d_self_attn`` take q, k,
    cos and sin alone): Cohere's rotation (pairs ``(2i, 2i + 1)``, cos and sin each value twice in a row, checked) of
    q, and of the keys by the same table, tiled, in as many kernel launches as tiles (one in self-attention).

    Args:
        q: ``(B, Hq, Tq, D)``, an image's Tq patches (features contiguous).
        k: ``(B, Hk, Tk, D)``: in self-attention the same patches (Tk = Tq); in SAM 2's cross-attention to its
            memory, ``(Tk − n) / Tq`` other frames of Tq tokens (one a patch), then n object pointer tokens.
        cos, sin: ``(1, Tq, D)`` or ``(Tq, D)``: each patch's angles from its column and row (SAM's axial table),
            one for the batch, each value twice in a row.
        num_k_exclude_rope: n, the last keys, passed through unturned (SAM 2's object pointers).
        repeat_freqs_k: with True the first ``Tk − n`` keys may be a multiple of Tq, each tile of Tq keys turned by
            the table (``cos.repeat`` in theirs); with False they must be Tq (or Tq = 1, a row theirs broadcasts).

    Returns: ``(q_embed, k_embed)``, new tensors of q's and k's shapes and dtype; differentiable in q and k. For q
    in bf16, fp16 or fp32, theirs computes in float32 and rounds to q's dtype, as the kernel does (for float64 q,
    theirs narrows to float32 and the kernel does not). The tiles are views of k, so nothing is copied to launch
    them; the turned tiles and the passed keys are joined by one concatenation (theirs makes it too), except in
    self-attention, where there is nothing to join. SAM 3's ViT builds its table in every layer, so there the
    check of cos's copies runs in every layer (on CUDA, a device sync for cos and one for sin), as CLVP's does.

    >>> import os, ropebook as rb
    >>> from unittest import mock
    >>> q, k = torch.randn(1, 2, 6, 8), torch.randn(1, 2, 3 * 6 + 4, 8)    # 6 patches; 3 frames of memory, 4 pointers
    >>> c, s = rb.rope_cos_sin(torch.arange(6), 8)                         # (Tq, D/2)
    >>> cos, sin = c.repeat_interleave(2, -1)[None], s.repeat_interleave(2, -1)[None]  # SAM's (1, Tq, D)
    >>> with mock.patch.dict(os.environ, TRITON_INTERPRET="1"):
    ...     qr, kr = hf_apply_rotary_pos_emb_2d(q, k, cos, sin, num_k_exclude_rope=4, repeat_freqs_k=True)
    >>> turned = rb.apply_rope(k[:, :, 6:12], layout="interleaved")       # the second frame's tile
    >>> torch.allclose(kr[:, :, 6:12], turned, atol=1e-6) and torch.equal(kr[:, :, 18:], k[:, :, 18:])
    True
    """)


hf_apply_rotary_pos_emb_2d_cross_attn = _drop_in("edgetam_cross", "hf_apply_rotary_pos_emb_2d_cross_attn", """
    EdgeTAM's ``apply_rotary_pos_emb_2d_cross_attn(q, k, cos, sin, cos_k, sin_k, num_k_exclude_rope=0,
    repeat_freqs_k=1)`` (its memory cross-attention): Cohere's rotation (pairs ``(2i, 2i + 1)``, each value of the
    tables twice in a row, checked) of q by cos, and of each frame of memory in k by a table of the keys' own,
    in a launch for q and one for each frame.

    Args:
        q: ``(B, Hq, Tq, D)``, the current frame's patches; cos, sin: ``(1, Tq, D)`` or ``(Tq, D)``, their table.
        k: ``(B, Hk, Tk, D)``: R frames of memory, each of t global latents and then S spatial tokens, then n
            object pointers. cos_k, sin_k: ``(1, S, D)`` or ``(S, D)``, the spatial tokens' table, the same for
            every frame.
        num_k_exclude_rope: n, the last keys, passed through unturned.
        repeat_freqs_k: R, the frames of memory (at least 1; the first ``Tk − n`` keys must split into R frames
            of at least S tokens). Not read where no key is turned (``n = Tk``), as in theirs.

    Returns: ``(q_embed, k_embed)``, of q's and k's shapes and dtype; differentiable in q and k. For q in bf16,
    fp16 or fp32, theirs computes in float32 and rounds to q's dtype, as the kernel does. Where no key is turned,
    k_embed is a view of k, as in theirs; otherwise the latents, the turned tokens and the pointers are joined by
    one concatenation.

    >>> import os, ropebook as rb
    >>> from unittest import mock
    >>> q, k = torch.randn(1, 2, 6, 8), torch.randn(1, 2, 2 * (1 + 4) + 3, 8)  # 2 frames of 1 latent, 4 spatial; 3 pointers
    >>> tables = [x.repeat_interleave(2, -1)[None] for x in rb.rope_cos_sin(torch.arange(6), 8)]  # (1, 6, D)
    >>> cos_k, sin_k = (x[:, :4] for x in tables)                                  # the keys' (1, S, D)
    >>> with mock.patch.dict(os.environ, TRITON_INTERPRET="1"):
    ...     qr, kr = hf_apply_rotary_pos_emb_2d_cross_attn(q, k, *tables, cos_k, sin_k, 3, 2)
    >>> turned = rb.apply_rope(k[:, :, 6:10], layout="interleaved")              # the second frame's spatial tokens
    >>> torch.allclose(kr[:, :, 6:10], turned, atol=1e-6) and torch.equal(kr[:, :, 5], k[:, :, 5])
    True
    """)

# the form each drop-in here computes (_factory's names) -> the drop-in; patch_hf installs from these
DROP_INS = {
    "vision": hf_apply_rotary_pos_emb_vision, "vision_cohere": hf_apply_rotary_pos_emb_vision_cohere,
    "sam2d": hf_apply_rotary_pos_emb_2d, "edgetam_cross": hf_apply_rotary_pos_emb_2d_cross_attn}
