"""Which form a modelling file's function computes: each form's drop-in's rotation, in float64, compared with
what the function returns on one small seeded input (the probe), for each call the drop-in accepts."""

from __future__ import annotations

import weakref

import torch
from torch import Tensor

from ropebook._rotation import apply_cos_sin as _apply_cos_sin_torch
from ropebook.kernels.hf._factory import (_CONJ, _COMPLEX, _GATHER, _LAST, _LAYOUTS, _OUT_LAYOUTS, _PREFIX, _SAM,
                                          _VISION, _base)

# the module functions patch_hf replaces, and the forms each may compute
_FUNCTIONS = {"apply_rotary_pos_emb": ("half", "interleaved", "pairs", "single", "cohere", "pairs_interleaved", "gptj",
                                        "nanochat", "deepseek_v4", "dinov3", "clvp"),
              "apply_rotary_pos_emb_interleave": ("deepseek",),
              "apply_rotary_pos_emb_vision": ("vision", "vision_cohere"),
              "apply_rotary_emb": ("llama4", "deepseek_v2"),
              "vision_apply_rotary_emb": ("llama4_vision",),
              "apply_rotary_pos_emb_2d": ("sam2d",), "apply_rotary_pos_emb_2d_self_attn": ("sam2d",),
              "apply_rotary_pos_emb_2d_cross_attn": ("edgetam_cross",)}
_FORM_NAMES = {"half": "Llama's (pairs (i, i + r/2), cos each value twice)",
               "interleaved": "GLM's (pairs (2i, 2i + 1), cos's first half)",
               "pairs": "gpt-oss's (pairs (i, i + D/2), cos one value a pair)",
               "single": "Gemma 4's (Llama's, one tensor: (x, cos, sin))",
               "cohere": "Cohere's (pairs (2i, 2i + 1), cos each value twice in a row)",
               "pairs_interleaved": "the OpenAI privacy filter's (pairs (2i, 2i + 1), cos one value a pair)",
               "gptj": "GPT-J's ((tensor, sin, cos): pairs (2i, 2i + 1), cos one value a pair)",
               "nanochat": "nanochat's (Llama's, rotated by −θ)",
               "deepseek_v4": "DeepSeek-V4's ((x, cos, sin): the last r features in pairs (2i, 2i + 1), cos one value a pair)",
               "dinov3": "DINOv3's (Llama's, the last P = cos.shape[0] tokens, cos (P, D) for the batch)",
               "clvp": "CLVP's ((q, k, v, cos, sin, position_ids): Llama's, of q, k and v, cos (S, D) read at position_ids)",
               "sam2d": "SAM 2's (Cohere's, cos (1, Tq, D) for the batch, tiled over k's first tokens, the last passed through)",
               "edgetam_cross": "EdgeTAM's cross-attention's (Cohere's; in each frame of k the last S tokens by cos_k (S, D))",
               "llama4": "Llama 4's ((xq, xk, freqs_cis): pairs (2i, 2i + 1) times complex freqs_cis, xq (B, T, H, D))",
               "deepseek_v2": "DeepSeek-V2's ((xq, xk, freqs_cis): pairs (2i, 2i + 1) times complex freqs_cis, xq (B, H, T, D))",
               "llama4_vision": "Llama 4's vision tower's ((query, key, freqs_ci): Llama 4's, freqs_ci (T, 1, D/2))",
               "deepseek": "DeepSeek-V3's (pairs (2i, 2i + 1) read, written as (i, i + r/2); cos's first half)",
               "vision": "Qwen2-VL's vision tower's (Llama's, q (T, H, D), cos (T, r))",
               "vision_cohere": "Inkling 2's vision tower's (Cohere's, q (T, H, D), cos (T, r))"}
_PROBE_Q = (2, 2, 3, 8)  # the probe's q: two sequences of 3 tokens, 2 heads of 8 features
_verdicts: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # a module's function -> {forms: (form or None, report)}


def _probe(original, form: str, r: int = 8, call: str = "plain"):
    """How far ``original`` is from ``form`` on one small input: q (2, 2, 3, 8), k (2, 1, 3, 8) in float32,
    r of the 8 features rotated, random cos and sin of shape (2, 3, ·), a different row for each sequence (the
    formulas are linear in them, so any values tell the formulas apart), laid out as ``form`` reads them.
    ``call``: ``"plain"`` ``(q, k, cos, sin)`` (the single form: ``(q, cos, sin)``; GPT-J's: ``(q as (B, T, H, D), sin,
    cos)``, and ``"2-d cos"`` with cos (T, ·)), ``"unsqueeze_dim=2"`` (q and k
    (B, T, H, D)), ``"unsqueeze_dim=0"`` (cos and sin 2-d, (T, ·), as Pixtral's), ``"k omitted"`` (q alone, by
    keyword, as Qwen4's indexer calls it). A vision tower's form: ``"plain"`` the first sequence alone, q and k
    (T, H, D) and cos and sin (T, ·); ``"batched"`` q and k (B, T, H, D) with cos (B, T, ·); ``"batched, 2-d cos"``
    with cos (T, ·). DINOv3's form: q and k of 5 tokens, ``"plain"`` cos and sin (3, ·), one table for the batch, of
    the last 3 tokens (the first 2 pass through); ``"no prefix"`` (5, ·), every token. CLVP's form: q, k and v
    as above (v as q), cos and sin a table (5, ·) read at position ids (2, 3), some negative, ``"one row of positions"`` (1, 3) for both
    sequences; ``"unsqueeze_dim=2"`` as above. Meta's complex form: cos and sin the parts of a complex freqs_cis
    (2, 3, 4), q and k (B, T, H, D) for Llama 4's, (B, H, T, D) for DeepSeek-V2's, ``"one row"`` freqs_cis (1, 3, 4);
    Llama 4's vision tower's freqs_ci (3, 1, 4), one table for the batch. SAM 2's form: cos and sin one table
    (1, 3, ·), or (3, ·) with ``"2-d cos"``; ``"keys excluded"`` k of 5 tokens with num_k_exclude_rope=2,
    ``"keys tiled"`` k of 7, repeat_freqs_k=True and num_k_exclude_rope=1 (two tiles of 3 turned). EdgeTAM's
    cross-attention form: the keys' own table (1, 2, ·) for the last 2 tokens of each frame, k of 2 frames of 3
    tokens and 1 pointer, or with ``"no latents"`` 3 frames of 2 tokens. (SAM 2's and EdgeTAM's keyword calls: k of 2
    heads.) Returns the largest difference from the form's result computed in float64, or what the call did
    instead (raised, or returned something else)."""
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(*_PROBE_Q, generator=g), torch.randn(2, 1, 3, 8, generator=g)
    c, s = (torch.rand(2, 3, r // 2, generator=g) * 2 - 1 for _ in range(2))  # (B, T, r/2): the angles' cos and sin
    vision, base = form in _VISION, _base(form)
    if base in ("half", "single", "nanochat"):
        cos, sin = torch.cat((c, c), -1), torch.cat((s, s), -1)
    elif base in ("interleaved", "deepseek"):  # a second half unlike the first: the form does not read it
        cos, sin = (torch.cat((x, torch.rand(2, 3, r // 2, generator=g)), -1) for x in (c, s))
    elif base == "cohere":
        cos, sin = c.repeat_interleave(2, -1), s.repeat_interleave(2, -1)
    else:
        cos, sin = c, s
    packed = vision and call == "plain"  # one sequence of patches, (T, H, D)
    if call in ("unsqueeze_dim=0", "batched, 2-d cos", "2-d cos") or packed:  # one (T, ·) for every sequence
        cos, sin, c, s = cos[0], sin[0], c[:1], s[:1]
    if packed:
        q, k = q[:1], k[:1]
    tokens = 0  # the first tokens, which pass through (DINOv3's form: 2 of 5, or none, cos the last rows' (P, ·))
    if form in _PREFIX:  # 5 tokens, so that 2 pass through and 3 turn: a function that skips 1 token, or turns
        # the tokens after the first and passes the last through (registers after the patches), differs
        q, k = torch.randn(2, 2, 5, 8, generator=g), torch.randn(2, 1, 5, 8, generator=g)
        tokens = 0 if call == "no prefix" else 2
        c, s = (torch.rand(1, 5 - tokens, r // 2, generator=g) * 2 - 1 for _ in range(2))
        cos, sin = torch.cat((c, c), -1)[0], torch.cat((s, s), -1)[0]
    if form in _GATHER:  # CLVP's: q, k and v, a table of 5 rows read at position ids that differ between the sequences,
        # out of order, repeated and negative (counted from the end, as indexing does), so that a function that reads
        # the first T rows, one sequence's, or clamps or shifts the ids, differs
        v = torch.randn(*_PROBE_Q, generator=g)
        ct, st = (torch.rand(5, r // 2, generator=g) * 2 - 1 for _ in range(2))  # (S, r/2)
        pos = torch.tensor([[4, -1, 2], [1, -4, 1]])[:1 if call == "one row of positions" else 2]  # (B or 1, T)
        cos, sin = torch.cat((ct, ct), -1), torch.cat((st, st), -1)  # (S, r)
        c, s = ct[pos], st[pos]
    sam = {}  # SAM 2's keywords: the last keys passed through, the first ones in tiles of q's tokens
    if form in _SAM and cos.ndim == 3:  # one table (1, T, r) for the batch (their function broadcasts it over q's heads)
        cos, sin, c, s = cos[:1], sin[:1], c[:1], s[:1]
    if form == "edgetam_cross":  # the keys' own table (1, 2, r), for the last 2 tokens of each frame; k of 2 frames
        # of 3 tokens and 1 pointer, or of 3 frames of 2 tokens (no latents): a function that turns the latents, or
        # the first tokens of a frame, or the keys by q's table, or repeats each row where it should tile, differs
        ck, sk = (torch.rand(1, 2, r // 2, generator=g) * 2 - 1 for _ in range(2))
        cos_k, sin_k = ck.repeat_interleave(2, -1), sk.repeat_interleave(2, -1)
        frames, per, n = (3, 2, 0) if call == "no latents" else (2, 3, 1)
        k = torch.randn(2, 2, frames * per + n, 8, generator=g)  # (two heads: a function that reads them as tokens differs)
        sam = dict(cos_k=cos_k[0] if call == "2-d cos" else cos_k, sin_k=sin_k[0] if call == "2-d cos" else sin_k,
                   num_k_exclude_rope=n, repeat_freqs_k=frames)
    elif form in _SAM:  # k of 5 tokens, the last 2 passed through, or of 7, 2 tiles of 3 turned and 1 passed: a
        # function that turns the excluded keys, or the first ones, or repeats each row where it should tile, differs
        if call in ("keys excluded", "keys tiled"):
            k = torch.randn(2, 2, 5 if call == "keys excluded" else 7, 8, generator=g)  # (two heads, as above)
            sam = dict(num_k_exclude_rope=2) if call == "keys excluded" else dict(num_k_exclude_rope=1, repeat_freqs_k=True)
    if form in _COMPLEX:  # Meta's: cos and sin as the real and imaginary parts of freqs_cis (B or 1, T, r/2)
        if form == "llama4_vision" or call == "one row":  # one table for the batch (the vision tower's (T, 1, r/2))
            c, s = c[:1], s[:1]
        freqs = torch.complex(c, s)
        freqs = freqs[0][:, None] if form == "llama4_vision" else freqs
    layout = _LAYOUTS[base]
    alone = form in ("single", "gptj", "deepseek_v4") or call == "k omitted"
    sign = -1 if base in _CONJ else 1  # (a rotation by −θ: sin's sign flipped)
    skip = q.shape[-1] - r if form in _LAST else 0  # (the first features pass through, the last r turn)
    want = [torch.cat((x[:, :, :tokens].double(), torch.cat((x[..., tokens:, :skip].double(), _apply_cos_sin_torch(
        x[..., tokens:, skip:].double(), c[:, None].double(), sign * s[:, None].double(), layout=layout, rotary_dim=r)),
        -1)), 2) for x in ((q,) if alone or form in _SAM else (q, k, v) if form in _GATHER else (q, k))]  # c[:, None]: (B, 1, T, r/2), each sequence's own angles
    if form == "edgetam_cross":  # k: in each frame the first tokens as they are, the last 2 turned by cos_k
        turned = [torch.cat((f[:, :, :per - 2].double(), _apply_cos_sin_torch(
            f[:, :, per - 2:].double(), ck[:, None].double(), sk[:, None].double(), layout=layout, rotary_dim=r)), 2)
            for f in k[:, :, :frames * per].split(per, 2)]
        want.append(torch.cat((*turned, k[:, :, frames * per:].double()), 2))
    elif form in _SAM:  # k: its first m tokens turned by the table tiled, the rest as they are
        m = k.shape[2] - sam.get("num_k_exclude_rope", 0)
        ct, st = (x.repeat(1, m // q.shape[2], 1)[:, None].double() for x in (c, s))
        want.append(torch.cat((_apply_cos_sin_torch(k[:, :, :m].double(), ct, st, layout=layout, rotary_dim=r),
                             k[:, :, m:].double()), 2))
    if form in _OUT_LAYOUTS:  # DeepSeek-V3's: the rotated pairs written out as (i, i + r/2)
        want = [torch.cat((w[..., 0:r:2], w[..., 1:r:2], w[..., r:]), -1) for w in want]
    try:
        if vision:  # (B, T, H, D), or (T, H, D) packed; the result back to (B, H, T, D) to compare
            got = original(*(x.transpose(1, 2)[0] if packed else x.transpose(1, 2) for x in (q, k)), cos, sin)
            got = (got,) if isinstance(got, Tensor) else got
            got = tuple((x[None] if packed else x).transpose(1, 2) if isinstance(x, Tensor) and x.ndim == 4 - packed
                        else x for x in got)
        elif form in _GATHER:  # (q, k, v, cos, sin, position_ids), or (B, T, H, D) with unsqueeze_dim=2
            if call == "unsqueeze_dim=2":
                got = original(*(x.transpose(1, 2) for x in (q, k, v)), cos, sin, pos, unsqueeze_dim=2)
                got = tuple(x.transpose(1, 2) if isinstance(x, Tensor) and x.ndim == 4 else x for x in got)
            else:
                got = original(q, k, v, cos, sin, pos)
        elif form in _SAM:  # (q, k, cos, sin), then SAM 2's keywords where the call has them
            got = original(q, k, cos, sin, **sam)
        elif form in _COMPLEX:  # (xq, xk, freqs_cis), xq (B, T, H, D) (Llama 4's) or (B, H, T, D) (DeepSeek-V2's)
            if _COMPLEX[form] == 2:
                got = original(q.transpose(1, 2), k.transpose(1, 2), freqs)
                got = tuple(x.transpose(1, 2) if isinstance(x, Tensor) and x.ndim == 4 else x for x in got)
            else:
                got = original(q, k, freqs)
        elif form == "gptj":  # (tensor, sin, cos), the tensor (B, T, H, D)
            got = original(q.transpose(1, 2), sin, cos)
            got = got.transpose(1, 2) if isinstance(got, Tensor) and got.ndim == 4 else got
        elif call == "unsqueeze_dim=2":
            args = [x.transpose(1, 2) for x in ((q,) if alone else (q, k))]
            got = original(*args, cos, sin, unsqueeze_dim=2)
            got = got.transpose(1, 2) if isinstance(got, Tensor) else tuple(x.transpose(1, 2) for x in got)
        elif call == "unsqueeze_dim=0":
            got = original(*((q,) if alone else (q, k)), cos, sin, unsqueeze_dim=0)
        elif call == "k omitted":
            got = original(q, cos=cos, sin=sin)
        else:
            got = original(*((q,) if alone else (q, k)), cos, sin)
        got = (got,) if isinstance(got, Tensor) else got
        if len(got) != len(want) or any(not isinstance(x, Tensor) or x.shape != w.shape for x, w in zip(got, want)):
            return f"returned {type(got).__name__} of {[tuple(getattr(x, 'shape', ())) for x in got]}"
        return max((x.double() - w).abs().max().item() for x, w in zip(got, want))
    except Exception as err:  # noqa: BLE001 (any failure means: not this form, or not with these arguments)
        return f"raised {type(err).__name__}: {str(err).splitlines()[0][:120] if str(err) else ''}"


# The probe's q and k are seeded normals (|x| < 2.4), cos and sin in [-1, 1): a float32 x1·c − x2·s is within
# 3 roundings of 2^-24 of |x1 c| + |x2 s| < 4.8, under 9e-7. The tolerance, 64·2^-24 = 3.8e-6, leaves room for
# a function that computes in float32 in another order; a wrong formula is off by about |x|, and one that
# computes in bfloat16 or float16 by far more than this (2^-9 or 2^-12 relative). NaN never passes.
_PROBE_TOL = 64 * 2.0**-24
# the calls besides the plain one that each form's drop-in accepts, so the probe tries them ("partial": r = 4 of 8;
# gpt-oss's one value a pair has no partial form, Gemma's one-tensor form no k to omit)
_CALLS = {"half": ("unsqueeze_dim=2", "unsqueeze_dim=0", "k omitted", "partial"),
          "interleaved": ("unsqueeze_dim=2", "unsqueeze_dim=0", "k omitted", "partial"),
          "pairs": ("unsqueeze_dim=2", "unsqueeze_dim=0", "k omitted"),
          "single": ("unsqueeze_dim=2", "unsqueeze_dim=0", "partial"),
          "cohere": ("unsqueeze_dim=2", "unsqueeze_dim=0", "k omitted", "partial"),
          "pairs_interleaved": ("unsqueeze_dim=2", "unsqueeze_dim=0", "k omitted"),
          "gptj": ("2-d cos",),
          "nanochat": ("unsqueeze_dim=2", "unsqueeze_dim=0", "k omitted", "partial"),
          "deepseek_v4": ("unsqueeze_dim=2", "unsqueeze_dim=0", "partial"),
          "dinov3": ("no prefix",),
          "clvp": ("unsqueeze_dim=2", "one row of positions"),
          "sam2d": ("2-d cos", "keys excluded", "keys tiled"), "edgetam_cross": ("2-d cos", "no latents"),
          "llama4": ("one row",), "deepseek_v2": ("one row",), "llama4_vision": (),
          "deepseek": ("unsqueeze_dim=2", "unsqueeze_dim=0", "k omitted", "partial"),
          "vision": ("batched", "batched, 2-d cos", "partial"),
          "vision_cohere": ("batched", "batched, 2-d cos", "partial")}


def _formula(original, forms: tuple = _FUNCTIONS["apply_rotary_pos_emb"]) -> tuple[str | None, str]:
    """Which of ``forms``'s drop-ins computes what ``original`` does: a form, or None, and what the probes found.
    A form matches when the function agrees with it on the plain probe, and on each other call the drop-in
    accepts (``unsqueeze_dim`` 2 and 0, k omitted, partial rotary r = 4 of 8) agrees or raises: a call the
    function refuses is one its model never makes."""
    found = _verdicts.get(original, {}).get(forms)
    if found is not None:
        return found
    report = []
    verdict = None
    for form in forms:
        full = _probe(original, form)
        if not (isinstance(full, float) and full <= _PROBE_TOL):  # (a NaN fails too)
            report.append(f"{_FORM_NAMES[form]}: " + (f"differs by {full:.3g}" if isinstance(full, float) else full))
            continue
        for call in _CALLS[form]:
            d = _probe(original, form, 4, "plain") if call == "partial" else _probe(original, form, 8, call)
            if isinstance(d, float) and not d <= _PROBE_TOL or isinstance(d, str) and d.startswith("returned"):
                report.append(f"{_FORM_NAMES[form]}: agrees with the plain call, but not with "
                              f"{'partial rotary (r = 4 of 8)' if call == 'partial' else call}: "
                              + (f"differs by {d:.3g}" if isinstance(d, float) else d))
                break
        else:
            verdict = form
            break
    found = (verdict, "; ".join(report))
    try:
        _verdicts.setdefault(original, {})[forms] = found
    except TypeError:  # not weakly referable (a builtin): probed again next time
        pass
    return found


def _takes_none(original, forms) -> bool:
    """Whether ``original`` raised on the plain probe of every one of ``forms`` (it does not take their call at all,
    as flash-attn's ``apply_rotary_emb(x, cos, sin)`` does not take Meta's ``(xq, xk, freqs_cis)``)."""
    return all(isinstance(d, str) and d.startswith("raised") for d in (_probe(original, form) for form in forms))
