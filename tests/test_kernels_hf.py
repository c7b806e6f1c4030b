"""The kernel inside Hugging Face models: the drop-ins for each form of apply_rotary_pos_emb that transformers
defines (Llama's, GLM's, Cohere's, GPT-J's, DeepSeek's, the vision towers', Meta's complex form, SAM 2's and
EdgeTAM's, CLVP's, ...) against the modelling module's own function, and patch_hf in small models.

As in test_kernels.py (the kernel against rb.apply_rope's torch path, and everything else about it): without
CUDA the kernel runs on the CPU under the Triton interpreter; with CUDA the same tests run natively.
"""

import os
from unittest import mock

import pytest
import torch

pytest.importorskip("triton")

import ropebook as rb  # noqa: E402
from kernel_cases import DEVICE, assert_close_dtype, interpret_on_cpu, qk, tiny_llama  # noqa: E402
from ropebook import kernels as K  # noqa: E402


@pytest.fixture(autouse=True)
def _interpreter_on_cpu(monkeypatch):
    interpret_on_cpu(monkeypatch)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("unsqueeze_dim", [1, 2])
@pytest.mark.parametrize("per_sequence", [False, True])
def test_hf_drop_in_is_hf_formula_rounded_once(dtype, unsqueeze_dim, per_sequence):
    """Against Hugging Face's own apply_rotary_pos_emb run in float64 on the same inputs: one rounding."""
    pytest.importorskip("transformers")
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    q, k = qk(B=2, T=5, HQ=4, HK=2, D=16, dtype=dtype)  # (B, H, T, D) views
    positions = torch.tensor([[3, 4, 5, 6, 7], [90, 91, 92, 93, 94]] if per_sequence else [[0, 1, 2, 3, 4]])
    c, s = rb.rope_cos_sin(positions, 16)  # (B or 1, T, 8) float32
    cos, sin = torch.cat((c, c), -1).to(DEVICE, dtype), torch.cat((s, s), -1).to(DEVICE, dtype)  # HF's (B, T, D)
    if unsqueeze_dim == 2:
        q, k = q.transpose(1, 2), k.transpose(1, 2)  # (B, T, H, D)
    qr, kr = K.hf_apply_rotary_pos_emb(q, k, cos, sin, unsqueeze_dim=unsqueeze_dim)
    want_q, want_k = apply_rotary_pos_emb(q.double(), k.double(), cos.double(), sin.double(), unsqueeze_dim=unsqueeze_dim)
    assert_close_dtype(qr, want_q.to(dtype))
    assert_close_dtype(kr, want_k.to(dtype))
    assert (qr.stride(), kr.stride()) == (q.stride(), k.stride())  # in q's layout: the model's next view is no copy


def test_patch_hf_in_a_tiny_llama():
    """A 2-layer Llama with random weights: the same logits, the same greedy tokens through a KV cache
    (decoding steps, each at its own offset), the same gradients; the module's function restored after."""
    import transformers.models.llama.modeling_llama as llama

    model = tiny_llama()
    ids = torch.randint(0, 97, (2, 9), generator=torch.Generator().manual_seed(1)).to(DEVICE)
    mask = torch.ones_like(ids)
    original = llama.apply_rotary_pos_emb
    launches, plans = [], []  # every launch runs a plan; a call that repeats a signature reuses one
    from ropebook.kernels import rope_triton

    real_run, real_launch = rope_triton.Plan.run, rope_triton.launch

    def counting(*a, **kw):
        launches.append(1)
        return real_run(*a, **kw)

    def planning(*a, **kw):
        plans.append(1)
        return real_launch(*a, **kw)

    with torch.no_grad():
        want = model(ids).logits
        want_tokens = model.generate(ids, attention_mask=mask, max_new_tokens=4, do_sample=False, pad_token_id=0)
    with K.patch_hf(llama), mock.patch.object(rope_triton.Plan, "run", counting), \
            mock.patch.object(rope_triton, "launch", planning):
        with torch.no_grad():
            got = model(ids).logits
            got_tokens = model.generate(ids, attention_mask=mask, max_new_tokens=4, do_sample=False, pad_token_id=0)
        model(ids, labels=ids).loss.backward()
        got_grads = [p.grad.clone() for p in model.parameters()]
    assert llama.apply_rotary_pos_emb is original
    assert len(launches) >= 2 * (1 + 4) + 2  # 2 layers: the forward, 4 generation steps (prefill + 3), backward
    assert len(plans) < len(launches) - 2  # the second layer, and decoding steps after the first, repeat a plan
    model.zero_grad()
    model(ids, labels=ids).loss.backward()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert torch.equal(got_tokens, want_tokens)
    for g, p in zip(got_grads, model.parameters()):
        torch.testing.assert_close(g, p.grad, rtol=1e-4, atol=1e-6)


def test_hf_drop_in_compares_halves_once_per_forward_pass(monkeypatch):
    """The halves check syncs on CUDA, so it runs once per (cos, sin) pair that a forward pass hands every
    layer, and again only when they change."""
    import transformers.models.llama.modeling_llama as llama

    calls = []
    real_equal = torch.equal
    monkeypatch.setattr(torch, "equal", lambda a, b: calls.append(1) or real_equal(a, b))
    model = tiny_llama()
    ids = torch.randint(0, 97, (1, 6), generator=torch.Generator().manual_seed(2)).to(DEVICE)
    with torch.no_grad(), K.patch_hf(llama):
        model(ids)
        assert len(calls) == 2  # cos and sin, once, for 2 layers
        model(ids)
        assert len(calls) == 4  # a new forward pass: new tensors, compared again
    with torch.inference_mode(), K.patch_hf(llama):  # inference tensors have no version counter
        want = model(ids).logits
    torch.testing.assert_close(want, model(ids).logits.detach(), rtol=1e-5, atol=1e-6)
    assert len(calls) == 6
    q, k = qk(B=1, T=3, HQ=2, HK=1, D=8)
    c, s = rb.rope_cos_sin(torch.arange(3), 8)
    cos, sin = torch.cat((c, c), -1).to(DEVICE), torch.cat((s, s), -1).to(DEVICE)
    K.hf_apply_rotary_pos_emb(q, k, cos, sin)
    cos[:, 0] += 1.0  # changed in place: its version moves on, so it is compared again, and refused
    with pytest.raises(ValueError, match=r"cos must hold each value twice.*halves differ"):
        K.hf_apply_rotary_pos_emb(q, k, cos, sin)


@pytest.mark.parametrize("case", ["cos-shape", "odd width", "pairs width", "partial halves", "sin-shape", "unsqueeze",
                                  "unsqueeze 0, 3-d cos", "ndim", "sin-halves", "module", "integer cos", "nan sin",
                                  "cohere halves", "cohere sin in a row", "single halves"])
def test_hf_drop_in_bad_input_message(case):
    q, k = qk(B=1, T=3, HQ=2, HK=1, D=8)
    c, s = rb.rope_cos_sin(torch.arange(3), 8)
    cos, sin = torch.cat((c, c), -1).to(DEVICE), torch.cat((s, s), -1).to(DEVICE)  # (T, D)
    calls = {
        "cos-shape": (lambda: K.hf_apply_rotary_pos_emb(q, k, cos[:, :4], sin), r"cos and sin must both have shape \(3, r\).*at most D = 8.*cos.shape=\(3, 4\)"),
        "odd width": (lambda: K.hf_apply_rotary_pos_emb(q, k, cos[:, :5], sin[:, :5]), r"r even.*cos.shape=\(3, 5\)"),
        "pairs width": (lambda: K.hf_apply_rotary_pos_emb_pairs(q, k, cos, sin), r"hf_apply_rotary_pos_emb_pairs: cos and sin must both have shape \(3, 4\).*one value per pair.*cos.shape=\(3, 8\)"),
        "partial halves": (lambda: K.hf_apply_rotary_pos_emb(q, k, cos[:, :4], sin[:, :4]), r"cos must hold each value twice, cos\[..., :2\] == cos\[..., 2:\]"),
        "sin-shape": (lambda: K.hf_apply_rotary_pos_emb(q, k, cos, sin[:2]), r"sin.shape=\(2, 8\)"),
        "unsqueeze": (lambda: K.hf_apply_rotary_pos_emb(q, k, cos, sin, unsqueeze_dim=3), r"unsqueeze_dim must be 1.*got unsqueeze_dim=3"),
        "unsqueeze 0, 3-d cos": (lambda: K.hf_apply_rotary_pos_emb(q, k, cos[None], sin[None], unsqueeze_dim=0),
                                 r"or 0 with a 2-d cos.*got unsqueeze_dim=0"),
        "ndim": (lambda: K.hf_apply_rotary_pos_emb(q[0], k, cos, sin), r"q and k must be 4-d, got q.shape=\(2, 3, 8\)"),
        "sin-halves": (lambda: K.hf_apply_rotary_pos_emb(q, k, cos, torch.cat((s, -s), -1).to(DEVICE)), r"sin must hold each value twice"),
        "module": (lambda: K.patch_hf(os).__enter__(), r"patch_hf: module must define apply_rotary_pos_emb.*'os'"),
        # an integer cos was reported with the inner function's shapes, "(3, r/2) or (2 or 1, 3, r/2)"
        "integer cos": (lambda: K.hf_apply_rotary_pos_emb(q, k, cos.long(), sin), r"cos must be a floating-point tensor.*cos.dtype=torch.int64"),
        # a NaN read "its halves differ, largest difference nan"
        "nan sin": (lambda: K.hf_apply_rotary_pos_emb(q, k, cos, sin.index_put((torch.tensor([2]), torch.tensor([5])),
                                                                              torch.tensor(float("nan"), device=DEVICE))),
                    r"sin must be finite.*got sin\[2, 5\] = nan"),
        # Cohere's drop-in reads every other value: Llama's cos (halves, not in a row) is refused, not misread
        "cohere halves": (lambda: K.hf_apply_rotary_pos_emb_cohere(q, k, cos, sin),
                          r"hf_apply_rotary_pos_emb_cohere: cos must hold each value twice, in a row, cos\[..., 0::2\] == "
                          r"cos\[..., 1::2\].*repeat_interleave.*its even and odd features differ, largest difference"),
        "cohere sin in a row": (lambda: K.hf_apply_rotary_pos_emb_cohere(q, k, c.repeat_interleave(2, -1).to(DEVICE), sin),
                                r"hf_apply_rotary_pos_emb_cohere: sin must hold each value twice, in a row"),
        # the check names the drop-in that ran it (it used to say hf_apply_rotary_pos_emb for all)
        "single halves": (lambda: K.hf_apply_rotary_pos_emb_single(q, c.repeat_interleave(2, -1).to(DEVICE), sin),
                          r"^hf_apply_rotary_pos_emb_single: cos must hold each value twice, cos\[..., :4\] == cos\[..., 4:\]"),
    }
    fn, pattern = calls[case]
    with pytest.raises(ValueError, match=pattern):
        fn()


# What patch_hf installs in each of these Hugging Face modelling modules (None: it refuses), read from the
# module's own apply_rotary_pos_emb and rotate_half (transformers 5.x): Llama's form, with partial rotary in
# GPT-NeoX, Phi-3 and GLM-4-MoE; GLM's interleaved pairs reading cos's first half (GLM, ERNIE 4.5, Helium);
# gpt-oss's one value a pair; Gemma 4's Llama rotation of one tensor a call, (x, cos, sin); Cohere's interleaved
# pairs with cos each value twice in a row (Cohere, Cohere 2, BLT, EfficientLoFTR; GLM-4V's M-RoPE, partial); the
# OpenAI privacy filter's pairs (2i, 2i + 1) with cos one value a pair; GPT-J's and CodeGen's (tensor, sin, cos),
# one tensor (B, T, H, D), pairs (2i, 2i + 1), cos one value a pair; nanochat's Llama's form with rotate_half's
# sign flipped (a rotation by -θ); DeepSeek-V4's last r features of one tensor, pairs (2i, 2i + 1), cos one value a
# pair; DINOv3's (and EoMT-DINOv3's, Sapiens2's) Llama rotation of the last P tokens, cos (P, D) one table for
# the batch; CLVP's Llama rotation of q, k and v, (q, k, v, cos, sin, position_ids), cos a table (S, D) read at the
# position ids. (patch_hf refuses a function that computes none of them: the look-alike tests below.)
# test_patched_drop_in_is_the_modules_formula_rounded_once checks the numbers.
HF_FORMS = {"llama": "half", "gpt_neox": "half", "phi3": "half", "glm4_moe": "half", "glm": "interleaved",
            "ernie4_5": "interleaved", "helium": "interleaved", "gpt_oss": "pairs", "gemma4": "single", "gemma3n": "single",
            "cohere": "cohere", "cohere2": "cohere", "blt": "cohere", "efficientloftr": "cohere", "glm4v": "cohere",
            "openai_privacy_filter": "pairs_interleaved", "gptj": "gptj", "codegen": "gptj", "nanochat": "nanochat", "clvp": "clvp",
            "deepseek_v4": "deepseek_v4", "dinov3_vit": "dinov3", "eomt_dinov3": "dinov3", "sapiens2": "dinov3"}
DROP_INS = {"half": "hf_apply_rotary_pos_emb", "interleaved": "hf_apply_rotary_pos_emb_interleaved",
            "pairs": "hf_apply_rotary_pos_emb_pairs", "single": "hf_apply_rotary_pos_emb_single",
            "cohere": "hf_apply_rotary_pos_emb_cohere", "pairs_interleaved": "hf_apply_rotary_pos_emb_pairs_interleaved",
            "gptj": "hf_apply_rotary_pos_emb_gptj", "nanochat": "hf_apply_rotary_pos_emb_nanochat",
            "deepseek_v4": "hf_apply_rotary_pos_emb_deepseek_v4", "dinov3": "hf_apply_rotary_pos_emb_dinov3",
            "clvp": "hf_apply_rotary_pos_emb_clvp"}


def _hf_module(name):
    pytest.importorskip("transformers")
    import importlib

    return importlib.import_module(f"transformers.models.{name}.modeling_{name}")


@pytest.mark.parametrize("name", HF_FORMS)
def test_patch_hf_installs_the_drop_in_of_the_modules_formula(name):
    module = _hf_module(name)
    original = module.apply_rotary_pos_emb
    with K.patch_hf(module):
        assert module.apply_rotary_pos_emb is getattr(K, DROP_INS[HF_FORMS[name]])
        with K.patch_hf(module):  # nested: the drop-in stays
            assert module.apply_rotary_pos_emb is getattr(K, DROP_INS[HF_FORMS[name]])
    assert module.apply_rotary_pos_emb is original


def test_patch_hf_probes_a_function_once(monkeypatch):
    from ropebook.kernels import hf

    module = _hf_module("helium")
    with K.patch_hf(module):
        pass
    probes = mock.Mock(wraps=hf._probing._probe)
    monkeypatch.setattr(hf._probing, "_probe", probes)
    for _ in range(3):
        with K.patch_hf(module):
            assert module.apply_rotary_pos_emb is K.hf_apply_rotary_pos_emb_interleaved
    assert probes.call_count == 0
    fresh = lambda q, k, cos, sin, unsqueeze_dim=1: original(q, k, cos, sin, unsqueeze_dim)  # noqa: E731
    original = module.apply_rotary_pos_emb
    monkeypatch.setattr(module, "apply_rotary_pos_emb", fresh)  # a new function: probed
    with K.patch_hf(module):
        assert module.apply_rotary_pos_emb is K.hf_apply_rotary_pos_emb_interleaved
    assert probes.call_count >= 3  # the full-width probe of each form up to the match, then its other probes


def _rotate_half(x):
    return torch.cat((-x[..., x.shape[-1] // 2:], x[..., :x.shape[-1] // 2]), dim=-1)


def _llama(q, k, cos, sin, unsqueeze_dim=1):
    cos, sin = cos.unsqueeze(unsqueeze_dim), sin.unsqueeze(unsqueeze_dim)
    return q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin


def _rope_last(q, k, cos, sin, unsqueeze_dim=1):  # partial rotary on the last r features (DeepSeek-V4's order)
    r = cos.shape[-1]
    if r == q.shape[-1]:
        return _llama(q, k, cos, sin, unsqueeze_dim)
    return tuple(torch.cat((x[..., :-r], y), -1) for x, y in zip((q, k), _llama(q[..., -r:], k[..., -r:], cos, sin, unsqueeze_dim)))


def _first_row(q, k, cos, sin, unsqueeze_dim=1):  # the first sequence's angles for every sequence
    return _llama(q, k, cos[:1], sin[:1], unsqueeze_dim)


def _in_half(q, k, cos, sin, unsqueeze_dim=1):  # computes in float16
    return tuple(x.to(q.dtype) for x in _llama(q.half(), k.half(), cos.half(), sin.half(), unsqueeze_dim))


def _nan(q, k, cos, sin, unsqueeze_dim=1):
    return q * float("nan"), k * float("nan")


@pytest.mark.parametrize("fn, found", [(_llama, "half"), (_rope_last, r"agrees with the plain call, but not with partial"),
                                       (_first_row, "differs by"), (_in_half, "differs by"), (_nan, "differs by nan")])
def test_patch_hf_refuses_functions_that_differ_on_any_call_the_drop_in_accepts(fn, found):
    """Hand-written functions that agree with Llama's form on some calls: the probe tries every call the drop-in
    accepts (full width and partial, both unsqueeze_dims, two sequences at different positions) in float32, so
    each is refused, with what it found; the plain Llama formula is accepted."""
    _handwritten("apply_rotary_pos_emb", fn, K.hf_apply_rotary_pos_emb, "Llama's", None if found == "half" else found)


def _handwritten(attr, fn, drop_in, first_form, found):
    """A module whose ``attr`` is the hand-written ``fn``: with ``found`` None patch_hf installs ``drop_in``; else it
    refuses, with a message that names the function, the first form it probed and what it found, and patches
    nothing."""
    import types

    module = types.ModuleType("handwritten")
    setattr(module, attr, fn)
    if found is None:
        with K.patch_hf(module):
            assert getattr(module, attr) is drop_in
        return
    with pytest.raises(ValueError, match=rf"handwritten.{attr} computes none.*{first_form}.*{found}"):
        with K.patch_hf(module):
            pass
    assert getattr(module, attr) is fn


@pytest.mark.parametrize("name, call", [("pixtral", "unsqueeze_dim=0"), ("qwen4_exp", "k omitted")])
def test_patched_drop_in_takes_the_calls_models_make(name, call):
    """Pixtral hands its function a 2-d cos with unsqueeze_dim=0; Qwen4's indexer rotates q alone (k omitted, by
    keyword). Both, patched, give what the module's own function gives."""
    module = _hf_module(name)
    original = module.apply_rotary_pos_emb
    q, k = qk(B=1 if call == "unsqueeze_dim=0" else 2, T=5, HQ=4, HK=2, D=16)
    c, s = rb.rope_cos_sin(torch.arange(5) + 3, 16)  # (T, 8)
    cos, sin = torch.cat((c, c), -1).to(DEVICE), torch.cat((s, s), -1).to(DEVICE)  # (T, 16)
    if call == "unsqueeze_dim=0":
        args, kw = (q, k, cos, sin), dict(unsqueeze_dim=0)
    else:
        args, kw = (q.transpose(1, 2),), dict(cos=cos[None], sin=sin[None], unsqueeze_dim=2)  # (B, T, H, D)
    want = original(*args, **kw)
    with K.patch_hf(module):
        got = module.apply_rotary_pos_emb(*args, **kw)
    for g, w in zip((got,) if isinstance(got, torch.Tensor) else got, (want,) if isinstance(want, torch.Tensor) else want):
        assert_close_dtype(g, w)


@pytest.mark.parametrize("name, r", [("gpt_neox", 8), ("phi3", 12), ("glm", 8), ("helium", 16), ("gpt_oss", 16), ("gemma4", 16),
                                     ("cohere", 16), ("blt", 16), ("openai_privacy_filter", 16), ("nanochat", 16)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("unsqueeze_dim", [1, 2])
def test_patched_drop_in_is_the_modules_formula_rounded_once(name, r, dtype, unsqueeze_dim):
    """The drop-in patch_hf picks, against the module's own function run in float64 on the same inputs: cos and
    sin as the module's function reads them (r of D = 16 features; gpt-oss one value a pair; Llama's and Gemma's
    forms each value twice, and nanochat's, which rotates by −θ; the interleaved form its first half, the second
    anything; Cohere's each value twice in a row), per sequence."""
    module = _hf_module(name)
    original = module.apply_rotary_pos_emb
    q, k = qk(B=2, T=5, HQ=4, HK=2, D=16, dtype=dtype)
    c, s = rb.rope_cos_sin(torch.tensor([[3, 4, 5, 6, 7], [90, 91, 92, 93, 94]]), r)  # (B, T, r/2) float32
    if HF_FORMS[name] in ("half", "single", "nanochat"):
        c, s = torch.cat((c, c), -1), torch.cat((s, s), -1)  # (B, T, r)
    elif HF_FORMS[name] == "interleaved":  # the function reads the first half only: a second half unlike it changes nothing
        c, s = torch.cat((c, c + 0.5), -1), torch.cat((s, s - 0.5), -1)
    elif HF_FORMS[name] == "cohere":
        c, s = c.repeat_interleave(2, -1), s.repeat_interleave(2, -1)
    cos, sin = c.to(DEVICE, dtype), s.to(DEVICE, dtype)
    if unsqueeze_dim == 2:
        q, k = q.transpose(1, 2), k.transpose(1, 2)  # (B, T, H, D)
    kw = {} if unsqueeze_dim == 1 else dict(unsqueeze_dim=2)
    if HF_FORMS[name] == "single":  # one tensor a call
        want_q, want_k = (original(x.double(), cos.double(), sin.double(), **kw) for x in (q, k))
        with K.patch_hf(module):
            qr, kr = (module.apply_rotary_pos_emb(x, cos, sin, **kw) for x in (q, k))
    else:
        want_q, want_k = original(q.double(), k.double(), cos.double(), sin.double(), **kw)
        with K.patch_hf(module):
            qr, kr = module.apply_rotary_pos_emb(q, k, cos, sin, **kw)
    assert_close_dtype(qr, want_q.to(dtype))
    assert_close_dtype(kr, want_k.to(dtype))
    if r < 16:  # partial rotary: the features past r are q's own
        assert torch.equal(qr[..., r:], q[..., r:])


@pytest.mark.parametrize("r", [6, 8, 16])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("unsqueeze_dim", [1, 2, 0])
def test_patched_deepseek_v4_drop_in_is_the_modules_formula(r, dtype, unsqueeze_dim):
    """DeepSeek-V4's function, (x, cos, sin), rotates the last r of D = 16 features in pairs (2i, 2i + 1) (r/2 odd
    too), cos and sin (B, T, r/2) one value a pair, per sequence (unsqueeze_dim=0: one (T, r/2) for the batch); its
    attention also calls it with -sin on its output. Against the module's own function run on float64 inputs
    (which it computes in float32), the first D - r features x's own; then the gradient against its own."""
    module = _hf_module("deepseek_v4")
    original = module.apply_rotary_pos_emb
    x = qk(B=2, T=5, HQ=4, D=16, dtype=dtype)[0]  # (B, H, T, D)
    c, s = rb.rope_cos_sin(torch.tensor([[3, 4, 5, 6, 7], [90, 91, 92, 93, 94]]), r)  # (B, T, r/2)
    cos, sin = c.to(DEVICE, dtype), s.to(DEVICE, dtype)
    if unsqueeze_dim == 2:
        x = x.transpose(1, 2)  # (B, T, H, D)
    if unsqueeze_dim == 0:
        cos, sin = cos[1], sin[1]  # (T, r/2)
    kw = {} if unsqueeze_dim == 1 else dict(unsqueeze_dim=unsqueeze_dim)
    with K.patch_hf(module):
        assert module.apply_rotary_pos_emb is K.hf_apply_rotary_pos_emb_deepseek_v4
        for sign in (1, -1):  # -1: the output's rotation back
            got = module.apply_rotary_pos_emb(x, cos, sign * sin, **kw)
            assert got.shape == x.shape
            assert_close_dtype(got, original(x.double(), cos.double(), sign * sin.double(), **kw).to(dtype))
            assert torch.equal(got[..., :16 - r], x[..., :16 - r])
    if dtype == torch.float32:
        x64 = x.double().requires_grad_()
        g = torch.randn_like(x64)
        torch.autograd.backward(original(x64, cos.double(), sin.double(), **kw), g)
        x32 = x.detach().requires_grad_()
        torch.autograd.backward(K.hf_apply_rotary_pos_emb_deepseek_v4(x32, cos, sin, **kw), g.float())
        assert_close_dtype(x32.grad, x64.grad.float())


@pytest.mark.parametrize("name", ["gptj", "codegen"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_patched_gptj_drop_in_is_the_modules_formula_rounded_once(name, dtype):
    """GPT-J's and CodeGen's function, (tensor, sin, cos), as their attention calls it: on the rotary features of
    key (B, T, H, D), a view (rotary_dim = 8 of 16 features), sin and cos (B, T, 4) the halves of one sincos table,
    per sequence; against the module's own function run in float64, then the gradient against its own."""
    module = _hf_module(name)
    original = module.apply_rotary_pos_emb
    key = qk(B=2, T=5, HQ=3, D=16, dtype=dtype)[0].transpose(1, 2)  # (B, T, H, D)
    c, s = rb.rope_cos_sin(torch.tensor([[3, 4, 5, 6, 7], [90, 91, 92, 93, 94]]), 8)  # (B, T, 4)
    sincos = torch.cat((s, c), -1).to(DEVICE, dtype)  # their table: sin, then cos
    sin, cos = torch.split(sincos, 4, dim=-1)
    k_rot = key[:, :, :, :8]
    want = original(k_rot.double(), sin.double(), cos.double())
    with K.patch_hf(module):
        assert module.apply_rotary_pos_emb is K.hf_apply_rotary_pos_emb_gptj
        got = module.apply_rotary_pos_emb(k_rot, sin, cos)
    assert_close_dtype(got, want.to(dtype))
    if dtype == torch.float32:
        x64 = k_rot.double().requires_grad_()
        g = torch.randn_like(want)
        torch.autograd.backward(original(x64, sin.double(), cos.double()), g)
        x32 = k_rot.detach().requires_grad_()
        torch.autograd.backward(K.hf_apply_rotary_pos_emb_gptj(x32, sin, cos), g.float())
        assert_close_dtype(x32.grad, x64.grad.float())


def _gptj(tensor, sin, cos):  # GPT-J's function, written out
    c, s = (x[:, :, None, :].repeat_interleave(2, 3) for x in (cos, sin))
    return tensor * c + torch.stack((-tensor[..., 1::2], tensor[..., 0::2]), -1).flatten(-2) * s


def _gptj_cos_first(tensor, cos, sin):  # the same formula with cos before sin: GPT-J's order read the other way
    return _gptj(tensor, sin, cos)


def _gptj_heads_first(tensor, sin, cos):  # cos broadcast over (B, H, T, D): right only for a tensor laid out so
    c, s = (x[:, None].repeat_interleave(2, 3) for x in (cos, sin))
    return tensor * c + torch.stack((-tensor[..., 1::2], tensor[..., 0::2]), -1).flatten(-2) * s


@pytest.mark.parametrize("fn, found", [(_gptj, None), (_gptj_cos_first, "differs by"),
                                       (_gptj_heads_first, "(differs by|raised)")])
def test_patch_hf_tells_gptjs_function_from_look_alikes(fn, found):
    """GPT-J's formula written out is given its drop-in; the same formula taking cos before sin, and one that reads
    the tensor as (B, H, T, D), are refused, with what the probe found."""
    _handwritten("apply_rotary_pos_emb", fn, K.hf_apply_rotary_pos_emb_gptj, "Llama's.*GPT-J's", found)


def _v4(x, cos, sin, unsqueeze_dim=1):  # DeepSeek-V4's function, written out: the last r features turned
    c, s = (t.repeat_interleave(2, -1).unsqueeze(unsqueeze_dim) for t in (cos, sin))
    r = c.shape[-1]
    y = x[..., x.shape[-1] - r:]
    return torch.cat((x[..., :x.shape[-1] - r], y * c + torch.stack((-y[..., 1::2], y[..., 0::2]), -1).flatten(-2) * s), -1)


def _v4_first(x, cos, sin, unsqueeze_dim=1):  # the same with the first r features turned: the same at r = D
    r = 2 * cos.shape[-1]
    return torch.cat((_v4(x[..., :r], cos, sin, unsqueeze_dim), x[..., r:]), -1)


@pytest.mark.parametrize("fn, found", [(_v4, None), (_v4_first, "DeepSeek-V4's.*agrees with the plain call, but not with partial")])
def test_patch_hf_tells_deepseek_v4s_function_from_one_that_turns_the_first_features(fn, found):
    """DeepSeek-V4's formula written out is given its drop-in; the same formula on the first r features, which
    agrees with it when r = D, is refused by the partial probe (r = 4 of 8)."""
    _handwritten("apply_rotary_pos_emb", fn, K.hf_apply_rotary_pos_emb_deepseek_v4, "Llama's", found)


@pytest.mark.parametrize("unsqueeze_dim", [1, 2])
def test_deepseek_v4_drop_in_gradcheck_and_compiled_backward(unsqueeze_dim):
    """The last r = 6 of D = 16 features turned (a view of x into the kernel, then a concatenation), with sin and with
    -sin, differentiated: gradcheck in float64, and under torch.compile (fullgraph, the custom operator) the results
    and gradients of eager."""
    drop_in = K.hf_apply_rotary_pos_emb_deepseek_v4
    c, s = rb.rope_cos_sin(torch.tensor([[3, 4, 5], [40, 41, 42]]), 6)  # (B, T, 3)
    cos, sin = c.to(DEVICE, torch.float64), s.to(DEVICE, torch.float64)
    x = torch.randn(2, 3, 3, 16, dtype=torch.float64, device=DEVICE)  # (B, H, T, D)
    x = (x.transpose(1, 2) if unsqueeze_dim == 2 else x).requires_grad_()
    for sign in (1, -1):
        assert torch.autograd.gradcheck(lambda x: drop_in(x, cos, sign * sin, unsqueeze_dim), (x,), fast_mode=True)
    torch._dynamo.reset()
    f = torch.compile(drop_in, backend="aot_eager", fullgraph=True)
    g = torch.randn_like(x)
    (want,), (got,) = ([fn(x, cos, -sin, unsqueeze_dim)] for fn in (drop_in, f))
    torch.testing.assert_close(got, want, rtol=0, atol=1e-15)
    torch.testing.assert_close(torch.autograd.grad(got, x, g)[0], torch.autograd.grad(want, x, g)[0], rtol=0, atol=1e-15)


@pytest.mark.parametrize("name", ["dinov3_vit", "eomt_dinov3", "sapiens2"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("prefix", [0, 1, 5])
def test_patched_dinov3_drop_in_is_the_modules_formula_rounded_once(name, dtype, prefix):
    """DINOv3's function and its copies: Llama's rotation of the last P tokens of q and k, cos and sin (P, D) one
    table for the batch (an image's patches), the first tokens (class token, registers) q's and k's own, bit for
    bit. Against the module's own function run in float64, then the gradients against its own."""
    module = _hf_module(name)
    original = module.apply_rotary_pos_emb
    P = 6
    q, k = qk(B=2, T=prefix + P, HQ=4, HK=2, D=16, dtype=dtype)
    rows, cols = torch.arange(P) // 3, torch.arange(P) % 3  # a 2 x 3 grid of patches: half the pairs from each
    c, s = (torch.cat((rb.rope_cos_sin(rows, 8)[i], rb.rope_cos_sin(cols, 8)[i]), -1) for i in (0, 1))  # (P, 8)
    cos, sin = torch.cat((c, c), -1).to(DEVICE, dtype), torch.cat((s, s), -1).to(DEVICE, dtype)  # (P, 16)
    want_q, want_k = original(q.double(), k.double(), cos.double(), sin.double())
    with K.patch_hf(module):
        assert module.apply_rotary_pos_emb is K.hf_apply_rotary_pos_emb_dinov3
        qr, kr = module.apply_rotary_pos_emb(q, k, cos, sin)
    assert qr.shape == q.shape and kr.shape == k.shape
    assert_close_dtype(qr, want_q.to(dtype))
    assert_close_dtype(kr, want_k.to(dtype))
    assert torch.equal(qr[:, :, :prefix], q[:, :, :prefix]) and torch.equal(kr[:, :, :prefix], k[:, :, :prefix])
    if dtype == torch.float32:
        q64, k64 = (x.double().requires_grad_() for x in (q, k))
        g = torch.randn_like(want_q), torch.randn_like(want_k)
        torch.autograd.backward(original(q64, k64, cos.double(), sin.double()), g)
        q32, k32 = (x.detach().requires_grad_() for x in (q, k))
        torch.autograd.backward(K.hf_apply_rotary_pos_emb_dinov3(q32, k32, cos, sin), [x.float() for x in g])
        assert_close_dtype(q32.grad, q64.grad.float())
        assert_close_dtype(k32.grad, k64.grad.float())


def _dinov3(q, k, cos, sin, **kwargs):  # DINOv3's function, written out: the last P = cos.shape[0] tokens turned
    p = q.shape[-2] - cos.shape[-2]
    return tuple(torch.cat((x[..., :p, :], _llama(x[..., p:, :], x[..., p:, :], cos, sin, 0)[0]), -2) for x in (q, k))


def _dinov3_first_tokens(q, k, cos, sin, **kwargs):  # the first P tokens turned, the extra tokens put last
    P = cos.shape[-2]
    return tuple(torch.cat((_llama(x[..., :P, :], x[..., :P, :], cos, sin, 0)[0], x[..., P:, :]), -2) for x in (q, k))


def _every_token(q, k, cos, sin, **kwargs):  # cos (T, D) broadcast over the batch and heads: no tokens passed through
    return q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin


def _registers_last(q, k, cos, sin, **kwargs):  # a class token, the P patches turned, then tokens passed through
    P = cos.shape[-2]
    return tuple(torch.cat((x[..., :1, :], _llama(x[..., 1:P + 1, :], x[..., 1:P + 1, :], cos, sin, 0)[0], x[..., P + 1:, :]),
                           -2) if x.shape[-2] > P else _llama(x, x, cos, sin, 0)[0] for x in (q, k))


@pytest.mark.parametrize("fn, found", [(_dinov3, None), (_dinov3_first_tokens, "DINOv3's.*differs by"),
                                       (_every_token, "DINOv3's.*raised"), (_registers_last, "DINOv3's.*differs by")])
def test_patch_hf_tells_dinov3s_function_from_look_alikes(fn, found):
    """DINOv3's formula written out is given its drop-in; one that turns the first P tokens, one that turns every
    token (right only when there is no class token or register, P = T), and one that passes the first token and
    the tokens after the patches through (registers last: the same as DINOv3's with one token before), are refused."""
    _handwritten("apply_rotary_pos_emb", fn, K.hf_apply_rotary_pos_emb_dinov3, "Llama's", found)


def test_dinov3_drop_in_gradcheck_and_compiled_backward():
    """The last P = 4 of T = 6 tokens turned (views of q and k into the kernel, then concatenations), differentiated:
    gradcheck in float64, and under torch.compile (fullgraph, the custom operator) the results and gradients of
    eager."""
    drop_in = K.hf_apply_rotary_pos_emb_dinov3
    c, s = rb.rope_cos_sin(torch.arange(4), 8)
    cos, sin = torch.cat((c, c), -1).to(DEVICE, torch.float64), torch.cat((s, s), -1).to(DEVICE, torch.float64)
    q = torch.randn(2, 3, 6, 8, dtype=torch.float64, device=DEVICE, requires_grad=True)
    k = torch.randn(2, 1, 6, 8, dtype=torch.float64, device=DEVICE, requires_grad=True)
    _gradcheck_and_compiled_backward(drop_in, (q, k), (cos, sin))


def _gradcheck_and_compiled_backward(drop_in, xs, rest):
    """``drop_in(*xs, *rest)`` differentiated in the float64 tensors ``xs``: gradcheck, then under torch.compile
    (fullgraph, aot_eager: the custom operator in the graph) the results and gradients of eager, to the bit."""
    assert torch.autograd.gradcheck(lambda *xs: drop_in(*xs, *rest), xs, fast_mode=True)
    torch._dynamo.reset()
    f = torch.compile(drop_in, backend="aot_eager", fullgraph=True)
    g = [torch.randn_like(x) for x in xs]  # (every drop-in here returns tensors of its inputs' shapes)
    outs = [fn(*xs, *rest) for fn in (drop_in, f)]
    grads = [torch.autograd.grad(out, xs, g) for out in outs]
    for x, y in zip(outs[0] + grads[0], outs[1] + grads[1]):
        torch.testing.assert_close(y, x, rtol=0, atol=1e-15)


@pytest.mark.parametrize("name", ["dinov3_vit", "eomt_dinov3"])
def test_patch_hf_in_tiny_dinov3_models(name):
    """A 3-layer DINOv3 ViT (a class token and 4 registers before the patches) and EoMT-DINOv3 (6 queries put
    before them for its last layer): the outputs and gradients, patched against unpatched (DINOv3 on images of two
    shapes, so two tables of patches), with one kernel launch for each call of the module's own function."""
    transformers = pytest.importorskip("transformers")
    module = _hf_module(name)
    torch.manual_seed(0)
    common = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4, image_size=32,
                  patch_size=8, num_register_tokens=4)
    if name == "dinov3_vit":
        model = transformers.DINOv3ViTModel(transformers.DINOv3ViTConfig(**common))
        out = lambda x: model(pixel_values=x).last_hidden_state  # noqa: E731
    else:
        model = transformers.EomtDinov3ForUniversalSegmentation(transformers.EomtDinov3Config(
            **common, num_queries=6, num_blocks=1, num_labels=3))
        out = lambda x: model(pixel_values=x).masks_queries_logits  # noqa: E731
    model = model.to(DEVICE).eval()
    for shape in ((32, 32), (24, 40)) if name == "dinov3_vit" else ((32, 32),):  # (EoMT's mask head: its image size)
        x = torch.randn(2, 3, *shape, generator=torch.Generator().manual_seed(2)).to(DEVICE)
        calls = _patched_matches_unpatched(module, "apply_rotary_pos_emb", model, lambda: out(x))
        assert calls.call_count == 3


def _patched_matches_unpatched(module, attr, model, forward, launches_per_call=1, launches=None):
    """``forward()`` (the model's output) and the parameters' gradients (a fixed weighting of the output, backward),
    patched against unpatched, with ``launches_per_call`` kernel launches for each call of the module's own
    function ``attr`` (or ``launches`` in all, where calls differ); then two passes without autograd (``_no_grad_twice_is_the_same``). Returns the mock that
    counted the calls, and holds their arguments."""
    from ropebook.kernels import hf

    def run():
        model.zero_grad()
        y = forward()
        (y * torch.linspace(-1, 1, y.numel(), device=y.device).view_as(y)).sum().backward()
        return y.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]

    with mock.patch.object(module, attr, wraps=getattr(module, attr)) as calls:
        want, want_grads = run()
    with mock.patch.object(hf._factory, "_rope_qk_cos_sin", wraps=hf._factory._rope_qk_cos_sin) as counted, K.patch_hf(module):
        got, grads = run()
    assert calls.call_count > 0
    assert counted.call_count == (launches_per_call * calls.call_count if launches is None else launches)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert len(grads) == len(want_grads) > 0
    for g, w in zip(grads, want_grads):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-6)
    _no_grad_twice_is_the_same(module, forward, got)
    return calls


def _no_grad_twice_is_the_same(module, forward, got):
    """Two passes of a patched model without autograd, from an empty cache of launch plans: the first makes plans
    (its later layers may repeat its first layer's), the second launches from them alone (on the views a drop-in
    hands the kernel: some tokens, some features), and both give the bits the patched pass with autograd gave."""
    from ropebook.kernels import autograd, hf

    autograd._plans.clear()
    with (torch.no_grad(), K.patch_hf(module), mock.patch.object(autograd, "_repeat", wraps=autograd._repeat) as repeats,
          mock.patch.object(hf._factory, "_rope_qk_cos_sin", wraps=hf._factory._rope_qk_cos_sin) as launches):
        first = forward()
        made, n = launches.call_count - repeats.call_count, launches.call_count
        second = forward()
    assert made > 0 and launches.call_count == 2 * n and repeats.call_count == n - made + n
    assert torch.equal(first, got) and torch.equal(second, got)


CLVP_POSITIONS = torch.tensor([[6, 7, 8, 9, 10], [0, 3, 3, -1, 2]])  # (B, T) into a table of 11 rows: out of order,
# repeated, and one negative (row 10, counted from the end as indexing counts it)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("rows", ["per sequence", "one row", "int32"])
@pytest.mark.parametrize("unsqueeze_dim", [1, 2])
def test_patched_clvp_drop_in_is_the_modules_formula_rounded_once(dtype, rows, unsqueeze_dim):
    """CLVP's function: Llama's rotation of q, k *and* v, each token by the row of the table (S, D) that its
    position id names, ids (B, T) per sequence (int64, or int32) or (1, T) for the batch, one negative. Against the
    module's own function run in float64, then the gradients against its own."""
    module = _hf_module("clvp")
    original = module.apply_rotary_pos_emb
    q, k = qk(B=2, T=5, HQ=4, HK=4, D=16, dtype=dtype)
    v = qk(B=2, T=5, HQ=4, D=16, dtype=dtype, seed=1)[0]
    c, s = rb.rope_cos_sin(torch.arange(11), 16)  # (S, D/2)
    cos, sin = torch.cat((c, c), -1).to(DEVICE, dtype), torch.cat((s, s), -1).to(DEVICE, dtype)  # (S, D)
    pos = (CLVP_POSITIONS[1:] if rows == "one row" else CLVP_POSITIONS).to(DEVICE, torch.int32 if rows == "int32" else None)
    if unsqueeze_dim == 2:
        q, k, v = (x.transpose(1, 2) for x in (q, k, v))  # (B, T, H, D)
    kw = {} if unsqueeze_dim == 1 else dict(unsqueeze_dim=2)
    want = original(q.double(), k.double(), v.double(), cos.double(), sin.double(), pos, **kw)
    with K.patch_hf(module):
        assert module.apply_rotary_pos_emb is K.hf_apply_rotary_pos_emb_clvp
        got = module.apply_rotary_pos_emb(q, k, v, cos, sin, pos, **kw)
    assert len(got) == 3
    for g, w in zip(got, want):
        assert_close_dtype(g, w.to(dtype))
    if dtype == torch.float32:
        x64 = [x.double().requires_grad_() for x in (q, k, v)]
        g = [torch.randn_like(w) for w in want]
        torch.autograd.backward(original(*x64, cos.double(), sin.double(), pos, **kw), g)
        x32 = [x.detach().requires_grad_() for x in (q, k, v)]
        torch.autograd.backward(K.hf_apply_rotary_pos_emb_clvp(*x32, cos, sin, pos, **kw), [x.float() for x in g])
        for a, b in zip(x32, x64):
            assert_close_dtype(a.grad, b.grad.float())


def _clvp(q, k, v, cos, sin, position_ids, unsqueeze_dim=1):  # CLVP's function, written out
    cos, sin = cos[position_ids].unsqueeze(unsqueeze_dim), sin[position_ids].unsqueeze(unsqueeze_dim)
    return tuple(x * cos + _rotate_half(x) * sin for x in (q, k, v))


def _clvp_first_rows(q, k, v, cos, sin, position_ids, unsqueeze_dim=1):  # the first T rows of the table: ids ignored
    T = q.shape[-2] if unsqueeze_dim == 1 else q.shape[1]
    return _clvp(q, k, v, cos, sin, torch.arange(T)[None], unsqueeze_dim)


def _clvp_first_sequence(q, k, v, cos, sin, position_ids, unsqueeze_dim=1):  # the first sequence's ids for the batch
    return _clvp(q, k, v, cos, sin, position_ids[:1], unsqueeze_dim)


def _clvp_v_unturned(q, k, v, cos, sin, position_ids, unsqueeze_dim=1):  # q and k turned, v passed through
    return (*_clvp(q, k, v, cos, sin, position_ids, unsqueeze_dim)[:2], v)


def _clvp_clamped(q, k, v, cos, sin, position_ids, unsqueeze_dim=1):  # negative ids (padding?) read as row 0
    return _clvp(q, k, v, cos, sin, position_ids.clamp(min=0), unsqueeze_dim)


@pytest.mark.parametrize("fn, found", [(_clvp, None), (_clvp_first_rows, "CLVP's.*differs by"),
                                       (_clvp_first_sequence, "CLVP's.*differs by"),
                                       (_clvp_v_unturned, "CLVP's.*differs by"), (_clvp_clamped, "CLVP's.*differs by")])
def test_patch_hf_tells_clvps_function_from_look_alikes(fn, found):
    """CLVP's formula written out is given its drop-in; one that reads the first T rows of the table whatever the
    position ids, one that reads the first sequence's ids for every sequence, one that leaves v as it is, and one
    that reads a negative id as row 0 (where indexing counts it from the end) are refused."""
    _handwritten("apply_rotary_pos_emb", fn, K.hf_apply_rotary_pos_emb_clvp, "Llama's", found)


def test_clvp_drop_in_gradcheck_and_compiled_backward():
    """q, k and v turned by a table read at position ids (two launches), differentiated: gradcheck in float64, and
    under torch.compile (fullgraph, the custom operator) the results and gradients of eager."""
    drop_in = K.hf_apply_rotary_pos_emb_clvp
    c, s = rb.rope_cos_sin(torch.arange(11), 8)
    cos, sin = torch.cat((c, c), -1).to(DEVICE, torch.float64), torch.cat((s, s), -1).to(DEVICE, torch.float64)
    pos = CLVP_POSITIONS.to(DEVICE)
    q, k, v = (torch.randn(2, h, 5, 8, dtype=torch.float64, device=DEVICE, requires_grad=True) for h in (3, 1, 2))
    _gradcheck_and_compiled_backward(drop_in, (q, k, v), (cos, sin, pos))


@pytest.mark.parametrize("positions", ["default", "per sequence"])
def test_patch_hf_in_a_tiny_clvp_encoder(positions):
    """A 2-layer CLVP encoder (heads of 64 features, the first 32 rotated: CLVP's attention hands the function
    views of them and concatenates the rest back), with its own position ids (1, T) or ids per sequence (B, T): the
    outputs and gradients, patched against unpatched, with two kernel launches (q and k, then v) for each call of
    the module's own function."""
    transformers = pytest.importorskip("transformers")
    module = _hf_module("clvp")
    torch.manual_seed(0)
    model = module.ClvpEncoder(transformers.ClvpEncoderConfig(
        vocab_size=50, hidden_size=128, intermediate_size=256, projection_dim=64, num_hidden_layers=2,
        num_attention_heads=2, attention_dropout=0.0, dropout=0.0, bos_token_id=1, eos_token_id=2)).to(DEVICE).eval()
    assert model.rotary_pos_emb.inv_freq.numel() * 2 == 32 < 64  # r of D: the partial rotary this test is about
    ids = torch.randint(3, 50, (2, 7), generator=torch.Generator().manual_seed(1)).to(DEVICE)
    kw = {} if positions == "default" else dict(position_ids=torch.tensor([[0, 1, 2, 3, 4, 5, 6], [6, 5, 4, 3, 2, 1, 0]],
                                                                          device=DEVICE))
    calls = _patched_matches_unpatched(module, "apply_rotary_pos_emb", model,
                                       lambda: model(input_ids=ids, **kw).last_hidden_state, launches_per_call=2)
    assert calls.call_count == 2


# SAM 2's apply_rotary_pos_emb_2d: q (B, H, Tq, D) an image's patches, k (B, H, Tk, D) the same patches
# (self-attention) or the memories of Tk // Tq earlier frames (repeat_freqs_k: the table tiled) and then
# num_k_exclude_rope object pointers, passed through; cos and sin SAM's axial table (1, Tq, D), each value twice in
# a row. (Tq, Tk, num_k_exclude_rope, repeat_freqs_k) for each call that SAM 2's attention makes, or that its function takes
SAM_CALLS = {"self-attention": (6, 6, 0, False), "one frame and pointers": (6, 10, 4, True),
             "three frames and pointers": (6, 22, 4, True), "three frames": (6, 18, 0, True),
             "pointers alone": (6, 4, 4, True), "one query token": (1, 5, 1, False),
             "one query token, tiled": (1, 5, 0, True)}


def _sam_table(T, D, dtype=torch.float32):
    """SAM's axial table for T patches of a grid 3 wide: the first half of the pairs turned by each patch's column,
    the second by its row, each value twice in a row; (1, T, D)."""
    from ropebook.kernels import bench

    return tuple(x.to(DEVICE, dtype) for x in bench.sam_table(T, 3, D))


@pytest.mark.parametrize("call", SAM_CALLS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_patched_sam2d_drop_in_is_the_modules_formula_rounded_once(call, dtype):
    """SAM 2's function (SAM 2 video's memory attention): q's patches turned by the table, and k's first
    Tk − num_k_exclude_rope tokens by the table tiled, the rest (object pointers) k's own, bit for bit. The table
    in float32 whatever q's dtype, as SAM's rotary module makes it. Against the module's own function run in
    float64, then the gradients against its own; one kernel launch a tile."""
    from ropebook.kernels import hf

    module = _hf_module("sam2_video")
    original = module.apply_rotary_pos_emb_2d
    T, Tk, n, repeat = SAM_CALLS[call]
    q = qk(B=2, T=T, HQ=2, D=16, dtype=dtype)[0]
    k = qk(B=2, T=Tk, HQ=3, D=16, dtype=dtype, seed=1)[0]
    cos, sin = _sam_table(T, 16)
    kw = dict(num_k_exclude_rope=n, repeat_freqs_k=repeat)
    want = original(q.double(), k.double(), cos.double(), sin.double(), **kw)
    with K.patch_hf(module), mock.patch.object(hf._factory, "_rope_qk_cos_sin", wraps=hf._factory._rope_qk_cos_sin) as launches:
        assert module.apply_rotary_pos_emb_2d is K.hf_apply_rotary_pos_emb_2d
        got = module.apply_rotary_pos_emb_2d(q, k, cos, sin, **kw)
    m = Tk - n
    assert launches.call_count == (1 if m == 0 else 2 if T == 1 else m // T)
    for g, w, x in zip(got, want, (q, k)):
        assert g.shape == x.shape and g.dtype == x.dtype
        assert_close_dtype(g, w.to(dtype))
    assert torch.equal(got[1][:, :, m:], k[:, :, m:])
    if dtype == torch.float32:
        x64 = [x.double().requires_grad_() for x in (q, k)]
        g = [torch.randn_like(w) for w in want]
        torch.autograd.backward(original(*x64, cos.double(), sin.double(), **kw), g)
        x32 = [x.detach().requires_grad_() for x in (q, k)]
        torch.autograd.backward(K.hf_apply_rotary_pos_emb_2d(*x32, cos, sin, **kw), [x.float() for x in g])
        for a, b in zip(x32, x64):
            assert_close_dtype(a.grad, b.grad.float())


@pytest.mark.parametrize("name, attr", [("sam2_video", "apply_rotary_pos_emb_2d"),
                                        ("sam3_tracker_video", "apply_rotary_pos_emb_2d"),
                                        ("sam3", "apply_rotary_pos_emb_2d"),
                                        ("edgetam_video", "apply_rotary_pos_emb_2d_self_attn")])
def test_patch_hf_replaces_sams_2d_function(name, attr):
    """SAM 2's function, SAM 3's tracker's copy of it, and the self-attention functions of SAM 3's ViT and EdgeTAM
    (q, k, cos and sin alone: the probe's calls with SAM 2's keywords raise there, calls their models never make)
    are given the drop-in, which computes what each does on the self-attention call."""
    module = _hf_module(name)
    original = getattr(module, attr)
    q, k = qk(B=2, T=6, HQ=2, HK=2, D=16)
    cos, sin = _sam_table(6, 16)
    want = original(q.double(), k.double(), cos.double(), sin.double())
    with K.patch_hf(module):
        assert getattr(module, attr) is K.hf_apply_rotary_pos_emb_2d
        got = getattr(module, attr)(q, k, cos, sin)
    assert getattr(module, attr) is original
    for g, w in zip(got, want):
        assert_close_dtype(g, w.float())


def _pairwise(x):  # SAM's rotate_pairwise: (x_2i, x_2i+1) -> (-x_2i+1, x_2i)
    return torch.stack((-x[..., 1::2], x[..., 0::2]), -1).flatten(-2)


def _sam2d(q, k, cos, sin, num_k_exclude_rope=0, repeat_freqs_k=False, tile=True):  # SAM 2's function, written out
    m = k.shape[-2] - num_k_exclude_rope
    r = max(m // q.shape[-2], 1) if repeat_freqs_k else 1
    ck, sk = ((x.repeat(*[1] * (x.ndim - 2), r, 1) if tile else x.repeat_interleave(r, -2)) for x in (cos, sin))
    y = k[..., :m, :]
    return q * cos + _pairwise(q) * sin, torch.cat((y * ck + _pairwise(y) * sk, k[..., m:, :]), -2)


def _sam2d_rows_repeated(q, k, cos, sin, num_k_exclude_rope=0, repeat_freqs_k=False):  # each row repeated, not tiled
    return _sam2d(q, k, cos, sin, num_k_exclude_rope, repeat_freqs_k, tile=False)


def _sam2d_pointers_first(q, k, cos, sin, num_k_exclude_rope=0, repeat_freqs_k=False):  # the first keys passed through
    n = num_k_exclude_rope
    qr, kr = _sam2d(q, torch.cat((k[..., n:, :], k[..., :n, :]), -2), cos, sin, n, repeat_freqs_k)
    return qr, torch.cat((kr[..., kr.shape[-2] - n:, :], kr[..., :kr.shape[-2] - n, :]), -2)


def _sam2d_pointers_turned(q, k, cos, sin, num_k_exclude_rope=0, repeat_freqs_k=False):  # pointers by the first rows
    qr, kr = _sam2d(q, k, cos, sin, num_k_exclude_rope, repeat_freqs_k)
    n, m = num_k_exclude_rope, k.shape[-2] - num_k_exclude_rope
    p = k[..., m:, :]
    return qr, torch.cat((kr[..., :m, :], p * cos[..., :n, :] + _pairwise(p) * sin[..., :n, :]), -2)


def _sam2d_halves(q, k, cos, sin, num_k_exclude_rope=0, repeat_freqs_k=False):  # Llama's pairs (i, i + D/2)
    return _llama(q, k, cos, sin, 0)


@pytest.mark.parametrize("fn, found", [(_sam2d, None), (_sam2d_rows_repeated, "keys tiled: differs by"),
                                       (_sam2d_pointers_first, "keys excluded: differs by"),
                                       (_sam2d_pointers_turned, "keys excluded: differs by"),
                                       (_sam2d_halves, r"\): differs by")])
def test_patch_hf_tells_sams_2d_function_from_look_alikes(fn, found):
    """SAM 2's formula written out is given its drop-in; one that repeats each row of the table where SAM 2 tiles
    it, one that passes the first keys through where SAM 2 passes the last, one that turns the object pointers too,
    and one that pairs features (i, i + D/2) are refused, with the call that told them apart."""
    _handwritten("apply_rotary_pos_emb_2d", fn, K.hf_apply_rotary_pos_emb_2d, "SAM 2's", found)


def test_sam2d_drop_in_gradcheck_and_compiled_backward():
    """Three tiles of keys turned (three launches on views of k) and two pointers passed through, differentiated:
    gradcheck in float64, and under torch.compile (fullgraph, the custom operator) the results and gradients of
    eager."""
    cos, sin = _sam_table(4, 8, torch.float64)
    q = torch.randn(2, 2, 4, 8, dtype=torch.float64, device=DEVICE, requires_grad=True)
    k = torch.randn(2, 1, 14, 8, dtype=torch.float64, device=DEVICE, requires_grad=True)
    _gradcheck_and_compiled_backward(K.hf_apply_rotary_pos_emb_2d, (q, k), (cos, sin, 2, True))


@pytest.mark.parametrize("frames", [1, 3])
def test_patch_hf_in_sam2s_memory_attention(frames):
    """SAM 2 video's memory attention with random weights, two layers each of self-attention over a 4 × 3 grid of
    patches and cross-attention to the memory of ``frames`` earlier frames and 2 object pointers: the outputs and
    gradients, patched against unpatched, with one kernel launch for each self-attention and one for each frame
    of memory."""
    transformers = pytest.importorskip("transformers")
    module = _hf_module("sam2_video")
    config = transformers.Sam2VideoConfig(memory_attention_hidden_size=32, memory_attention_num_layers=2,
                                          memory_attention_num_attention_heads=2,
                                          memory_attention_feed_forward_hidden_size=64,
                                          memory_attention_rope_feat_sizes=[4, 3])
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    model = module.Sam2VideoMemoryAttention(config).to(DEVICE).eval()
    g = torch.Generator().manual_seed(1)
    T, P = 12, 2
    x, pe = (torch.randn(T, 2, 32, generator=g).to(DEVICE) for _ in range(2))  # (T, B, C): SAM's tokens first
    mem, mpe = (torch.randn(frames * T + P, 2, 64, generator=g).to(DEVICE) for _ in range(2))
    calls = _patched_matches_unpatched(module, "apply_rotary_pos_emb_2d", model,
                                       lambda: model(x, mem, pe, mpe, num_object_pointer_tokens=P),
                                       launches=2 * (1 + frames))
    assert calls.call_count == 4
    assert [c.kwargs for c in calls.call_args_list[:2]] == [dict(repeat_freqs_k=False, num_k_exclude_rope=0),
                                                             dict(repeat_freqs_k=True, num_k_exclude_rope=P)]


# EdgeTAM's cross-attention: k is R frames of memory, each t global latents (passed through) and then S spatial
# tokens (turned by the keys' own table cos_k (1, S, D)), then n object pointers. (Tq, S, t, R, n)
EDGETAM_CALLS = {"frames, latents and pointers": (6, 4, 2, 3, 2), "one frame, no latents": (6, 4, 0, 1, 0),
                 "one frame, latents and pointers": (6, 4, 4, 1, 3),  # (a video's second frame: one frame of memory)
                 "pointers alone": (6, 4, 2, 3, 5), "one spatial token a frame": (1, 1, 1, 4, 1)}


@pytest.mark.parametrize("call", EDGETAM_CALLS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_patched_edgetam_cross_drop_in_is_the_modules_formula_rounded_once(call, dtype):
    """EdgeTAM's cross-attention function: q turned by its table, the spatial tokens of each frame of k by the
    keys' table, the latents and the pointers k's own, bit for bit; against the module's own function run in
    float64, then the gradients against its own; a launch for q and one a frame."""
    from ropebook.kernels import hf

    module = _hf_module("edgetam_video")
    original = module.apply_rotary_pos_emb_2d_cross_attn
    T, S, t, R, n = EDGETAM_CALLS[call]
    Tk = n if call == "pointers alone" else R * (t + S) + n
    q = qk(B=2, T=T, HQ=2, D=16, dtype=dtype)[0]
    k = qk(B=2, T=Tk, HQ=3, D=16, dtype=dtype, seed=1)[0]
    tables = _sam_table(T, 16)  # q's (1, T, D)
    cos_k, sin_k = (x[:, 3:] for x in _sam_table(S + 3, 16))  # the keys' (1, S, D): other angles than q's first rows
    kw = dict(num_k_exclude_rope=n, repeat_freqs_k=R)
    want = original(q.double(), k.double(), *(x.double() for x in (*tables, cos_k, sin_k)), **kw)
    with K.patch_hf(module), mock.patch.object(hf._factory, "_rope_qk_cos_sin", wraps=hf._factory._rope_qk_cos_sin) as launches:
        assert module.apply_rotary_pos_emb_2d_cross_attn is K.hf_apply_rotary_pos_emb_2d_cross_attn
        got = module.apply_rotary_pos_emb_2d_cross_attn(q, k, *tables, cos_k, sin_k, **kw)
    assert launches.call_count == 1 + (0 if call == "pointers alone" else R)
    for g, w, x in zip(got, want, (q, k)):
        assert g.shape == x.shape and g.dtype == x.dtype
        assert_close_dtype(g, w.to(dtype))
    per = t + S
    for i in range(0 if call == "pointers alone" else R):  # the latents, and the pointers, as they came
        assert torch.equal(got[1][:, :, i * per:i * per + t], k[:, :, i * per:i * per + t])
    assert torch.equal(got[1][:, :, Tk - n:], k[:, :, Tk - n:])
    if call == "pointers alone":  # no key turned: k's own memory, as theirs returns it
        assert got[1].data_ptr() == k.data_ptr() and got[1].stride() == k.stride()
    if dtype == torch.float32:
        x64 = [x.double().requires_grad_() for x in (q, k)]
        g = [torch.randn_like(w) for w in want]
        torch.autograd.backward(original(*x64, *(x.double() for x in (*tables, cos_k, sin_k)), **kw), g)
        x32 = [x.detach().requires_grad_() for x in (q, k)]
        torch.autograd.backward(K.hf_apply_rotary_pos_emb_2d_cross_attn(*x32, *tables, cos_k, sin_k, **kw),
                                [x.float() for x in g])
        for a, b in zip(x32, x64):
            assert_close_dtype(a.grad, b.grad.float())


def _edgetam_cross(q, k, cos, sin, cos_k, sin_k, num_k_exclude_rope=0, repeat_freqs_k=1, spatial_last=True):
    """EdgeTAM's cross-attention function, written out (``spatial_last`` False: each frame's first S tokens
    turned, the latents put after them)."""
    m = k.shape[-2] - num_k_exclude_rope
    qr = q * cos + _pairwise(q) * sin
    if m == 0:
        return qr, k[..., m:, :]
    per, S = m // repeat_freqs_k, cos_k.shape[-2]
    parts = []
    for i in range(repeat_freqs_k):
        f = k[..., i * per:(i + 1) * per, :]
        a, b = (f[..., :per - S, :], f[..., per - S:, :]) if spatial_last else (f[..., S:, :], f[..., :S, :])
        turned = b * cos_k + _pairwise(b) * sin_k
        parts += [a, turned] if spatial_last else [turned, a]
    return qr, torch.cat((*parts, k[..., m:, :]), -2)


def _edgetam_spatial_first(q, k, cos, sin, cos_k, sin_k, num_k_exclude_rope=0, repeat_freqs_k=1):
    return _edgetam_cross(q, k, cos, sin, cos_k, sin_k, num_k_exclude_rope, repeat_freqs_k, spatial_last=False)


def _edgetam_keys_by_qs_table(q, k, cos, sin, cos_k, sin_k, num_k_exclude_rope=0, repeat_freqs_k=1):  # cos_k unread
    S = cos_k.shape[-2]
    return _edgetam_cross(q, k, cos, sin, cos[..., :S, :], sin[..., :S, :], num_k_exclude_rope, repeat_freqs_k)


def _edgetam_as_sam2(q, k, cos, sin, cos_k, sin_k, num_k_exclude_rope=0, repeat_freqs_k=1):
    """SAM 2's way with the keys' table: cos_k tiled over every memory key, the latents turned too."""
    m = k.shape[-2] - num_k_exclude_rope
    ck, sk = (x.repeat(1, m // cos_k.shape[-2], 1) for x in (cos_k, sin_k))
    y = k[..., :m, :]
    return q * cos + _pairwise(q) * sin, torch.cat((y * ck + _pairwise(y) * sk, k[..., m:, :]), -2)


def _edgetam_heads_folded(q, k, cos, sin, cos_k, sin_k, num_k_exclude_rope=0, repeat_freqs_k=1):
    """EdgeTAM's with k's heads read as more tokens of each frame (reshape (B, R, H·m/R, D) where theirs views
    (B, H, R, m/R, D)): the same for keys of one head."""
    m = k.shape[-2] - num_k_exclude_rope
    B, H, _, D = k.shape
    frames = k[..., :m, :].reshape(B, repeat_freqs_k, -1, D)  # (B, R, H·m/R, D): each "frame" has H·m/R tokens
    t = frames.shape[2] - cos_k.shape[-2]
    sp = frames[:, :, t:]
    turned = torch.cat((frames[:, :, :t], sp * cos_k + _pairwise(sp) * sin_k), 2).reshape(B, H, m, D)
    return q * cos + _pairwise(q) * sin, torch.cat((turned, k[..., m:, :]), -2)


@pytest.mark.parametrize("fn, found", [(_edgetam_cross, None), (_edgetam_spatial_first, "differs by"),
                                       (_edgetam_keys_by_qs_table, "differs by"), (_edgetam_as_sam2, "differs by"),
                                       (_edgetam_heads_folded, "(differs|raised)")])
def test_patch_hf_tells_edgetams_cross_attention_function_from_look_alikes(fn, found):
    """EdgeTAM's formula written out is given its drop-in; one that turns each frame's first tokens where EdgeTAM
    turns its last, one that turns the keys by q's table, SAM 2's function with the keys' table tiled over every
    key (the latents turned too), and one that reads k's heads as more tokens of each frame are refused."""
    _handwritten("apply_rotary_pos_emb_2d_cross_attn", fn, K.hf_apply_rotary_pos_emb_2d_cross_attn, "EdgeTAM's", found)


def test_edgetam_cross_drop_in_gradcheck_and_compiled_backward():
    """Three frames of a latent and two spatial tokens, then two pointers (four launches, on views of k),
    differentiated: gradcheck in float64, and under torch.compile the results and gradients of eager."""
    cos, sin = _sam_table(4, 8, torch.float64)
    cos_k, sin_k = (x[:, 2:] for x in _sam_table(4, 8, torch.float64))
    q = torch.randn(2, 2, 4, 8, dtype=torch.float64, device=DEVICE, requires_grad=True)
    k = torch.randn(2, 1, 3 * 3 + 2, 8, dtype=torch.float64, device=DEVICE, requires_grad=True)
    _gradcheck_and_compiled_backward(K.hf_apply_rotary_pos_emb_2d_cross_attn, (q, k), (cos, sin, cos_k, sin_k, 2, 3))


def _edgetam_memory_attention(layers):
    """EdgeTAM video's module and its memory attention with random weights: ``layers`` layers of 2 heads of 16
    features, queries a 4 × 3 grid of patches, each frame of memory's spatial tokens a 2 × 2 grid."""
    transformers = pytest.importorskip("transformers")
    module = _hf_module("edgetam_video")
    config = transformers.EdgeTamVideoConfig(
        memory_attention_hidden_size=32, memory_attention_num_layers=layers, memory_attention_num_attention_heads=2,
        memory_attention_feed_forward_hidden_size=64, memory_attention_rope_feat_sizes=[4, 3],
        memory_attention_rope_k_sizes=[2, 2])
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    return module, module.EdgeTamVideoMemoryAttention(config).to(DEVICE).eval()


def test_patch_hf_in_edgetams_memory_attention():
    """EdgeTAM video's memory attention with random weights, two layers each of self-attention over a 4 × 3 grid
    of patches (SAM 2's drop-in) and cross-attention to 3 frames of memory, each 2 latents and a 2 × 2 grid, and
    2 pointers (EdgeTAM's): the outputs and gradients, patched against unpatched; a launch for each
    self-attention, and for each cross-attention one for q and one a frame."""
    module, model = _edgetam_memory_attention(layers=2)
    g = torch.Generator().manual_seed(1)
    R, t, P = 3, 2, 2
    x, pe = (torch.randn(12, 2, 32, generator=g).to(DEVICE) for _ in range(2))
    mem, mpe = (torch.randn(R * (t + 4) + P, 2, 64, generator=g).to(DEVICE) for _ in range(2))
    forward = lambda: model(x, mem, pe, mpe, num_object_pointer_tokens=P, num_spatial_memory_tokens=R)  # noqa: E731
    calls = _patched_matches_unpatched(module, "apply_rotary_pos_emb_2d_cross_attn", model, forward,
                                       launches=2 * (1 + 1 + R))  # (the self-attention's launch counted too)
    assert calls.call_count == 2


def test_edgetam_compares_each_table_once_per_forward_pass(monkeypatch):
    """EdgeTAM's memory attention hands every layer two tables, q's and the keys': each is compared (a device
    sync on CUDA) once per forward pass, not once per layer, as one table is in a text model."""

    module, model = _edgetam_memory_attention(layers=3)
    g = torch.Generator().manual_seed(1)
    x, pe = (torch.randn(12, 1, 32, generator=g).to(DEVICE) for _ in range(2))
    mem, mpe = (torch.randn(2 * (1 + 4) + 1, 1, 64, generator=g).to(DEVICE) for _ in range(2))
    forward = lambda: model(x, mem, pe, mpe, num_object_pointer_tokens=1, num_spatial_memory_tokens=2)  # noqa: E731
    with torch.no_grad(), K.patch_hf(module):
        forward()  # (the probes, and the first pass)
        calls = []
        real_equal = torch.equal
        monkeypatch.setattr(torch, "equal", lambda a, b: calls.append(1) or real_equal(a, b))
        forward()
    assert len(calls) == 4  # cos and sin of q's table, then of the keys', for 3 layers




def _tiny_causal_lm(name):
    """A 2-layer model of the family with random weights: GPT-J a quarter of each head (interleaved pairs, one
    tensor a call, sin before cos), GLM half of each head (interleaved pairs),
    GPT-NeoX a quarter (Llama's pairs), gpt-oss all of it (cos one value a pair; experts and sinks too),
    Gemma 4 q and k in separate calls (a sliding-window layer, then a global one with its own cos and sin),
    Cohere all of it (interleaved pairs, cos each value twice in a row), DeepSeek-V3 the 8 rotary features of
    its multi-head latent attention (apply_rotary_pos_emb_interleave: interleaved in, Llama's layout out; one
    key head; a dense layer, then experts), nanochat all of it (Llama's pairs rotated by −θ, then q and k
    normalised; logits soft-capped), DeepSeek-V4 the last half of each head (interleaved pairs, one tensor a
    call: q, the one key-value head, the output turned back by -sin, and the keys its two compressors make,
    every 2 tokens in the first layer and every 4 in the second), Llama 4 all of it (Meta's complex form,
    apply_rotary_emb(xq, xk, freqs_cis), xq (B, T, H, D); then q and k L2-normalised; experts), DeepSeek-V2 the 8
    rotary features of its latent attention (the complex form, xq (B, H, T, D))."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    common = dict(vocab_size=97, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  max_position_embeddings=256, pad_token_id=0)
    if name == "glm":
        model = transformers.GlmForCausalLM(transformers.GlmConfig(**common, num_key_value_heads=2, head_dim=16,
                                                                   partial_rotary_factor=0.5))
    elif name == "gpt_neox":
        model = transformers.GPTNeoXForCausalLM(transformers.GPTNeoXConfig(**common, rotary_pct=0.25))
    elif name == "cohere":
        model = transformers.CohereForCausalLM(transformers.CohereConfig(**common, num_key_value_heads=2,
                                                                          logit_scale=1.0))  # (0.0625 shrinks the logits)
    elif name == "deepseek_v3":
        model = transformers.DeepseekV3ForCausalLM(transformers.DeepseekV3Config(
            **common, moe_intermediate_size=32, num_key_value_heads=4, q_lora_rank=32, kv_lora_rank=16, qk_rope_head_dim=8,
            qk_nope_head_dim=8, v_head_dim=8, n_routed_experts=4, num_experts_per_tok=2, n_group=1, topk_group=1,
            first_k_dense_replace=1))
        assert model.config.rope_interleave  # (the default): the layers call apply_rotary_pos_emb_interleave
    elif name == "gptj":  # (a quarter of each head rotated: the model slices it off and hands the function a view)
        model = transformers.GPTJForCausalLM(transformers.GPTJConfig(vocab_size=97, n_embd=64, n_inner=128, n_layer=2,
                                                                     n_head=4, rotary_dim=4, n_positions=256,
                                                                     pad_token_id=0, bos_token_id=1, eos_token_id=2))
    elif name == "deepseek_v4":
        model = transformers.DeepseekV4ForCausalLM(transformers.DeepseekV4Config(
            **{key: v for key, v in common.items() if key != "intermediate_size"}, moe_intermediate_size=32, num_key_value_heads=1, head_dim=16,
            q_lora_rank=32, n_routed_experts=4, num_experts_per_tok=2, bos_token_id=1, eos_token_id=2, o_groups=2,
            o_lora_rank=16, index_n_heads=2, index_head_dim=16, index_topk=4, sliding_window=4, hc_mult=2,
            partial_rotary_factor=0.5, layer_types=["compressed_sparse_attention", "heavily_compressed_attention"],
            compress_rates={"compressed_sparse_attention": 2, "heavily_compressed_attention": 4}))
    elif name == "nanochat":
        model = transformers.NanoChatForCausalLM(transformers.NanoChatConfig(**common, num_key_value_heads=2,
                                                                             bos_token_id=1, eos_token_id=2))
    elif name == "gemma4":
        model = transformers.Gemma4ForCausalLM(transformers.Gemma4TextConfig(**common, num_key_value_heads=2, head_dim=16,
                                                                             layer_types=["sliding_attention", "full_attention"]))
    elif name == "llama4":  # (both layers rotate: the first NoPE layer would be the fourth)
        model = transformers.Llama4ForCausalLM(transformers.Llama4TextConfig(
            **common, intermediate_size_mlp=128, num_key_value_heads=2, head_dim=16, num_local_experts=2,
            num_experts_per_tok=1, bos_token_id=1, eos_token_id=2))
    elif name == "deepseek_v2":
        model = transformers.DeepseekV2ForCausalLM(transformers.DeepseekV2Config(
            **common, moe_intermediate_size=32, num_key_value_heads=4, q_lora_rank=32, kv_lora_rank=16, qk_rope_head_dim=8,
            qk_nope_head_dim=8, v_head_dim=8, n_routed_experts=4, num_experts_per_tok=2, first_k_dense_replace=1,
            bos_token_id=1, eos_token_id=2))
    else:
        model = transformers.GptOssForCausalLM(transformers.GptOssConfig(**common, num_key_value_heads=2, head_dim=16,
                                                                         num_local_experts=4, num_experts_per_tok=2))
    return model.to(DEVICE).eval()


@pytest.mark.parametrize("name", ["glm", "gpt_neox", "gpt_oss", "gemma4", "cohere", "deepseek_v3", "gptj", "nanochat",
                                  "deepseek_v4", "llama4", "deepseek_v2"])
def test_patch_hf_in_tiny_models_of_other_families(name):
    """The forward pass, greedy decoding through the KV cache and the gradients, patched against unpatched, in
    families whose apply_rotary_pos_emb is not Llama's: each runs the kernel (counted), with the same
    results. Installing Llama's drop-in in GLM instead changes the logits (the silent wrong answer patch_hf
    used to give there), GLM's in Cohere, whose pairs are GLM's but whose cos is laid out otherwise, and
    Llama's in nanochat, whose rotation turns the other way.
    (GLM's in DeepSeek-V3 would not: its function only permutes the features of q and k alike, which q·k does
    not see. test_patched_interleave_is_deepseeks_formula_rounded_once compares the tensors themselves.)"""
    model = _tiny_causal_lm(name)
    module = _hf_module(name)
    ids = torch.randint(0, 97, (2, 9), generator=torch.Generator().manual_seed(1)).to(DEVICE)

    def run():
        with torch.no_grad():
            logits = model(ids).logits
            tokens = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=3, do_sample=False,
                                    pad_token_id=0)
        model.zero_grad()
        model(ids, labels=ids).loss.backward()
        return logits, tokens, [p.grad.clone() for p in model.parameters() if p.grad is not None]

    attr = "apply_rotary_emb" if name in ("llama4", "deepseek_v2") else "apply_rotary_pos_emb"  # (Meta's complex form)
    with mock.patch.object(module, attr, wraps=getattr(module, attr)) as calls:
        want_logits, want_tokens, want_grads = run()
    from ropebook.kernels import hf

    with mock.patch.object(hf._factory, "_rope_qk_cos_sin", wraps=hf._factory._rope_qk_cos_sin) as launches, K.patch_hf(module):
        logits, tokens, grads = run()
    if name == "deepseek_v4":  # one launch for each call of its own (a count that depends on the compressors)
        assert launches.call_count == calls.call_count > 2 * 3 * (1 + 3 + 1)
    else:
        per_layer = 2 if name in ("gemma4", "gptj") else 1  # Gemma and GPT-J rotate q and k in separate calls
        assert launches.call_count == 2 * per_layer * (1 + 3 + 1)  # 2 layers: the forward, 3 generation steps, the loss's
    torch.testing.assert_close(logits, want_logits, rtol=1e-5, atol=1e-5)
    assert torch.equal(tokens, want_tokens)
    assert len(grads) == len(want_grads)
    for g, w in zip(grads, want_grads):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-6)
    if name in ("glm", "cohere", "nanochat"):
        wrong_drop_in = K.hf_apply_rotary_pos_emb_interleaved if name == "cohere" else K.hf_apply_rotary_pos_emb
        with mock.patch.object(module, "apply_rotary_pos_emb", wrong_drop_in), torch.no_grad():
            wrong = model(ids).logits
        assert (wrong - want_logits).abs().max() > 1e-3


def _complex_args(form, dtype, rows, scale=1.25, seed=0):
    """q, k and freqs_cis for Meta's complex form: q (B, T, H, D) (Llama 4's, its vision tower's) or (B, H, T, D)
    (DeepSeek-V2's), 2 sequences of 5 tokens, D = 16, k with one head; freqs_cis (B, T, D/2) at positions that
    differ between the sequences, or (1, T, D/2), or the vision tower's (T, 1, D/2), in complex64, times an
    attention scaling (YaRN's mscale: not of modulus 1)."""
    q, k = qk(B=2, T=5, HQ=4, HK=1, D=16, dtype=dtype, seed=seed)
    if form != "deepseek_v2":
        q, k = q.transpose(1, 2), k.transpose(1, 2)
    c, s = rb.rope_cos_sin(torch.tensor([[3, 4, 5, 6, 7], [90, 91, 92, 93, 94]]), 16)  # (B, T, D/2)
    freqs = torch.complex(c, s) * scale
    if form == "llama4_vision":
        freqs = freqs[1][:, None]  # (T, 1, D/2)
    elif rows == "one row":
        freqs = freqs[1:]
    freqs = freqs.to(DEVICE)
    if rows == "conjugated":  # a lazy view: torch's conjugate bit set, the memory freqs_cis's own
        freqs = freqs.conj()
    elif rows == "negated":  # torch's negative bit (what a conjugate view of a real part carries)
        freqs = torch._neg_view(freqs)
    elif rows == "any shape":  # the vision tower's function views any T·D/2 values as (1, T, 1, D/2)
        freqs = freqs.reshape(-1, 2)
    return q, k, freqs


COMPLEX_MODULES = {"llama4": ("llama4", "apply_rotary_emb"), "deepseek_v2": ("deepseek_v2", "apply_rotary_emb"),
                   "llama4_vision": ("llama4", "vision_apply_rotary_emb")}
COMPLEX_DROP_INS = {"llama4": "hf_apply_rotary_emb", "deepseek_v2": "hf_apply_rotary_emb_deepseek_v2",
                    "llama4_vision": "hf_vision_apply_rotary_emb"}


@pytest.mark.parametrize("form, rows, dtype", [
    *((form, rows, dtype) for form, rows in (("llama4", "per sequence"), ("llama4", "one row"), ("deepseek_v2", "per sequence"),
                                             ("deepseek_v2", "one row"), ("llama4_vision", "one row"))
      for dtype in (torch.float32, torch.float16, torch.bfloat16)),
    # (the views are about freqs_cis, not q's dtype: float32 covers them)
    *((form, rows, torch.float32) for form, rows in (("llama4", "conjugated"), ("llama4", "negated"),
                                                     ("deepseek_v2", "conjugated"), ("llama4_vision", "any shape")))])
def test_patched_complex_drop_in_is_the_modules_formula_rounded_once(form, rows, dtype):
    """Meta's complex form, each pair (2i, 2i + 1) times freqs_cis: Llama 4's, DeepSeek-V2's and Llama 4's vision
    tower's functions, which multiply in float32 (complex64) and round once to q's dtype, as the kernel does.
    Against the module's own function, then the gradients against its own (float32: the product's order of
    summation aside, the same arithmetic). freqs_cis also as a lazy conjugate or negated view, whose memory is not
    what it means (the drop-in resolves it: view_as_real refuses the conjugate bit, and the negative bit, read where
    it lies, would turn the wrong way)."""
    name, attr = COMPLEX_MODULES[form]
    module = _hf_module(name)
    original = getattr(module, attr)
    q, k, freqs = _complex_args(form, dtype, rows)
    want = original(q, k, freqs)
    with K.patch_hf(module):
        assert getattr(module, attr) is getattr(K, COMPLEX_DROP_INS[form])
        got = getattr(module, attr)(q, k, freqs)
    assert len(got) == 2
    for g, w in zip(got, want):
        assert_close_dtype(g, w)
    if dtype == torch.float32:
        xs, ys = [[x.detach().requires_grad_() for x in (q, k)] for _ in range(2)]
        g = [torch.randn_like(w) for w in want]
        torch.autograd.backward(original(*xs, freqs), g)
        torch.autograd.backward(getattr(K, COMPLEX_DROP_INS[form])(*ys, freqs), g)
        for a, b in zip(ys, xs):
            assert_close_dtype(a.grad, b.grad)


def _complex_conj(xq, xk, freqs_cis):  # Llama 4's, times the conjugate: a rotation by −θ
    return _llama4_like(xq, xk, freqs_cis.conj())


def _llama4_like(xq, xk, freqs_cis):  # Llama 4's function, written out
    out = []
    for x in (xq, xk):
        z = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
        out.append(torch.view_as_real(z * freqs_cis[:, :, None, :]).flatten(3).type_as(x))
    return tuple(out)


def _complex_halves(xq, xk, freqs_cis):  # pairs (i, i + D/2) (Llama's pairing) times freqs_cis
    out = []
    for x in (xq, xk):
        h = x.shape[-1] // 2
        z = torch.complex(x[..., :h].float(), x[..., h:].float()) * freqs_cis[:, :, None, :]
        out.append(torch.cat((z.real, z.imag), -1).type_as(x))
    return tuple(out)


def _complex_first_sequence(xq, xk, freqs_cis):  # the first sequence's rotations for the whole batch
    return _llama4_like(xq, xk, freqs_cis[:1])


@pytest.mark.parametrize("fn, found", [(_llama4_like, None), (_complex_conj, "differs by"), (_complex_halves, "differs by"),
                                       (_complex_first_sequence, "differs by")])
def test_patch_hf_tells_meta_complex_function_from_look_alikes(fn, found):
    """Llama 4's formula written out is given its drop-in; one that multiplies by the conjugate (a turn by −θ), one
    that pairs the halves (i, i + D/2) as Llama's rotate_half does, and one that turns every sequence by the first
    one's angles are refused."""
    _handwritten("apply_rotary_emb", fn, K.hf_apply_rotary_emb, "Llama 4's", found)


def test_patch_hf_leaves_an_apply_rotary_emb_of_another_form_where_it_has_something_else_to_patch():
    """A modelling file may import flash-attn's apply_rotary_emb(x, cos, sin, ...) under its own name beside its
    apply_rotary_pos_emb: patch_hf patches the latter and leaves the former as it is. A module whose only function
    is such an apply_rotary_emb is refused, with what the probe found; so is an apply_rotary_emb that takes Meta's
    call and computes another rotation (a drop-in would change the outputs, and leaving it would hide that)."""
    import types

    def flash_like(x, cos, sin, interleaved=False):  # flash-attn's signature: one tensor, cos and sin (T, D/2)
        return _llama4_like(x, x, torch.complex(cos, sin))[0]

    module = types.ModuleType("remote_code")
    module.apply_rotary_pos_emb, module.apply_rotary_emb = _llama, flash_like
    with K.patch_hf(module):
        assert module.apply_rotary_pos_emb is K.hf_apply_rotary_pos_emb and module.apply_rotary_emb is flash_like
    assert module.apply_rotary_pos_emb is _llama
    del module.apply_rotary_pos_emb
    with pytest.raises(ValueError, match=r"remote_code.apply_rotary_emb computes none.*defines no other function to "
                                         r"patch.*Llama 4's.*raised"):
        with K.patch_hf(module):
            pass
    assert module.apply_rotary_emb is flash_like
    # Meta's call taken, something else computed (a turn by −θ): refused, though the module has another function
    module.apply_rotary_pos_emb = _llama
    module.apply_rotary_emb = _complex_conj
    with pytest.raises(ValueError, match=r"remote_code.apply_rotary_emb computes none.*Llama 4's.*differs by"):
        with K.patch_hf(module):
            pass
    assert module.apply_rotary_pos_emb is _llama and module.apply_rotary_emb is _complex_conj


@pytest.mark.parametrize("form", ["llama4", "deepseek_v2"])
def test_complex_drop_in_gradcheck_and_compiled_backward(form):
    """freqs_cis in complex128 (its parts float64: view_as_real, read where they lie), differentiated: gradcheck,
    and under torch.compile (fullgraph, the custom operator) the results and gradients of eager."""
    drop_in = getattr(K, COMPLEX_DROP_INS[form])
    q, k, freqs = _complex_args(form, torch.float64, "per sequence")
    freqs = freqs.to(torch.complex128)
    _gradcheck_and_compiled_backward(drop_in, (q.detach().requires_grad_(), k.detach().requires_grad_()), (freqs,))


def test_patch_hf_in_a_tiny_llama4_vision_tower():
    """A 2-layer Llama 4 vision tower (a 4 x 4 grid of patches and a class token, whose angles are zero): the
    outputs and gradients, patched against unpatched, one launch for each call of vision_apply_rotary_emb
    (which its attention makes with freqs_ci by keyword)."""
    transformers = pytest.importorskip("transformers")
    module = _hf_module("llama4")
    torch.manual_seed(0)
    model = module.Llama4VisionModel(transformers.Llama4VisionConfig(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256, image_size=32, patch_size=8,
        vision_output_dim=64, projector_input_dim=64, projector_output_dim=64, pixel_shuffle_ratio=0.5)).to(DEVICE).eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2)).to(DEVICE)
    calls = _patched_matches_unpatched(module, "vision_apply_rotary_emb", model,
                                       lambda: model(pixel_values=x).last_hidden_state)
    assert calls.call_count == 2 and calls.call_args.kwargs["freqs_ci"].shape == (17, 1, 8)


# The modules that define DeepSeek-V3's apply_rotary_pos_emb_interleave (transformers 5.23 has 12; these four
# include the ones without an apply_rotary_pos_emb of their own, and Mistral Large 3's copy, written otherwise)
HF_INTERLEAVE = ["deepseek_v3", "glm4_moe_lite", "bailing_hybrid", "mistral_large4"]


@pytest.mark.parametrize("name", HF_INTERLEAVE)
def test_patch_hf_replaces_deepseeks_interleave_function_too(name):
    """Where a module defines apply_rotary_pos_emb_interleave, patch_hf probes it and installs its drop-in beside
    apply_rotary_pos_emb's (a module may define it alone), and puts both back after."""
    module = _hf_module(name)
    before = {attr: getattr(module, attr, None) for attr in ("apply_rotary_pos_emb", "apply_rotary_pos_emb_interleave")}
    with K.patch_hf(module):
        assert module.apply_rotary_pos_emb_interleave is K.hf_apply_rotary_pos_emb_interleave
        if before["apply_rotary_pos_emb"] is not None:
            assert module.apply_rotary_pos_emb is K.hf_apply_rotary_pos_emb
        with K.patch_hf(module):  # nested: the drop-ins stay
            assert module.apply_rotary_pos_emb_interleave is K.hf_apply_rotary_pos_emb_interleave
    assert {attr: getattr(module, attr, None) for attr in before} == before


@pytest.mark.parametrize("name", ["deepseek_v3", "mistral_large4"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("unsqueeze_dim", [1, 2])
def test_patched_interleave_is_deepseeks_formula_rounded_once(name, dtype, unsqueeze_dim):
    """The drop-in against the module's own apply_rotary_pos_emb_interleave run in float64: pairs (2i, 2i + 1) of q
    and of one key head rotated by cos's first half (the second half anything: not read), written out as
    (i, i + r/2), per sequence; and its backward, the gradient the module's own function gives (float64)."""
    module = _hf_module(name)
    original = module.apply_rotary_pos_emb_interleave
    q, k = qk(B=2, T=5, HQ=4, HK=1, D=16, dtype=dtype)
    c, s = rb.rope_cos_sin(torch.tensor([[3, 4, 5, 6, 7], [90, 91, 92, 93, 94]]), 16)  # (B, T, 8)
    cos, sin = torch.cat((c, c + 0.5), -1).to(DEVICE, dtype), torch.cat((s, s - 0.5), -1).to(DEVICE, dtype)
    if unsqueeze_dim == 2:
        q, k = q.transpose(1, 2), k.transpose(1, 2)  # (B, T, H, D)
    want_q, want_k = original(q.double(), k.double(), cos.double(), sin.double(), unsqueeze_dim=unsqueeze_dim)
    with K.patch_hf(module):
        qr, kr = module.apply_rotary_pos_emb_interleave(q, k, cos, sin, None, unsqueeze_dim)  # position_ids: unused
    assert_close_dtype(qr, want_q.to(dtype))
    assert_close_dtype(kr, want_k.to(dtype))
    if dtype == torch.float32:
        q64, k64 = (x.double().requires_grad_() for x in (q, k))
        g = torch.randn_like(want_q), torch.randn_like(want_k)
        torch.autograd.backward(original(q64, k64, cos.double(), sin.double(), unsqueeze_dim=unsqueeze_dim), g)
        q32, k32 = (x.detach().requires_grad_() for x in (q, k))
        torch.autograd.backward(K.hf_apply_rotary_pos_emb_interleave(q32, k32, cos, sin, unsqueeze_dim=unsqueeze_dim),
                                [x.float() for x in g])
        assert_close_dtype(q32.grad, q64.grad.float())
        assert_close_dtype(k32.grad, k64.grad.float())


@pytest.mark.parametrize("fn", ["hf_apply_rotary_pos_emb_interleave", "hf_apply_rotary_pos_emb_nanochat"])
def test_interleave_and_nanochat_drop_ins_gradcheck_and_compiled_backward(fn):
    """The rotation that reads interleaved pairs and writes Llama's layout (DeepSeek-V3's), and the rotation by −θ
    (nanochat's), differentiated: gradcheck in float64 (the first's backward reads Llama's layout and writes
    interleaved, the second's rotates by +θ), and through the custom operator under torch.compile (fullgraph)
    the results and gradients of eager."""
    drop_in = getattr(K, fn)
    c, s = rb.rope_cos_sin(torch.arange(3), 8)
    cos, sin = torch.cat((c, c), -1).to(DEVICE, torch.float64), torch.cat((s, s), -1).to(DEVICE, torch.float64)
    q = torch.randn(2, 3, 3, 8, dtype=torch.float64, device=DEVICE, requires_grad=True)
    k = torch.randn(2, 1, 3, 8, dtype=torch.float64, device=DEVICE, requires_grad=True)
    _gradcheck_and_compiled_backward(drop_in, (q, k), (cos, sin))


def _glm_pairs_out_interleaved(q, k, cos, sin, position_ids=None, unsqueeze_dim=1):  # GLM's rotation: no de-interleave
    h = cos.shape[-1] // 2
    c, s = (x[..., :h].repeat_interleave(2, -1).unsqueeze(unsqueeze_dim) for x in (cos, sin))
    rot = lambda x: torch.stack((-x[..., 1::2], x[..., 0::2]), -1).flatten(-2)  # noqa: E731
    return q * c + rot(q) * s, k * c + rot(k) * s


def test_patch_hf_refuses_an_interleave_function_that_is_not_deepseeks():
    """A module whose apply_rotary_pos_emb_interleave computes GLM's rotation (output interleaved, not written as
    (i, i + r/2)) is refused, with the function named, and nothing is patched."""
    import types

    module = types.ModuleType("handwritten")
    module.apply_rotary_pos_emb = _llama
    module.apply_rotary_pos_emb_interleave = _glm_pairs_out_interleaved
    with pytest.raises(ValueError, match=r"handwritten.apply_rotary_pos_emb_interleave computes none.*DeepSeek-V3's.*"
                                         r"differs by"):
        with K.patch_hf(module):
            pass
    assert module.apply_rotary_pos_emb is _llama and module.apply_rotary_pos_emb_interleave is _glm_pairs_out_interleaved


# The modules that define a vision tower's apply_rotary_pos_emb_vision(q, k, cos, sin) (transformers 5.23 has 27: 25
# copies of Qwen2-VL's, MiniMax-M3-VL's with partial rotary, Inkling 2's with Cohere's pairs), and what patch_hf installs
HF_VISION = {"qwen2_vl": "vision", "qwen2_5_vl": "vision", "qwen3_vl": "vision", "glm4v": "vision", "mlcd": "vision",
             "kimi_k25": "vision", "minimax_m3_vl": "vision", "inkling2": "vision_cohere"}
VISION_DROP_INS = {"vision": "hf_apply_rotary_pos_emb_vision", "vision_cohere": "hf_apply_rotary_pos_emb_vision_cohere"}


@pytest.mark.parametrize("name", HF_VISION)
def test_patch_hf_replaces_the_vision_towers_function_too(name):
    """Where a module defines apply_rotary_pos_emb_vision, patch_hf probes it against the vision drop-ins (q and k
    (T, H, D) or (B, T, H, D), cos (T, r)) and installs the one it computes beside the text model's, and puts both
    back after."""
    module = _hf_module(name)
    before = {attr: getattr(module, attr, None) for attr in ("apply_rotary_pos_emb", "apply_rotary_pos_emb_vision")}
    with K.patch_hf(module):
        assert module.apply_rotary_pos_emb_vision is getattr(K, VISION_DROP_INS[HF_VISION[name]])
        if before["apply_rotary_pos_emb"] is not None:
            assert module.apply_rotary_pos_emb is not before["apply_rotary_pos_emb"]
        with K.patch_hf(module):  # nested: the drop-ins stay
            assert module.apply_rotary_pos_emb_vision is getattr(K, VISION_DROP_INS[HF_VISION[name]])
    assert {attr: getattr(module, attr, None) for attr in before} == before


@pytest.mark.parametrize("name, r", [("qwen2_5_vl", 16), ("mlcd", 16), ("minimax_m3_vl", 12), ("inkling2", 16)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("batched", [False, True])
def test_patched_vision_drop_in_is_the_modules_formula_rounded_once(name, r, dtype, batched):
    """The vision drop-in patch_hf installs, against the module's own function run in float64: q and k views of one
    fused qkv projection (T, H, D), as Qwen2-VL's tower makes them, or (B, T, H, D); cos and sin float32 (T, r),
    as the towers compute them, whatever q's dtype (Llama's form each value twice, Inkling 2's each twice in a
    row); r of D = 16 features (MiniMax-M3-VL's partial rotary). Then the gradients, against the module's own."""
    module = _hf_module(name)
    original = module.apply_rotary_pos_emb_vision
    B, T, H, D = (2 if batched else 1), 7, 3, 16
    g = torch.Generator().manual_seed(0)
    qkv = torch.randn(B, T, 3, H, D, generator=g, dtype=torch.float64).to(DEVICE, dtype)  # one fused projection
    q, k = qkv[:, :, 0], qkv[:, :, 1]  # (B, T, H, D) views, tokens 3·H·D apart
    if not batched:
        q, k = q[0], k[0]  # (T, H, D): the patches of every image in one sequence
    rows, cols = torch.tensor([0, 0, 0, 1, 1, 1, 2]), torch.tensor([0, 1, 2, 0, 1, 2, 0])  # each patch's place
    c, s = (torch.cat(x, -1) for x in zip(rb.rope_cos_sin(rows, r // 2), rb.rope_cos_sin(cols, r // 2)))  # (T, r/2)
    if HF_VISION[name] == "vision":
        cos, sin = torch.cat((c, c), -1).to(DEVICE), torch.cat((s, s), -1).to(DEVICE)  # (T, r) float32
    else:
        cos, sin = c.repeat_interleave(2, -1).to(DEVICE), s.repeat_interleave(2, -1).to(DEVICE)
    want_q, want_k = original(q.double(), k.double(), cos.double(), sin.double())
    with K.patch_hf(module):
        qr, kr = module.apply_rotary_pos_emb_vision(q, k, cos, sin)
    assert_close_dtype(qr, want_q.to(dtype))
    assert_close_dtype(kr, want_k.to(dtype))
    if r < D:  # partial rotary: the features past r are q's own
        assert torch.equal(qr[..., r:], q[..., r:])
    if dtype == torch.float32:
        q64, k64 = (x.double().requires_grad_() for x in (q, k))
        gq, gk = torch.randn_like(want_q), torch.randn_like(want_k)
        torch.autograd.backward(original(q64, k64, cos.double(), sin.double()), (gq, gk))
        q32, k32 = (x.detach().requires_grad_() for x in (q, k))
        drop_in = getattr(K, VISION_DROP_INS[HF_VISION[name]])
        torch.autograd.backward(drop_in(q32, k32, cos, sin), (gq.float(), gk.float()))
        assert_close_dtype(q32.grad, q64.grad.float())
        assert_close_dtype(k32.grad, k64.grad.float())


def test_vision_drop_in_compiles_into_one_graph():
    """A compiled vision tower (fullgraph, dynamic shapes: the number of patches varies from image to image) runs
    the drop-in as the custom operator, with eager's results and gradients, and one frame for two patch counts."""
    torch._dynamo.reset()
    frames = mock.Mock(wraps=lambda gm, inputs: gm.forward)
    f = torch.compile(K.hf_apply_rotary_pos_emb_vision, backend=lambda gm, inputs: frames(gm, inputs), fullgraph=True,
                      dynamic=True)
    for T in (6, 10):
        g = torch.Generator().manual_seed(T)
        qkv = torch.randn(T, 3, 2, 16, generator=g, dtype=torch.float64).to(DEVICE).requires_grad_()
        c, s = (torch.cat(x, -1) for x in zip(*(rb.rope_cos_sin(torch.arange(T) // d, 8) for d in (1, 3))))  # (T, 8)
        cos, sin = torch.cat((c, c), -1).to(DEVICE, torch.float64), torch.cat((s, s), -1).to(DEVICE, torch.float64)
        grad = torch.randn(2, T, 2, 16, generator=g, dtype=torch.float64).to(DEVICE)
        results = []
        for fn in (K.hf_apply_rotary_pos_emb_vision, f):
            out = fn(qkv[:, 0], qkv[:, 1], cos, sin)
            results.append((out, torch.autograd.grad(out, qkv, tuple(grad))[0]))
        for x, y in zip((*results[0][0], results[0][1]), (*results[1][0], results[1][1])):
            torch.testing.assert_close(x, y, rtol=0, atol=1e-15)
    assert frames.call_count == 1
    assert "torch.ops.ropebook.rope" in frames.call_args.args[0].code  # the operator, in the graph


def _vision_llama(q, k, cos, sin):  # Qwen2-VL's formula, in float32
    return _llama(q, k, cos, sin, unsqueeze_dim=-2)


def _vision_glm(q, k, cos, sin):  # GLM's pairs (2i, 2i + 1) by cos's first half: neither vision form
    return _glm_pairs_out_interleaved(q, k, cos, sin, unsqueeze_dim=-2)


def _vision_minus(q, k, cos, sin):  # a rotation by -θ
    return _llama(q, k, cos, -sin, unsqueeze_dim=-2)


def _vision_first_image(q, k, cos, sin):  # every sequence of a batch rotated by the first one's angles
    return _llama(q, k, cos[:1] if cos.ndim == 3 else cos, sin[:1] if sin.ndim == 3 else sin, unsqueeze_dim=-2)


@pytest.mark.parametrize("fn, found", [(_vision_llama, "vision"), (_vision_glm, "Inkling 2's.*differs by"),
                                       (_vision_minus, "differs by"),
                                       (_vision_first_image, "agrees with the plain call, but not with batched")])
def test_patch_hf_refuses_vision_functions_that_are_not_a_drop_ins(fn, found):
    """Hand-written vision functions: Qwen2-VL's formula is accepted; GLM's interleaved rotation, one that rotates
    by -θ and one that gives every sequence of a batch the first one's angles are refused, with the function named
    and what the probe found."""
    _handwritten("apply_rotary_pos_emb_vision", fn, K.hf_apply_rotary_pos_emb_vision, "Qwen2-VL's",
                 None if found == "vision" else found)


def _tiny_qwen2_5_vl():
    """Qwen2.5-VL with random weights: a 2-block vision tower (16-feature heads, windowed attention in the first
    block, full in the second) and a 2-layer text model with M-RoPE; 4×4-pixel patches, merged 2×2 into tokens."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.Qwen2_5_VLConfig(
        text_config=dict(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, max_position_embeddings=256, bos_token_id=1, eos_token_id=2,
                         rope_parameters=dict(rope_type="default", rope_theta=10000.0, mrope_section=[2, 3, 3])),
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64, patch_size=4,
                           spatial_merge_size=2, temporal_patch_size=2, window_size=8, fullatt_block_indexes=[1]),
        image_token_id=100, video_token_id=101, vision_start_token_id=102)
    return transformers.Qwen2_5_VLForConditionalGeneration(config).to(DEVICE).eval()


def test_patch_hf_in_a_tiny_vision_language_model():
    """Two images (4×6 and 2×2 patches, packed into one sequence of 28 by the vision tower) in a prompt: patched,
    Qwen2.5-VL runs the kernel in each vision block and each text layer (counted) and gives the logits and the
    gradients of every parameter unpatched, in float32. Llama's text drop-in alone in the vision tower's place,
    which rotates (B, H, T, D), would not run on its (T, H, D) patches at all."""
    model = _tiny_qwen2_5_vl()
    module = _hf_module("qwen2_5_vl")
    grid = torch.tensor([[1, 4, 6], [1, 2, 2]], device=DEVICE)  # (frames, rows, columns) of patches per image
    pixels = torch.randn(int(grid.prod(-1).sum()), 3 * 2 * 4 * 4, generator=torch.Generator().manual_seed(1)).to(DEVICE)
    ids = torch.tensor([[1, 102] + [100] * 6 + [5, 102, 100, 7, 8, 9]], device=DEVICE)  # 6 and 1 merged image tokens

    def run():
        with torch.no_grad():
            logits = model(input_ids=ids, pixel_values=pixels, image_grid_thw=grid).logits
        model.zero_grad()
        model(input_ids=ids, pixel_values=pixels, image_grid_thw=grid, labels=ids).loss.backward()
        return logits, [p.grad.clone() for p in model.parameters() if p.grad is not None]

    want_logits, want_grads = run()
    from ropebook.kernels import hf

    with mock.patch.object(hf._factory, "_rope_qk_cos_sin", wraps=hf._factory._rope_qk_cos_sin) as launches, K.patch_hf(module):
        assert module.apply_rotary_pos_emb_vision is K.hf_apply_rotary_pos_emb_vision
        logits, grads = run()
    assert launches.call_count == 2 * (2 + 2)  # two passes, each 2 vision blocks and 2 text layers
    shapes = {tuple(call.args[1].shape) for call in launches.call_args_list}
    assert (1, 2, 28, 16) in shapes  # the vision tower's: 28 patches of 2 heads, as the kernel's (1, H, T, D) view
    torch.testing.assert_close(logits, want_logits, rtol=1e-5, atol=1e-5)
    assert len(grads) == len(want_grads) and len(grads) > 20
    for g, w in zip(grads, want_grads):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-6)
    with mock.patch.object(module, "apply_rotary_pos_emb_vision", K.hf_apply_rotary_pos_emb), torch.no_grad():
        with pytest.raises(ValueError, match="q and k must be 4-d"):
            model(input_ids=ids, pixel_values=pixels, image_grid_thw=grid)
