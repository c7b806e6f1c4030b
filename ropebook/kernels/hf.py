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

Chapter: ``ch-rope-gpu``.
"""

from __future__ import annotations

import contextlib
import numbers
import weakref

import torch
from torch import Tensor

from ropebook._rotation import apply_cos_sin as _apply_cos_sin_torch
from ropebook._validate import _check_bool
from ropebook.kernels.autograd import DTYPES, _rope_qk_cos_sin

__all__ = ["hf_apply_rotary_pos_emb", "hf_apply_rotary_pos_emb_interleaved", "hf_apply_rotary_pos_emb_pairs",
           "hf_apply_rotary_pos_emb_single", "hf_apply_rotary_pos_emb_cohere", "hf_apply_rotary_pos_emb_interleave",
           "hf_apply_rotary_pos_emb_pairs_interleaved", "hf_apply_rotary_pos_emb_gptj", "hf_apply_rotary_pos_emb_nanochat",
           "hf_apply_rotary_pos_emb_deepseek_v4", "hf_apply_rotary_pos_emb_dinov3", "hf_apply_rotary_pos_emb_clvp",
           "hf_apply_rotary_pos_emb_vision", "hf_apply_rotary_emb", "hf_apply_rotary_emb_deepseek_v2",
           "hf_vision_apply_rotary_emb", "hf_apply_rotary_pos_emb_2d", "hf_apply_rotary_pos_emb_2d_cross_attn",
           "hf_apply_rotary_pos_emb_vision_cohere", "patch_hf"]

# the last two (cos, sin) pairs compared: weak references to them, their versions, how (two: EdgeTAM's memory
# attention hands every layer q's table and the keys' table, which would push each other out of one place)
_checked: list = []


def _twice(x: Tensor, in_a_row: bool) -> tuple[Tensor, Tensor]:
    """The two copies of each value in a Hugging Face cos or sin: the halves (Llama's ``cat((freqs, freqs), -1)``)
    or, ``in_a_row``, the even and the odd features (Cohere's ``repeat_interleave(freqs, 2, -1)``)."""
    if in_a_row:
        return x[..., 0::2], x[..., 1::2]
    h = x.shape[-1] // 2
    return x[..., :h], x[..., h:]


def _rule(name: str, in_a_row: bool, h) -> str:
    """What ``_twice``'s copies must satisfy, for a message (``h``: r/2, or its name)."""
    if in_a_row:
        return (f"in a row, {name}[..., 0::2] == {name}[..., 1::2], as Cohere's rotary module builds it "
                "(repeat_interleave(freqs, 2, -1))")
    return f"{name}[..., :{h}] == {name}[..., {h}:], as Hugging Face's rotary modules build it (cat((freqs, freqs), -1))"


def _check_twice(fn: str, cos: Tensor, sin: Tensor, in_a_row: bool, names: tuple = ("cos", "sin")) -> None:
    """Hugging Face's rotary modules hold each value of cos and sin twice (``_twice``). The kernel reads one
    copy, so a cos or sin whose copies differ would give a silently wrong result: compare them. One model
    forward pass hands the same cos and sin to every layer, so the comparison (a device sync on CUDA) runs
    once per pass, not once per layer (for up to two tables a pass); it is skipped while a CUDA graph is being
    captured, where a sync is not allowed (the eager warm-up before capture has compared them). ``names``: the
    caller's names for the two tensors, in messages."""
    for c_ref, s_ref, c_ver, s_ver, how in _checked:
        if (c_ref() is cos and s_ref() is sin and c_ver == _version(cos) and s_ver == _version(sin)
                and how == in_a_row):
            return
    if cos.is_cuda and torch.cuda.is_current_stream_capturing():
        return
    for name, x in zip(names, (cos, sin)):
        first, second = _twice(x, in_a_row)
        if not torch.equal(first, second):
            if not torch.isfinite(x).all():  # (NaN never equals itself: "halves differ" would mislead)
                bad = torch.nonzero(~torch.isfinite(x))[0].tolist()
                raise ValueError(f"{fn}: {name} must be finite (the cos or sin of an angle), got "
                                 f"{name}[{', '.join(map(str, bad))}] = {x[tuple(bad)].item()}")
            raise ValueError(
                f"{fn}: {name} must hold each value twice, {_rule(name, in_a_row, x.shape[-1] // 2)}; its "
                f"{'even and odd features' if in_a_row else 'halves'} differ, "
                f"largest difference {(first - second).abs().max().item():.3g}")
    _checked[:] = [*_checked[-1:], (weakref.ref(cos), weakref.ref(sin), _version(cos), _version(sin), in_a_row)]


def _assert_twice(fn: str, cos: Tensor, sin: Tensor, in_a_row: bool, shape: str = "(…, T, r)", r: str = "r",
                  names: tuple = ("cos", "sin")) -> None:
    """``_check_twice`` for a graph that ``torch.compile`` traces, where Python cannot read a comparison's
    result: an assertion node (``torch._assert_async``) that fails when the compiled code runs, without
    a device sync on CUDA (a device-side assert there: the error surfaces at the next synchronization).
    Its message names r, not its value: a value read from the shape would make the compiler specialize on
    it (a recompilation for each rotary width under ``dynamic=True``)."""
    for name, x in zip(names, (cos, sin)):
        first, second = _twice(x, in_a_row)
        torch._assert_async((first == second).all(), f"{fn}: {name} {shape} must hold each value twice, "
                                                     f"{_rule(name, in_a_row, f'{r}/2')}")


def _version(x: Tensor):
    """The tensor's in-place version counter; None for an inference tensor (torch.inference_mode), which
    has none: the same inference tensor is then compared once, even if changed in place (no Hugging Face
    model changes its cos or sin in place)."""
    return None if x.is_inference() else x._version


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
    drop_in.__doc__ = doc
    return drop_in


def _check_whole(fn: str, qn: str, q: Tensor, k: Tensor | None, unsqueeze_dim: int) -> None:
    """Before the kernel is handed views of q and k (some of their features or tokens), what its own checks would
    report in terms of the views: q's dtype, and k matching q in batch, tokens, head_dim, dtype and device."""
    lay, t = ("(B, T, H, D)", lambda x: x.transpose(1, 2)) if unsqueeze_dim == 2 else ("(B, H, T, D)", lambda x: x)
    if q.dtype not in DTYPES:
        raise ValueError(f"{fn}: {qn} must be a floating-point tensor {lay}, dtype in {[str(d) for d in DTYPES]}, "
                         f"got {qn}.shape={tuple(t(q).shape)}, {qn}.dtype={q.dtype}")
    if k is not None and (k.shape[0] != q.shape[0] or k.shape[2:] != q.shape[2:] or k.dtype != q.dtype
                          or k.device != q.device):
        raise ValueError(f"{fn}: k must match q in batch, tokens, head_dim, dtype and device, got "
                         f"q.shape={tuple(t(q).shape)} {q.dtype} {q.device}, k.shape={tuple(t(k).shape)} {k.dtype} {k.device}")


def _check_callers(fn: str, named, dim: int) -> tuple[str, int]:
    """The tensors a drop-in with its own signature (CLVP's, Meta's) rotates, checked in the caller's terms and
    layout (``dim`` 2: ``(B, T, H, D)``; 1: ``(B, H, T, D)``): ``named`` holds (name, value) pairs, q first, then
    those that must match it (k, v). Each a 4-d tensor, q of a dtype the kernel takes, the others matching q in
    batch, tokens, head_dim, dtype and device (their heads may differ). Returns the layout's name and the token
    axis."""
    for name, x in named:
        if not isinstance(x, Tensor):
            raise ValueError(f"{fn}: {name} must be a tensor, got type({name})={type(x).__name__}")
    lay, t = ("(B, T, H, D)", 1) if dim == 2 else ("(B, H, T, D)", 2)
    (qn, q), names = named[0], [name for name, _ in named]
    if any(x.ndim != 4 for _, x in named):
        raise ValueError(f"{fn}: {', '.join(names[:-1])} and {names[-1]} must be 4-d {lay}, got "
                         + ", ".join(f"{name}.shape={tuple(x.shape)}" for name, x in named))
    if q.dtype not in DTYPES:
        raise ValueError(f"{fn}: {qn} must be a floating-point tensor {lay}, dtype in {[str(d) for d in DTYPES]}, "
                         f"got {qn}.shape={tuple(q.shape)}, {qn}.dtype={q.dtype}")
    for name, x in named[1:]:
        if (x.shape[0] != q.shape[0] or x.shape[t] != q.shape[t] or x.shape[3] != q.shape[3] or x.dtype != q.dtype
                or x.device != q.device):
            raise ValueError(f"{fn}: {name} must match {qn} in batch, tokens, head_dim, dtype and device ({lay}), got "
                             f"{qn}.shape={tuple(q.shape)} {q.dtype} {q.device}, {name}.shape={tuple(x.shape)} {x.dtype} "
                             f"{x.device}")
    return lay, t


def _gather(fn: str, q, k, v, cos, sin, position_ids, unsqueeze_dim) -> tuple[Tensor, Tensor]:
    """CLVP's arguments checked in the caller's terms (the drop-in it wraps would name q for v, and the gathered
    tensors for the table), the table's halves compared (once per call: CLVP's attention takes a new cos in every
    layer, so on CUDA a sync per layer), and ``cos[position_ids]``, ``sin[position_ids]``: the op their function
    runs, so an index out of range fails as it does in theirs (an IndexError on the CPU; a device-side assert on
    CUDA), and a negative one counts from the end, as in theirs."""
    if isinstance(unsqueeze_dim, bool) or not isinstance(unsqueeze_dim, numbers.Integral) or unsqueeze_dim not in (1, 2):
        raise ValueError(f"{fn}: unsqueeze_dim must be 1 (q, k and v (B, H, T, D)) or 2 ((B, T, H, D)), got "
                         f"unsqueeze_dim={unsqueeze_dim!r}")
    lay, t = _check_callers(fn, (("q", q), ("k", k), ("v", v)), unsqueeze_dim)
    for name, x in (("cos", cos), ("sin", sin), ("position_ids", position_ids)):
        if not isinstance(x, Tensor):
            raise ValueError(f"{fn}: {name} must be a tensor, got type({name})={type(x).__name__}")
    B, T, D = q.shape[0], q.shape[t], q.shape[3]
    shape = cos.shape
    if shape != sin.shape or len(shape) != 2 or shape[1] != D or D % 2 or not (cos.is_floating_point()
                                                                            and sin.is_floating_point()):
        raise ValueError(f"{fn}: cos and sin must both be floating-point tables of shape (S, {D}), the angles of S "
                         f"positions for all D = {D} features of q {lay} = {tuple(q.shape)} (their function rotates every "
                         f"feature it is given), D even; got cos.shape={tuple(cos.shape)} {cos.dtype}, "
                         f"sin.shape={tuple(sin.shape)} {sin.dtype}")
    if (position_ids.dtype not in (torch.int64, torch.int32) or position_ids.ndim != 2
            or position_ids.shape[1] != T or position_ids.shape[0] not in (1, B)):
        raise ValueError(f"{fn}: position_ids must be an int64 or int32 tensor of shape ({'1' if B == 1 else f'{B} or 1'}, {T}), the row of cos "
                         f"for each token of q {lay} = {tuple(q.shape)}; got position_ids.shape={tuple(position_ids.shape)}, "
                         f"position_ids.dtype={position_ids.dtype}")
    if position_ids.device != cos.device and position_ids.device.type != "cpu":
        raise ValueError(f"{fn}: position_ids must be on cos's device ({cos.device}) or the CPU, got "
                         f"position_ids.device={position_ids.device}")
    if torch.compiler.is_compiling():
        _assert_twice(fn, cos, sin, False, "(S, D)", "D")
    elif not cos.is_meta:
        _check_twice(fn, cos, sin, False)
    return cos[position_ids], sin[position_ids]


def _check_2d(fn: str, q, k, cos, sin, n) -> int:
    """What SAM 2's and EdgeTAM's functions share, checked in the caller's terms (the drop-in they wrap would name
    a part of k q): q ``(B, Hq, Tq, D)`` and k ``(B, Hk, Tk, D)``, one dtype and device, their heads and tokens
    their own; cos and sin one table ``(Tq, D)`` or ``(1, Tq, D)`` for the batch (their functions broadcast it over
    q's heads, so a batch of tables would be read as one per head), all D features; ``num_k_exclude_rope`` an
    integer n from 0 to Tk, the last n keys passed through (the object pointers). Returns m = Tk − n."""
    for name, x in (("q", q), ("k", k), ("cos", cos), ("sin", sin)):
        if not isinstance(x, Tensor):
            raise ValueError(f"{fn}: {name} must be a tensor, got type({name})={type(x).__name__}")
    if q.ndim != 4 or k.ndim != 4:
        raise ValueError(f"{fn}: q and k must be 4-d (B, H, T, D), as SAM's attention hands them over, got "
                         f"q.shape={tuple(q.shape)}, k.shape={tuple(k.shape)}")
    B, T, D = q.shape[0], q.shape[2], q.shape[3]
    if q.dtype not in DTYPES:
        raise ValueError(f"{fn}: q must be a floating-point tensor (B, H, T, D), dtype in {[str(d) for d in DTYPES]}, "
                         f"got q.shape={tuple(q.shape)}, q.dtype={q.dtype}")
    if k.shape[0] != B or k.shape[3] != D or k.dtype != q.dtype or k.device != q.device:
        raise ValueError(f"{fn}: k must match q in batch, head_dim, dtype and device (its heads and tokens may differ), "
                         f"got q.shape={tuple(q.shape)} {q.dtype} {q.device}, k.shape={tuple(k.shape)} {k.dtype} {k.device}")
    if D % 2:
        raise ValueError(f"{fn}: q's head_dim must be even (pairs of features turn together), got "
                         f"q.shape={tuple(q.shape)}, head_dim={D}")
    shape = cos.shape
    if (shape != sin.shape or len(shape) not in (2, 3) or shape[-2:] != (T, D) or len(shape) == 3 and shape[0] != 1
            or not (cos.is_floating_point() and sin.is_floating_point())):
        raise ValueError(f"{fn}: cos and sin must both be floating-point tables of shape ({T}, {D}) or (1, {T}, {D}), "
                         f"one for the batch, the angles of q's {T} tokens for all D = {D} features (their function "
                         f"rotates every feature), for q (B, H, T, D) = {tuple(q.shape)}; got "
                         f"cos.shape={tuple(cos.shape)} {cos.dtype}, sin.shape={tuple(sin.shape)} {sin.dtype}")
    Tk = k.shape[2]
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or not 0 <= n <= Tk:
        raise ValueError(f"{fn}: num_k_exclude_rope must be an integer from 0 to k's {Tk} tokens (the last ones pass "
                         f"through unturned), got num_k_exclude_rope={n!r}")
    return Tk - int(n)


def _check_sam(fn: str, q, k, cos, sin, n, repeat) -> tuple[int, int]:
    """SAM 2's arguments (``_check_2d``), and the first m = Tk − n keys turned by the table: m = Tq, or with
    ``repeat_freqs_k`` (or Tq = 1, which theirs broadcasts) a multiple of Tq, the table tiled (the memories of
    m / Tq frames, each of the image's Tq positions). Returns the number of tiles and m."""
    m = _check_2d(fn, q, k, cos, sin, n)
    _check_bool(fn, repeat, "repeat_freqs_k")
    T = q.shape[2]
    tiles = m // T if T else 0
    if m and (tiles * T != m or tiles != 1 and not (repeat or T == 1)):
        raise ValueError(f"{fn}: the keys turned, the first Tk − num_k_exclude_rope = {k.shape[2]} − {n} = {m}, must be "
                         f"q's {T} tokens, or with repeat_freqs_k=True a multiple of them (the memories of several "
                         f"frames, each turned by the same table); got q.shape={tuple(q.shape)}, k.shape={tuple(k.shape)}, "
                         f"repeat_freqs_k={repeat!r}")
    return tiles, m


def _check_edgetam(fn: str, q, k, cos, sin, cos_k, sin_k, n, frames) -> tuple[int, int, int]:
    """EdgeTAM's cross-attention arguments (``_check_2d``); cos_k and sin_k one table ``(S, D)`` or ``(1, S, D)``
    for the keys; ``repeat_freqs_k`` R a positive integer, the frames of memory: the first m = Tk − n keys are R
    frames of m / R tokens each, of which the last S are turned by the table and the first m / R − S (the frame's
    global latents) pass through. Returns R, the tokens of a frame, and m."""
    m = _check_2d(fn, q, k, cos, sin, n)
    for name, x in (("cos_k", cos_k), ("sin_k", sin_k)):
        if not isinstance(x, Tensor):
            raise ValueError(f"{fn}: {name} must be a tensor, got type({name})={type(x).__name__}")
    D, shape = q.shape[3], cos_k.shape
    if (shape != sin_k.shape or len(shape) not in (2, 3) or shape[-1] != D or len(shape) == 3 and shape[0] != 1
            or not (cos_k.is_floating_point() and sin_k.is_floating_point())):
        raise ValueError(f"{fn}: cos_k and sin_k must both be floating-point tables of shape (S, {D}) or (1, S, {D}), "
                         f"one for the batch, the angles of the S turned tokens of each frame of keys, all D = {D} "
                         f"features; got cos_k.shape={tuple(cos_k.shape)} {cos_k.dtype}, sin_k.shape={tuple(sin_k.shape)} "
                         f"{sin_k.dtype}")
    if m == 0:  # no key turned: theirs returns before it reads repeat_freqs_k
        return 0, 0, 0
    if isinstance(frames, bool) or not isinstance(frames, numbers.Integral) or frames < 1:
        raise ValueError(f"{fn}: repeat_freqs_k must be a positive integer, the frames of memory in k, got "
                         f"repeat_freqs_k={frames!r}")
    frames, S = int(frames), shape[-2]
    if m % frames or m // frames < S:
        raise ValueError(f"{fn}: the keys turned, the first Tk − num_k_exclude_rope = {k.shape[2]} − {n} = {m}, must be "
                         f"repeat_freqs_k = {frames} frames of equal length, each at least cos_k's {S} tokens (its last "
                         f"{S} turned, the rest passed through); got k.shape={tuple(k.shape)}, cos_k.shape={tuple(shape)}")
    return frames, m // frames, m


def _check_complex(fn: str, names, q, k, freqs, dim: int, vision: bool) -> Tensor:
    """Meta's complex form's arguments, checked in the caller's terms (the drop-in it wraps would name q, k, cos and
    sin): q and k 4-d, ``(B, T, H, D)`` (``dim`` 2, Llama 4's) or ``(B, H, T, D)`` (1, DeepSeek-V2's), k matching q
    in batch, tokens, head_dim, dtype and device; freqs complex, ``(B or 1, T, D/2)``, or for Llama 4's vision tower
    any shape of T·D/2 values, which its function views as ``(1, T, 1, D/2)`` (one table for the batch). Returns
    freqs as ``(B or 1, T, D/2)``."""
    qn, kn, fn_ = names
    lay, t = _check_callers(fn, ((qn, q), (kn, k)), dim)
    if not isinstance(freqs, Tensor):
        raise ValueError(f"{fn}: {fn_} must be a tensor, got type({fn_})={type(freqs).__name__}")
    B, T, D = q.shape[0], q.shape[t], q.shape[3]
    shape = freqs.shape
    if vision:
        ok = D % 2 == 0 and freqs.numel() == T * D // 2
        want = f"{T * D // 2} values, (T, D/2) = ({T}, {D // 2}) in any shape its function views as (1, T, 1, D/2)"
    else:
        ok = D % 2 == 0 and len(shape) == 3 and shape[1:] == (T, D // 2) and shape[0] in (1, B)
        want = f"shape ({'1' if B == 1 else f'{B} or 1'}, {T}, {D // 2}), (B or 1, T, D/2)"
    if not freqs.is_complex() or not ok:
        raise ValueError(f"{fn}: {fn_} must be a complex tensor of {want}: the rotation e^(i m θ) of each pair "
                         f"(2i, 2i + 1) of {qn} {lay} = {tuple(q.shape)}, D even; got {fn_}.shape={tuple(shape)}, "
                         f"{fn_}.dtype={freqs.dtype}")
    if torch.is_grad_enabled() and freqs.requires_grad:
        raise ValueError(f"{fn}: the kernel does not differentiate through {fn_}; got {fn_} that requires grad")
    if freqs.device != q.device:
        if dim == 2 and not vision:  # (Llama 4's attention moves it before the call; its function does not)
            raise ValueError(f"{fn}: {fn_} must be on {qn}'s device, {q.device}, got {fn_}.device={freqs.device}")
        freqs = freqs.to(q.device)  # (DeepSeek-V2's function and the vision tower's move it themselves)
    # torch's lazy conjugate and negative bits (freqs_cis.conj() is a view): view_as_real would refuse the first and
    # keep the second, which the kernel, reading memory, would not see. Resolved: a copy, only where a bit is set
    freqs = freqs.resolve_conj().resolve_neg()
    return freqs.reshape(1, T, D // 2) if vision else freqs


def _check_vision(fn: str, q, k, cos, sin) -> bool:
    """The shapes a vision tower's ``apply_rotary_pos_emb_vision`` takes, checked in the caller's terms (the
    drop-in it wraps would name the (B, H, T, D) view it hands the kernel): q and k ``(T, H, D)``, the patches of
    every image in one sequence, with cos and sin ``(T, r)``; or ``(B, T, H, D)`` with cos and sin ``(T, r)`` or
    ``(B or 1, T, r)``. r even, at most D. Returns whether q is 3-d."""
    for name, x in (("q", q), ("k", k), ("cos", cos), ("sin", sin)):
        if not isinstance(x, Tensor):
            raise ValueError(f"{fn}: {name} must be a tensor, got type({name})={type(x).__name__}")
    if q.ndim not in (3, 4) or k.ndim != q.ndim:
        raise ValueError(f"{fn}: q and k must both be (T, H, D), a vision tower's patches in one sequence, or (B, T, H, D), "
                         f"got q.shape={tuple(q.shape)}, k.shape={tuple(k.shape)}")
    T, D = q.shape[-3], q.shape[-1]
    if k.shape[-3] != T or k.shape[-1] != D or k.shape[:-3] != q.shape[:-3]:
        raise ValueError(f"{fn}: k must match q in {'batch, ' if q.ndim == 4 else ''}tokens and head_dim, got "
                         f"q.shape={tuple(q.shape)}, k.shape={tuple(k.shape)}")
    shape = cos.shape
    r = shape[-1] if shape else 0
    batch = len(shape) == 2 or len(shape) == 3 and q.ndim == 4 and shape[0] in (1, q.shape[0])
    if shape != sin.shape or not batch or shape[-2] != T or r % 2 or not 0 < r <= D:
        lay, also = ("(T, H, D)", "") if q.ndim == 3 else ("(B, T, H, D)", f" or (B or 1, {T}, r)")
        raise ValueError(f"{fn}: cos and sin must both have shape ({T}, r){also}, r even and at most D = {D}, for q of "
                         f"{lay} = {tuple(q.shape)}; got cos.shape={tuple(cos.shape)}, sin.shape={tuple(sin.shape)}")
    return q.ndim == 3


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


_DROP_INS = {"half": hf_apply_rotary_pos_emb, "interleaved": hf_apply_rotary_pos_emb_interleaved,
             "pairs": hf_apply_rotary_pos_emb_pairs, "single": hf_apply_rotary_pos_emb_single,
             "cohere": hf_apply_rotary_pos_emb_cohere, "pairs_interleaved": hf_apply_rotary_pos_emb_pairs_interleaved,
             "gptj": hf_apply_rotary_pos_emb_gptj, "nanochat": hf_apply_rotary_pos_emb_nanochat,
             "deepseek_v4": hf_apply_rotary_pos_emb_deepseek_v4, "dinov3": hf_apply_rotary_pos_emb_dinov3,
             "clvp": hf_apply_rotary_pos_emb_clvp, "sam2d": hf_apply_rotary_pos_emb_2d,
             "edgetam_cross": hf_apply_rotary_pos_emb_2d_cross_attn, "llama4": hf_apply_rotary_emb,
             "deepseek_v2": hf_apply_rotary_emb_deepseek_v2, "llama4_vision": hf_vision_apply_rotary_emb, "deepseek": hf_apply_rotary_pos_emb_interleave,
             "vision": hf_apply_rotary_pos_emb_vision, "vision_cohere": hf_apply_rotary_pos_emb_vision_cohere}
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
