"""How the Hugging Face forms differ, as tables, and the factory that builds one drop-in a form: checks, then
one kernel launch (``_rope_qk_cos_sin``), whatever the form's signature."""

from __future__ import annotations

import numbers

import torch
from torch import Tensor

from ropebook.kernels.autograd import _rope_qk_cos_sin
from ropebook.kernels.hf._checks import (_assert_twice, _check_complex, _check_edgetam, _check_sam, _check_twice,
                                         _check_vision, _check_whole, _gather)

_LAYOUTS = {"half": "half", "interleaved": "interleaved", "pairs": "half", "single": "half",  # the kernel's layout
            "cohere": "interleaved", "deepseek": "interleaved", "pairs_interleaved": "interleaved", "gptj": "interleaved",
            "nanochat": "half", "deepseek_v4": "interleaved"}
_OUT_LAYOUTS = {"deepseek": "half"}  # where the output's layout is not the input's
_CONJ = ("nanochat",)  # the forms that rotate by −θ
_LAST = ("deepseek_v4",)  # the forms that rotate the last r features, not the first
_VISION = {"vision": "half", "vision_cohere": "cohere"}  # a vision tower's form -> the text form it rotates as
_PREFIX = {"dinov3": "half"}  # a form that rotates the last tokens alone (an image's patches) -> the text form it rotates as
_GATHER = {"clvp": "half"}  # a form that reads a table (S, r) at position ids, and rotates v too -> the text form it rotates as
# SAM 2's form, (q, k, cos, sin, num_k_exclude_rope=0, repeat_freqs_k=False): q's Tq tokens turned by one table
# (Tq, D), k's first Tk − n by that table tiled (memories of several frames), its last n passed through; and
# EdgeTAM's cross-attention form, (q, k, cos, sin, cos_k, sin_k, num_k_exclude_rope=0, repeat_freqs_k=1): the
# same, but k's frames turned by a table of their own (S, D), the last S tokens of each frame, the first (its
# global latents) passed through -> the text form they rotate as
_SAM = {"sam2d": "cohere", "edgetam_cross": "cohere"}
# Meta's complex form, (xq, xk, freqs_cis): pairs (2i, 2i + 1) times the complex freqs_cis, one value a pair -> the
# unsqueeze_dim its q's layout reads as (Llama 4's (B, T, H, D): 2; DeepSeek-V2's (B, H, T, D): 1)
_COMPLEX = {"llama4": 2, "deepseek_v2": 1, "llama4_vision": 2}
# names that a modelling file may hold for another library's function (flash-attn's apply_rotary_emb(x, cos, sin),
# imported under its own name): where every probe of their forms raises (the function does not take Meta's call),
# patch_hf leaves them as they are and patches the module's other functions; it refuses a module with nothing else
# to patch, and a function that takes the call and computes something else, as it does any other
_OTHERS = ("apply_rotary_emb", "vision_apply_rotary_emb")


def _base(form: str) -> str:
    """The text form whose rotation ``form`` computes: its own, or a vision tower's, DINOv3's, CLVP's or Meta's
    complex form's text form."""
    if form in _COMPLEX:  # the real and imaginary parts of freqs_cis: the privacy filter's cos and sin, one value a pair
        return "pairs_interleaved"
    return _VISION.get(form) or _PREFIX.get(form) or _GATHER.get(form) or _SAM.get(form, form)


def _drop_in(form: str, fn: str, doc: str):
    """A drop-in for the Hugging Face form ``form`` (``"half"``, ``"interleaved"``, ``"pairs"``, ``"single"``,
    ``"cohere"``, ``"pairs_interleaved"``, ``"gptj"``, ``"nanochat"``, ``"deepseek_v4"``, ``"dinov3"``, ``"clvp"``,
    ``"sam2d"``, ``"edgetam_cross"``,
    ``"llama4"``, ``"deepseek_v2"``, ``"llama4_vision"``, ``"deepseek"``, ``"vision"``
    or ``"vision_cohere"``: the module docstring says what each reads),
    named ``fn``: checks, then one launch. A factory rather than one shared body that thin functions call: a
    decoding step's host time pays for every Python call (ch-rope-gpu)."""
    base = _base(form)  # a vision tower's form (DINOv3's, CLVP's): its text form's rotation
    prefix = form in _PREFIX  # the last P = cos.shape[0] tokens rotated, the first T − P (class token, registers) not
    layout, out_layout = _LAYOUTS[base], _OUT_LAYOUTS.get(base)
    last = form in _LAST  # the last r features rotated, cos (…, T, r/2) one value a pair
    single = form == "single" or last  # one tensor, (x, cos, sin, unsqueeze_dim): Llama's form otherwise
    one_a_pair = base in ("pairs", "pairs_interleaved", "gptj")  # cos (…, T, D/2), one value a pair of all D features
    twice = base in ("half", "single", "cohere", "nanochat")  # cos holds each value twice, the kernel reads one: compare them
    gather = form in _GATHER  # CLVP's: the table (S, r) compared, before it is read at the position ids (_gather)
    in_a_row = base == "cohere"  # ... twice in a row (the kernel reads every other feature), not in two halves
    step = 2 if in_a_row else 1
    conj = base in _CONJ  # rotate by −θ
    qn = "x" if single else "tensor" if form == "gptj" else "q"  # the rotated tensor's name in messages

    def drop_in(q: Tensor, k: Tensor | None = None, cos: Tensor = None, sin: Tensor = None,
                unsqueeze_dim: int = 1) -> tuple[Tensor, Tensor] | Tensor:
        alone = k is None  # q alone (Gemma's form, or a call without k): the result is q's alone
        if (isinstance(unsqueeze_dim, bool) or not isinstance(unsqueeze_dim, numbers.Integral)
                or not (unsqueeze_dim in (1, 2) or unsqueeze_dim == 0 and isinstance(cos, Tensor) and cos.ndim == 2)):
            raise ValueError(f"{fn}: unsqueeze_dim must be 1 ({qn} is (B, H, T, D)), 2 ({qn} is (B, T, H, D)) or 0 with a "
                             f"2-d cos (T, ·) (as unsqueeze_dim=1), got unsqueeze_dim={unsqueeze_dim!r}")
        if not (isinstance(q, Tensor) and (alone or isinstance(k, Tensor)) and isinstance(cos, Tensor)
                and isinstance(sin, Tensor)):
            for name, x in ((qn, q), ("k", k), ("cos", cos), ("sin", sin)):
                if not isinstance(x, Tensor) and not (alone and name == "k"):
                    raise ValueError(f"{fn}: {name} must be a tensor, got type({name})={type(x).__name__}")
        if alone:
            if q.ndim != 4:
                raise ValueError(f"{fn}: {qn} must be 4-d, got {qn}.shape={tuple(q.shape)}")
            if unsqueeze_dim == 2:  # (B, T, H, D) -> the (B, H, T, D) view the kernel takes
                q = q.transpose(1, 2)
        else:
            if q.ndim != 4 or k.ndim != 4:
                raise ValueError(f"{fn}: q and k must be 4-d, got q.shape={tuple(q.shape)}, k.shape={tuple(k.shape)}")
            if unsqueeze_dim == 2:
                q, k = q.transpose(1, 2), k.transpose(1, 2)
        B, _, T, D = q.shape
        for name, x in (("cos", cos), ("sin", sin)):
            if not x.is_floating_point():
                raise ValueError(f"{fn}: {name} must be a floating-point tensor, as a Hugging Face rotary module returns "
                                 f"it, got {name}.dtype={x.dtype}")
        shape = cos.shape  # (a tensor's .shape builds a new object each time: read once)
        width = shape[-1] if shape else 0
        if one_a_pair:  # one value a pair, for the D/2 pairs of all D features
            width_ok, pairs = width * 2 == D, width
        elif prefix:  # (P, D): all D features rotated (DINOv3's function has no partial rotary), P tokens of T
            width_ok, pairs = width == D and D % 2 == 0 and len(shape) == 2 and 0 < shape[0] <= T, width // 2
        elif last:  # one value a pair, for the r/2 pairs of the last r features
            width_ok, pairs = 0 < width * 2 <= D, width
        else:  # r values, r even, r <= D: the first r features rotated, the rest passed through
            width_ok, pairs = width % 2 == 0 and 0 < width <= D, width // 2
        if (shape != sin.shape or len(shape) not in (2, 3) or not width_ok
                or (shape[-2] != T or len(shape) == 3 and shape[0] not in (1, B)) and not prefix):
            w, rule = ((D // 2, "one value per pair of the D features") if one_a_pair else
                       ("r/2", f"one value per pair of the last r features, r at most D = {D}") if last else
                       ("r", f"r even and at most D = {D}"))
            lay, shown = ("(B, T, H, D)", q.transpose(1, 2).shape) if unsqueeze_dim == 2 else ("(B, H, T, D)", q.shape)
            if prefix:
                raise ValueError(f"{fn}: cos and sin must both have shape (P, {D}) with 0 < P <= {T}, one table for the "
                                 f"batch of the last P tokens' angles (the image's patches; the first {T} − P, a class token "
                                 f"and registers, pass through), D even, for q of {lay} = {tuple(shown)}; got "
                                 f"cos.shape={tuple(cos.shape)}, sin.shape={tuple(sin.shape)}")
            raise ValueError(f"{fn}: cos and sin must both have shape ({T}, {w}) or (B or 1, {T}, {w}), {rule}, for {qn} of "
                             f"{lay} = {tuple(shown)}; got cos.shape={tuple(cos.shape)}, sin.shape={tuple(sin.shape)}")
        if twice and not gather:  # the kernel reads one copy of each value: the other must repeat it
            if torch.compiler.is_compiling():  # a graph cannot branch on data: the check becomes an assertion in it
                _assert_twice(fn, cos, sin, in_a_row, *(("(P, D)", "D") if prefix else ()))
            elif not cos.is_meta:  # (meta tensors, as in a model built on torch.device("meta"), hold no values to compare)
                _check_twice(fn, cos, sin, in_a_row)  # on the very tensors the model hands every layer (its cache's key)
        # the kernel reads ``pairs`` values of each row (the first, or every ``step``-th) straight from Hugging Face's
        # tensors: a slice would be one more tensor object for Python to build on every call (ch-rope-gpu)
        if last and 2 * pairs < D:  # the first D − r features pass through: the kernel rotates a view of the last r
            _check_whole(fn, qn, q, None, unsqueeze_dim)  # (in the caller's terms: the kernel's check would name the view)
            nope, q = q[..., :D - 2 * pairs], q[..., D - 2 * pairs:]
            qr = torch.cat((nope, _rope_qk_cos_sin(fn, q, None, cos, sin, layout, False, pairs, step, None, conj)[0]), -1)
            return qr.transpose(1, 2) if unsqueeze_dim == 2 else qr
        if prefix and shape[0] < T:  # the first T − P tokens pass through: the kernel rotates views of the last P
            _check_whole(fn, qn, q, k, unsqueeze_dim)
            p = T - shape[0]
            qr, kr = _rope_qk_cos_sin(fn, q[:, :, p:], k[:, :, p:], cos, sin, layout, False, pairs, step, None, conj)
            return torch.cat((q[:, :, :p], qr), 2), torch.cat((k[:, :, :p], kr), 2)
        qr, kr = _rope_qk_cos_sin(fn, q, k, cos, sin, layout, False, pairs, step, out_layout, conj)  # (positional: faster)
        if alone:
            return qr.transpose(1, 2) if unsqueeze_dim == 2 else qr
        if unsqueeze_dim == 2:
            qr, kr = qr.transpose(1, 2), kr.transpose(1, 2)
        return qr, kr

    if single:
        pair = drop_in

        def drop_in(x: Tensor, cos: Tensor, sin: Tensor, unsqueeze_dim: int = 1) -> Tensor:
            return pair(x, None, cos, sin, unsqueeze_dim)
    elif form == "deepseek":  # DeepSeek-V3's signature: position_ids (unused, as in theirs) before unsqueeze_dim
        pair = drop_in

        def drop_in(q: Tensor, k: Tensor | None = None, cos: Tensor = None, sin: Tensor = None, position_ids=None,
                    unsqueeze_dim: int = 1) -> tuple[Tensor, Tensor] | Tensor:
            return pair(q, k, cos, sin, unsqueeze_dim)

    elif form == "gptj":  # GPT-J's and CodeGen's signature: one tensor (B, T, H, D), then sin before cos
        pair = drop_in

        def drop_in(tensor: Tensor, sin: Tensor, cos: Tensor) -> Tensor:
            return pair(tensor, None, cos, sin, 2)
    elif prefix:  # DINOv3's signature, (q, k, cos, sin, **kwargs): k required, the keywords not read (as in theirs)
        pair = drop_in

        def drop_in(q: Tensor, k: Tensor, cos: Tensor, sin: Tensor, **kwargs) -> tuple[Tensor, Tensor]:
            if not isinstance(k, Tensor):  # (None would be taken as "q alone")
                raise ValueError(f"{fn}: k must be a tensor, got type(k)={type(k).__name__}")
            return pair(q, k, cos, sin, 1)
    elif gather:  # CLVP's signature, (q, k, v, cos, sin, position_ids, unsqueeze_dim=1): q, k and v turned by cos[position_ids]
        pair = drop_in

        def drop_in(q: Tensor, k: Tensor, v: Tensor, cos: Tensor, sin: Tensor, position_ids: Tensor,
                    unsqueeze_dim: int = 1) -> tuple[Tensor, Tensor, Tensor]:
            cos, sin = _gather(fn, q, k, v, cos, sin, position_ids, unsqueeze_dim)  # (B or 1, T, D), as theirs
            qr, kr = pair(q, k, cos, sin, unsqueeze_dim)  # (a second launch for v: the kernel turns two tensors)
            return qr, kr, pair(v, None, cos, sin, unsqueeze_dim)
    elif form == "edgetam_cross":  # EdgeTAM's: q by cos; in each of R frames of k, the last S tokens by cos_k (S, D)
        pair = drop_in

        def drop_in(q: Tensor, k: Tensor, cos: Tensor, sin: Tensor, cos_k: Tensor, sin_k: Tensor,
                    num_k_exclude_rope: int = 0, repeat_freqs_k: int = 1) -> tuple[Tensor, Tensor]:
            frames, per, m = _check_edgetam(fn, q, k, cos, sin, cos_k, sin_k, num_k_exclude_rope, repeat_freqs_k)
            if m and torch.compiler.is_compiling():  # the keys' table checked under its own name (the launches
                _assert_twice(fn, cos_k, sin_k, True, "(S, D)", "D", ("cos_k", "sin_k"))  # below would say cos)
            elif m and not cos_k.is_meta:
                _check_twice(fn, cos_k, sin_k, True, ("cos_k", "sin_k"))
            qr = pair(q, None, cos, sin, 1)
            if m == 0:  # no key turned: theirs returns the excluded keys, a view of k
                return qr, k[:, :, k.shape[2] - num_k_exclude_rope:]
            t = per - cos_k.shape[-2]  # each frame's first t tokens pass through, its last S turn (views: nothing copied)
            parts = []
            for i in range(frames):
                parts += [k[:, :, i * per:i * per + t], pair(k[:, :, i * per + t:(i + 1) * per], None, cos_k, sin_k, 1)]
            parts.append(k[:, :, m:])
            return qr, torch.cat(parts, 2)
    elif form in _SAM:  # SAM 2's signature: q and k of their own lengths, k's tokens tiled, its last n passed through
        pair = drop_in

        def drop_in(q: Tensor, k: Tensor, cos: Tensor, sin: Tensor, num_k_exclude_rope: int = 0,
                    repeat_freqs_k: bool = False) -> tuple[Tensor, Tensor]:
            tiles, m = _check_sam(fn, q, k, cos, sin, num_k_exclude_rope, repeat_freqs_k)
            T = q.shape[2]
            if tiles == 0:  # no key turned (theirs returns a concatenation: a new tensor, k's values)
                return pair(q, None, cos, sin, 1), k.clone()
            if T == 1 and m > 1:  # one query token: its one row broadcast over every key, as in theirs (stride 0)
                kr = pair(k[:, :, :m], None, *(x.expand(*x.shape[:-2], m, x.shape[-1]) for x in (cos, sin)), 1)
                qr, krs = pair(q, None, cos, sin, 1), [kr]
            else:  # the first tile of keys in q's launch, each other tile a launch of its own (views: nothing copied)
                qr, kr = pair(q, k[:, :, :T], cos, sin, 1)
                krs = [kr] + [pair(k[:, :, i * T:(i + 1) * T], None, cos, sin, 1) for i in range(1, tiles)]
            if m == k.shape[2] and len(krs) == 1:  # every key turned, in one launch: nothing to join
                return qr, krs[0]
            return qr, torch.cat((*krs, k[:, :, m:]), 2)
    elif form in _COMPLEX:  # Meta's signature, (xq, xk, freqs_cis): freqs_cis complex, its parts read where they lie
        pair = drop_in
        dim = _COMPLEX[form]
        names = ("query", "key", "freqs_ci") if form == "llama4_vision" else ("xq", "xk", "freqs_cis")

        if form == "llama4_vision":  # (its attention passes freqs_ci by keyword)
            def drop_in(query: Tensor, key: Tensor, freqs_ci: Tensor) -> tuple[Tensor, Tensor]:
                f = torch.view_as_real(_check_complex(fn, names, query, key, freqs_ci, dim, True))
                return pair(query, key, f[..., 0], f[..., 1], dim)
        else:
            def drop_in(xq: Tensor, xk: Tensor, freqs_cis: Tensor) -> tuple[Tensor, Tensor]:
                f = torch.view_as_real(_check_complex(fn, names, xq, xk, freqs_cis, dim, False))
                return pair(xq, xk, f[..., 0], f[..., 1], dim)  # (…, T, D/2, 2): cos and sin side by side, stride 2
    elif form in _VISION:  # a vision tower's signature, (q, k, cos, sin): q (T, H, D) or (B, T, H, D), cos (T, r)
        pair = drop_in

        def drop_in(q: Tensor, k: Tensor, cos: Tensor, sin: Tensor) -> tuple[Tensor, Tensor]:
            if _check_vision(fn, q, k, cos, sin):  # (T, H, D): one sequence of patches, (1, T, H, D) to the kernel
                qr, kr = pair(q[None], k[None], cos, sin, 2)
                return qr[0], kr[0]
            return pair(q, k, cos, sin, 2)

    drop_in.__name__ = drop_in.__qualname__ = fn
    drop_in.__module__ = "ropebook.kernels.hf"  # where it is imported from: pickle and help() look there, and
    # doctest runs its example there (it counts a function as the module's that __module__ names)
    drop_in.__doc__ = doc
    return drop_in
