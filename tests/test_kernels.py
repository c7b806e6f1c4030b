"""The fused Triton kernel (ropebook.kernels) against rb.apply_rope's torch path.

Without CUDA the kernel runs on the CPU through the Triton interpreter: the
autouse fixture sets TRITON_INTERPRET=1 for every test of this module (the
kernel module reads it at launch, so import order does not matter). With CUDA
the same tests run natively on the GPU. The GPU benchmark's tests are in
test_kernel_bench.py; the Hugging Face drop-ins' and patch_hf's in test_kernels_hf.py.
"""

import itertools
import json
import math
import os
import random
import re
import subprocess
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch

pytest.importorskip("triton")

import triton.language as tl  # noqa: E402

import ropebook as rb  # noqa: E402
from kernel_cases import DEVICE, EPS, assert_close_dtype, interpret_on_cpu, qk, tiny_llama  # noqa: E402
from ropebook import kernels as K  # noqa: E402

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
LAYOUTS = ["half", "interleaved"]
# cos and sin: computed in the kernel (math library), read from the table, or computed with the
# experimental quadrant reduction (angles="kernel" with rope_triton.SINCOS="quadrant")
ANGLES = ["kernel", "table", "kernel+quadrant"]
# (head_dim, rotary_dim): full, half, and a rotary width whose r/2 = 6 is no power of two
ROTARY = [(16, None), (16, 8), (16, 12)]


@pytest.fixture(autouse=True)
def _interpreter_on_cpu(monkeypatch, request):
    interpret_on_cpu(monkeypatch)
    callspec = getattr(request.node, "callspec", None)
    if callspec is not None and callspec.params.get("angles") == "kernel+quadrant":
        from ropebook.kernels import rope_triton

        monkeypatch.setattr(rope_triton, "SINCOS", "quadrant")


def _source(angles: str) -> str:
    """rope_qk's angles= for a value of ANGLES (the fixture above has set SINCOS for the quadrant one)."""
    return "kernel" if angles == "kernel+quadrant" else angles


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("angles", ANGLES)
def test_matches_torch_path(dtype, layout, angles):
    q, k = qk(dtype=dtype)
    cache = K.rope_cache(16, max_positions=16, device=DEVICE)
    qr, kr = K.rope_qk(q, k, cache, layout=layout, offsets=3, angles=_source(angles))
    assert qr.stride() == q.stride() and kr.stride() == k.stride()  # the output keeps the input's layout
    assert_close_dtype(qr, rb.apply_rope(q, layout=layout, offset=3))
    assert_close_dtype(kr, rb.apply_rope(k, layout=layout, offset=3))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("angles", ANGLES)
def test_many_tiles_every_element_written(layout, angles):
    """Llama-sized heads over several token tiles; outputs start as NaN, so an unwritten element fails."""
    q, k = qk(B=1, T=19, HQ=32, HK=8, D=128, dtype=torch.bfloat16)
    cache = K.rope_cache(128, max_positions=64, device=DEVICE)
    poison = [torch.full_like(x, float("nan")) for x in (q, k)]  # freed blocks the outputs will likely reuse
    del poison
    qr, kr = K.rope_qk(q, k, cache, layout=layout, offsets=5, angles=_source(angles))
    assert_close_dtype(qr, rb.apply_rope(q, layout=layout, offset=5))
    assert_close_dtype(kr, rb.apply_rope(k, layout=layout, offset=5))


# (BLOCK_T, BLOCK_H, num_warps), on tiles that do not divide the 7 tokens, 5 q heads and 3 k heads
# (BLOCK_T, BLOCK_H, num_warps[, together]) for Hq = 5, Hk = 3: tiles that do not divide T or the head
# counts; together, k's share of 3, 1 (exactly), 1 (two programs with none) and 2 (one short) heads
CONFIGS = [(1, 16, 4), (2, 2, 4), (4, 4, 2), (8, 1, 1), (1, 8, 2, True), (2, 2, 4, True), (1, 1, 1, True), (4, 4, 2, True)]


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("varlen", [False, True])
def test_tile_configurations(monkeypatch, config, varlen):
    from ropebook.kernels import rope_triton

    monkeypatch.setattr(rope_triton, "default_config", lambda T, H, table: config)
    q, k = qk(B=2, T=7, HQ=5, HK=3, dtype=torch.bfloat16)
    offsets = torch.tensor([3, 11], device=DEVICE)
    cache = K.rope_cache(16, max_positions=32, device=DEVICE)
    if varlen:  # the two sequences packed: (H, 14, D), lengths 7 and 7
        qp, kp = (x.transpose(0, 1).reshape(x.shape[1], 14, 16) for x in (q, k))
        cu = torch.tensor([0, 7, 14], device=DEVICE, dtype=torch.int32)
        qr, kr = K.rope_qk(qp, kp, cache, offsets=offsets, cu_seqlens=cu)
        qr, kr = (x.reshape(x.shape[0], 2, 7, 16).transpose(0, 1) for x in (qr, kr))
    else:
        qr, kr = K.rope_qk(q, k, cache, offsets=offsets)
    assert_close_dtype(qr, rb.apply_rope(q, offset=offsets.view(2, 1, 1)))
    assert_close_dtype(kr, rb.apply_rope(k, offset=offsets.view(2, 1, 1)))


@pytest.mark.parametrize("D, rotary_dim", ROTARY)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("angles", ANGLES)
def test_partial_rotary_and_in_place(D, rotary_dim, layout, inplace, angles):
    q, k = qk(D=D, dtype=torch.bfloat16)
    r = rotary_dim or D
    want_q = rb.apply_rope(q, layout=layout, rotary_dim=rotary_dim)
    want_k = rb.apply_rope(k, layout=layout, rotary_dim=rotary_dim)
    cache = K.rope_cache(r, max_positions=8, device=DEVICE)
    qr, kr = K.rope_qk(q, k, cache, layout=layout, inplace=inplace, angles=_source(angles))
    assert (qr.data_ptr() == q.data_ptr()) == inplace
    assert_close_dtype(qr, want_q)
    assert_close_dtype(kr, want_k)
    if inplace:  # rotated in their own storage, q and k alike
        assert_close_dtype(q, want_q)
        assert_close_dtype(k, want_k)


@pytest.mark.parametrize("D, rotary_dim", [(80, 20), (80, 32), (96, 24), (96, None), (256, 64), (40, None)])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("angles", ["kernel", "table"])
def test_head_dims_that_are_not_powers_of_two(D, rotary_dim, layout, angles):
    """The other tests' heads are powers of two wide; models also use 40, 80, 96 and 256, rotating all of
    them or a quarter to a half (rotary_dim 20, 24, 32, 64): tiles of pairs wider than the pairs, a tail
    wider than the rotated part, and both kinds of position (an offset each in decoding, arange in prefill)."""
    r = rotary_dim or D
    cache = K.rope_cache(r, max_positions=300, device=DEVICE)
    for T, offsets in ((1, torch.tensor([5, 290], device=DEVICE)), (6, 0)):
        q, k = qk(B=2, T=T, HQ=3, HK=1, D=D, dtype=torch.bfloat16)
        qr, kr = K.rope_qk(q, k, cache, layout=layout, offsets=offsets, angles=angles)
        offs = offsets.view(2, 1, 1) if T == 1 else 0
        assert_close_dtype(qr, rb.apply_rope(q, layout=layout, rotary_dim=rotary_dim, offset=offs))
        assert_close_dtype(kr, rb.apply_rope(k, layout=layout, rotary_dim=rotary_dim, offset=offs))
        assert torch.equal(qr[..., r:], q[..., r:]) and torch.equal(kr[..., r:], k[..., r:])  # the tail, as it was


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("angles", ANGLES + ["cos_sin"])
def test_q_and_k_together_in_every_mode(monkeypatch, layout, inplace, angles):
    """Programs that rotate q's heads and k's share at once (config ``together``): both layouts, partial
    rotary with its copied tail, in place, every angle source, and (fp64) the backward pass."""
    from ropebook.kernels import rope_triton

    monkeypatch.setattr(rope_triton, "default_config", lambda T, H, table: (1, 2, 2, True))
    q, k = qk(D=16, dtype=torch.bfloat16)  # Hq = 3, Hk = 1: two programs a token, the second with no k head
    r = 12  # r/2 = 6 pairs in a tile of 8, and 4 features passed through
    want = [rb.apply_rope(x, layout=layout, rotary_dim=r, offset=2) for x in (q, k)]
    cache = K.rope_cache(r, max_positions=16, device=DEVICE)
    cos, sin = (c.to(DEVICE) for c in rb.rope_cos_sin(torch.arange(2, 7), r))  # (T, r/2) for positions 2..6

    def run(q, k, inplace=False):
        if angles == "cos_sin":
            return K.rope_qk_cos_sin(q, k, cos, sin, layout=layout, inplace=inplace)
        return K.rope_qk(q, k, cache, layout=layout, offsets=2, inplace=inplace, angles=_source(angles))

    qr, kr = run(q, k, inplace)
    assert (qr.data_ptr() == q.data_ptr()) == inplace
    assert_close_dtype(qr, want[0])
    assert_close_dtype(kr, want[1])
    if not inplace and angles == "kernel":  # the backward (sin negated) in fp64, once a layout (seconds each, interpreted)
        q64, k64 = (x.detach().requires_grad_() for x in qk(B=1, T=3, D=16, dtype=torch.float64))
        assert torch.autograd.gradcheck(run, (q64, k64), fast_mode=True)


@pytest.mark.parametrize("T", [1, 3])
@pytest.mark.parametrize("angles", ANGLES)
def test_per_sequence_offsets(T, angles):
    q, k = qk(B=3, T=T)
    offsets = torch.tensor([0, 7, 40], device=DEVICE, dtype=torch.int32)  # KV-cache lengths
    qr, kr = K.rope_qk(q, k, K.rope_cache(16, max_positions=64, device=DEVICE), offsets=offsets, angles=_source(angles))
    assert_close_dtype(qr, rb.apply_rope(q, offset=offsets.view(3, 1, 1)))
    assert_close_dtype(kr, rb.apply_rope(k, offset=offsets.view(3, 1, 1)))


def test_explicit_positions():
    q, k = qk(B=2, T=4)
    positions = torch.tensor([[5, 1, 9, 2], [0, 0, 3, 30]], device=DEVICE)
    qr, kr = K.rope_qk(q, k, K.rope_cache(16, device=DEVICE), positions=positions, layout="interleaved")
    assert_close_dtype(qr, rb.apply_rope(q, positions[:, None, :], layout="interleaved"))
    assert_close_dtype(kr, rb.apply_rope(k, positions[:, None, :], layout="interleaved"))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("angles", ANGLES)
def test_packed_variable_length_batch(layout, angles):
    lengths, offsets = [3, 1, 4], torch.tensor([0, 5, 2], device=DEVICE)
    cu = torch.tensor([0, 3, 4, 8], device=DEVICE, dtype=torch.int32)
    g = torch.Generator().manual_seed(1)
    q = torch.randn(8, 4, 16, generator=g).to(DEVICE).transpose(0, 1)  # (Hq, N, D) view of (N, Hq, D)
    k = torch.randn(8, 2, 16, generator=g).to(DEVICE).transpose(0, 1)
    cache = K.rope_cache(16, max_positions=16, device=DEVICE)
    qr, kr = K.rope_qk(q, k, cache, cu_seqlens=cu, max_seqlen=4, offsets=offsets, layout=layout, angles=_source(angles))
    for b, (start, n) in enumerate(zip([0, 3, 4], lengths)):
        for x, y in ((q, qr), (k, kr)):
            want = rb.apply_rope(x[:, start:start + n], layout=layout, offset=int(offsets[b]))
            assert_close_dtype(y[:, start:start + n], want)
    # the torch path's packed positions say the same (rb.packed_positions; no Triton needed there)
    positions = rb.packed_positions(cu, offsets=offsets)
    assert_close_dtype(qr, rb.apply_rope(q, positions, layout=layout))
    assert_close_dtype(kr, rb.apply_rope(k, positions, layout=layout))


@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("config", [(1, 4, 2), (2, 2, 1), (1, 4, 2, True), (4, 1, 1, True)])
def test_packed_tokens_past_a_too_small_max_seqlen_come_out_nan(monkeypatch, inplace, config):
    """No program is launched for tokens past max_seqlen, and on CUDA checking it would cost a device sync:
    the program of the last token tile writes NaN over them, in every head of q and k, in place or not. (On
    the CPU the launcher compares max_seqlen with cu_seqlens first; that comparison is switched off here.)"""
    from ropebook.kernels import autograd, op, rope_triton

    monkeypatch.setattr(rope_triton, "default_config", lambda T, H, table: config)
    monkeypatch.setattr(autograd, "_check_cu_seqlens", lambda fn, cu, n, max_seqlen=None, **kw: op.check_cu_seqlens(fn, cu, n))
    cu = torch.tensor([0, 3, 4, 9], device=DEVICE, dtype=torch.int32)  # lengths 3, 1, 5: max_seqlen=3 misses 2
    g = torch.Generator().manual_seed(2)
    q = torch.randn(9, 4, 16, generator=g).to(DEVICE).transpose(0, 1)  # (Hq, N, D)
    k = torch.randn(9, 2, 16, generator=g).to(DEVICE).transpose(0, 1)
    want = [rb.apply_rope(x[:, 4:7]) for x in (q, k)]  # the third sequence's first 3 tokens
    qr, kr = K.rope_qk(q, k, K.rope_cache(16, device=DEVICE), cu_seqlens=cu, max_seqlen=3, inplace=inplace)
    for y, w in zip((qr, kr), want):
        assert torch.isnan(y[:, 7:9]).all()  # tokens 4 and 5 of the third sequence, every head and feature
        assert not torch.isnan(y[:, :7]).any()
        assert_close_dtype(y[:, 4:7], w)
    with pytest.raises(ValueError, match=r"max_seqlen must be a positive int.*got max_seqlen=0"):
        K.rope_qk(q, k, K.rope_cache(16), cu_seqlens=cu, max_seqlen=0)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("D, rotary_dim", [(8, None), (8, 4)])
def test_gradcheck_fp64(layout, D, rotary_dim):
    q, k = qk(B=1, T=2, HQ=2, HK=1, D=D, dtype=torch.float64)
    q, k = q.detach().requires_grad_(), k.detach().requires_grad_()
    cache = K.rope_cache(rotary_dim or D, device=DEVICE)
    assert torch.autograd.gradcheck(lambda q, k: K.rope_qk(q, k, cache, layout=layout, offsets=2), (q, k), fast_mode=True)


def test_backward_is_one_rounding_from_float64_bf16():
    """The bf16 gradient is the float64 gradient rounded once (torch's own bf16 backward rounds twice)."""
    q, k = qk(dtype=torch.bfloat16)
    g = torch.randn(q.shape, dtype=torch.float64).to(DEVICE, torch.bfloat16)
    a = q.detach().requires_grad_()
    K.rope_qk(a, k, K.rope_cache(16, device=DEVICE), offsets=4)[0].backward(g)
    b = q.detach().double().requires_grad_()
    rb.apply_rope(b, offset=4).backward(g.double())
    assert_close_dtype(a.grad, b.grad.to(torch.bfloat16))


@pytest.mark.parametrize("angles", ANGLES)
def test_exact_angles_at_a_million_positions(angles):
    """fp32 outputs stay within a few fp32 roundings of float64 RoPE at positions ~1e6."""
    q, k = qk(B=2, T=4)
    offsets = torch.tensor([999_990, 123_456], device=DEVICE)
    cache = K.rope_cache(16, max_positions=1_000_000, device=DEVICE)
    qr, _ = K.rope_qk(q, k, cache, offsets=offsets, angles=_source(angles))
    want = rb.apply_rope(q.double(), offset=offsets.view(2, 1, 1))
    assert (qr.double() - want).abs().max().item() < 2e-6
    m = offsets.view(2, 1).double() + torch.arange(4, device=DEVICE)  # (B, T)
    naive = (m.float()[..., None] * rb.rope_frequencies(16).float().to(DEVICE)).double()  # fp32 angles
    exact = m[..., None] * rb.rope_frequencies(16).to(DEVICE)
    assert (naive.cos() - exact.cos()).abs().max().item() > 1e-3  # what the kernel avoids


@pytest.mark.parametrize("sincos, ulps", [("libdevice", 4.0), ("quadrant", 1.5)])
def test_computed_cos_sin_error_in_float32_ulps(monkeypatch, sincos, ulps):
    """cos and sin as the kernel forms them, read off by rotating the pair (1, 0), against float64 cos and
    sin of the same fixed-point angle. Bounds, in units of 2^-23: the math library's way converts the
    angle in [-π, π) to float32 and scales it by the float32 constant 2π/2^64: two roundings of at most
    2^-24 relative each, and the constant 0.47·2^-24 off (≤ 2.47·π·2^-24 ≈ 3.9 at |α| = π, where sin's
    value and so its own error are small), then cosf/sinf add up to 2 ulps of their value (CUDA's documented
    bound; an ulp below 1 is at most 2^-24, so that is at most one unit; numpy's, under the interpreter,
    reach about 1.4 ulps, under one unit, as ch-rope-gpu measures): 4 (2.5 measured here). The quadrant
    reduction forms only the rest in [-π/4, π/4] that way (≤ 0.7 once weighted by the other function's value)
    and its polynomials are within 0.6 of cos and sin on that interval (checked by a dense scan when they were
    chosen): 1.5."""
    from ropebook.kernels import rope_triton

    monkeypatch.setattr(rope_triton, "SINCOS", sincos)
    r = 128
    cache = K.rope_cache(r, device=DEVICE)
    g = torch.Generator().manual_seed(0)
    m = torch.cat([torch.arange(64), torch.randint(0, 2**31 - 1, (192,), generator=g)])  # (N,) positions
    x = torch.zeros(1, 1, m.numel(), r, device=DEVICE)
    x[..., : r // 2] = 1.0  # pair i = (1, 0): its rotation is (cos, sin) in the half layout
    y, _ = K.rope_qk(x, None, cache, positions=m[None].to(DEVICE), angles="kernel")
    tau = cache.turns.cpu().numpy().view(np.uint64)
    wrapped = (m.numpy().astype(np.uint64)[:, None] * tau).view(np.int64)  # exact m·τ_i mod 2^64
    angle = torch.from_numpy(wrapped.astype(np.float64) * (2 * math.pi / 2**64))  # (N, r/2), error ~1e-16
    err_cos = (y[0, 0, :, : r // 2].double().cpu() - angle.cos()).abs().max().item()
    err_sin = (y[0, 0, :, r // 2 :].double().cpu() - angle.sin()).abs().max().item()
    assert max(err_cos, err_sin) <= ulps * 2.0**-23, (err_cos, err_sin)
    # float64 inputs compute in float64 whatever SINCOS says (the polynomials are float32's)
    y64, _ = K.rope_qk(x.double(), None, cache, positions=m[None].to(DEVICE), angles="kernel")
    assert (y64[0, 0, :, : r // 2].cpu() - angle.cos()).abs().max().item() < 1e-14


def test_float32_radians_per_turn_unit_is_within_half_a_rounding():
    """The error budget of computed angles (rope_triton's docstring, ch-rope-gpu): the float32 constant
    2π/2^64 the kernel scales by is 0.47·2^-24 relative off the exact value (sympy's π), so the angle's
    relative error is at most 2^-24 + 2^-24 + 0.47·2^-24 = 2.47·2^-24."""
    import sympy as sp

    from ropebook.kernels import rope_triton

    c = np.float32(rope_triton.TWO_PI_OVER_2_64.value)
    rel = abs(sp.Rational(float(c)) / (2 * sp.pi / 2**64) - 1)
    assert 0.46 * 2.0**-24 < float(rel) < 0.47 * 2.0**-24, float(rel) / 2.0**-24
    assert float(c) != 2 * math.pi / 2**64  # the float64 value is not representable: the rounding is real


@pytest.mark.parametrize("rule", [None, rb.scaling.YaRN(8.0, 64)])
def test_turns_are_the_nearest_integer_to_the_exact_turn(rule):
    """τ_i = round(2^64 θ_i / 2π) mod 2^64 for the float64 θ_i, exactly (sympy's π): then the frequency
    adds at most m·π/2^64 to the angle. Formed in float64 instead, τ was up to 182 units off (θ_0 = 1)."""
    import sympy as sp

    inv_freq = rb.rope_frequencies(128, scaling=rule)
    tau = K.rope_cache(128, scaling=rule).turns.numpy().view("uint64")
    for i, theta in enumerate(inv_freq.tolist()):
        nearest = sp.floor(sp.Rational(theta) * 2**63 / sp.pi + sp.Rational(1, 2))  # 2^64 θ / 2π, rounded
        assert int(tau[i]) == int(nearest) % 2**64, (i, theta)


@pytest.mark.parametrize("rule", [None, rb.scaling.Linear(4.0), rb.scaling.YaRN(8.0, 64)])
def test_scaling_rules(rule):
    q, k = qk(T=6)
    qr, kr = K.rope_qk(q, k, K.rope_cache(16, scaling=rule, device=DEVICE))
    assert_close_dtype(qr, rb.apply_rope(q, scaling=rule))


@pytest.mark.parametrize("rule", [rb.scaling.DynamicNTK(4.0, 4), rb.scaling.LongRoPE([1.0] * 8, [4.0] * 8, 4, max_positions=16)],
                         ids=["DynamicNTK", "LongRoPE"])
def test_a_length_dependent_rule_needs_the_length_the_cache_serves(rule):
    """With seq_len=None the cache held the training length's frequencies while apply_rope used max(positions) + 1:
    past the training length rope_qk was off by up to 3.2, silently."""
    with pytest.raises(ValueError, match=r"rope_cache: scaling=\w+\(\.\.\.\) depends on the sequence length, .* "
                                         r"pass seq_len= .* got seq_len=None"):
        K.rope_cache(16, scaling=rule)
    q, k = qk(T=6)  # positions 0 … 5, past the training length 4
    for angles, cache in (("kernel", K.rope_cache(16, scaling=rule, seq_len=6, device=DEVICE)),
                          ("table", K.rope_cache(16, scaling=rule, seq_len=6, max_positions=6, device=DEVICE))):
        qr, kr = K.rope_qk(q, k, cache, angles=angles)
        assert_close_dtype(qr, rb.apply_rope(q, scaling=rule))
        assert_close_dtype(kr, rb.apply_rope(k, scaling=rule))


# (x shape, positions shape or None, rotary_dim)
HOOK_CASES = [((5, 16), None, None), ((3, 5, 16), None, 8), ((2, 3, 5, 16), (2, 1, 5), None),
              ((2, 3, 5, 16), (2, 3, 5), 12), ((2, 2, 3, 5, 16), None, None)]


@pytest.mark.parametrize("shape, pshape, rotary_dim", HOOK_CASES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_apply_rope_backend_triton(shape, pshape, rotary_dim, dtype):
    x = torch.randn(shape, dtype=torch.float64).to(DEVICE, dtype)
    pos = None if pshape is None else torch.randint(0, 100, pshape, device=DEVICE)
    rule = rb.scaling.YaRN(4.0, 32)
    want = rb.apply_rope(x, pos, rotary_dim=rotary_dim, scaling=rule, layout="interleaved")
    got = rb.apply_rope(x, pos, rotary_dim=rotary_dim, scaling=rule, layout="interleaved", backend="triton")
    assert_close_dtype(got, want)


def test_apply_rope_backend_triton_gradient():
    x = torch.randn(2, 1, 3, 8, dtype=torch.float64, device=DEVICE, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: rb.apply_rope(x, backend="triton", offset=5), (x,), fast_mode=True)


def test_auto_backend_picks_triton_only_on_cuda():
    x = torch.randn(1, 2, 4, 8, device=DEVICE)
    torch.testing.assert_close(rb.apply_rope(x, backend="auto"), rb.apply_rope(x), rtol=EPS[x.dtype], atol=1e-6)


def test_import_ropebook_does_not_import_triton():
    code = "import sys, ropebook; assert 'triton' not in sys.modules and 'ropebook.kernels' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


BAD = {
    "layout": (lambda q, k, c: K.rope_qk(q, k, c, layout="neox"), ["layout", "'neox'"]),
    "angles": (lambda q, k, c: K.rope_qk(q, k, c, angles="fast"), ["angles", "'fast'"]),
    "no table": (lambda q, k, c: K.rope_qk(q, k, K.rope_cache(16), angles="table"), ["max_positions"]),
    "rotary_dim": (lambda q, k, c: K.rope_qk(q, k, K.rope_cache(32)), ["rotary_dim", "32", "16"]),
    "k shape": (lambda q, k, c: K.rope_qk(q, k[..., :8], c), ["k must match q", "(2, 1, 5, 8)"]),
    "offsets": (lambda q, k, c: K.rope_qk(q, k, c, offsets=-1), ["offsets", "-1"]),
    "offsets shape": (lambda q, k, c: K.rope_qk(q, k, c, offsets=torch.zeros(3, dtype=torch.int32, device=DEVICE)),
                      ["offsets", "(2,)", "(3,)"]),
    "offsets past int64": (lambda q, k, c: K.rope_qk(q, k, c, offsets=2**63 - 4), ["int64", "offsets=9223372036854775804", "5 tokens"]),
    "table too short": (lambda q, k, c: K.rope_qk(q, k, c, angles="table", offsets=10), ["4 positions", "offsets=10"]),
    "q ndim": (lambda q, k, c: K.rope_qk(q[0], k, c), ["q must be", "(3, 5, 16)"]),
    # positions and offsets together: offsets was silently ignored
    "positions and offsets": (lambda q, k, c: K.rope_qk(q, k, c, positions=torch.zeros(2, 5, dtype=torch.int64, device=DEVICE),
                                                        offsets=100), ["positions or offsets, not both", "offsets=100"]),
    # the same tensor as q and k in place: rotated twice (error 4.9)
    "q is k in place": (lambda q, k, c: K.rope_qk(q, q, c, inplace=True), ["inplace=True", "separate memory"]),
    "q is k in place, cos/sin": (lambda q, k, c: K.rope_qk_cos_sin(q, q, *rb.rope_cos_sin(torch.arange(5, device=DEVICE), 16),
                                                                   inplace=True), ["inplace=True", "separate memory"]),
    "cache rotary_dim": (lambda q, k, c: K.rope_cache(15), ["rope_cache", "rotary_dim", "rotary_dim=15"]),
    # k a view of q's heads 1 and 2 in place: a shared first element was the only overlap refused
    "k inside q in place": (lambda q, k, c: K.rope_qk(q, q[:, 1:], c, inplace=True),
                            ["inplace=True", "separate memory", "share elements", "storage_offset() = 16"]),
    # an expanded k (GQA heads repeated by expand) in place: each element rotated three times
    "expanded k in place": (lambda q, k, c: K.rope_qk(q, k.expand(-1, 3, -1, -1), c, inplace=True),
                            ["inplace=True", "each element of k", "stride 0 over dimension 1", "rotated 3 times"]),
    "expanded q in place, cos/sin": (
        lambda q, k, c: K.rope_qk_cos_sin(k.expand(-1, 3, -1, -1), None, *rb.rope_cos_sin(torch.arange(5, device=DEVICE), 16),
                                          inplace=True), ["each element of q", "stride 0 over dimension 1"]),
    # one storage, strides that differ, memory ranges that cross: not worked out, so refused rather than guessed
    "crossing layouts in place": (lambda q, k, c: K.rope_qk(q, q.transpose(2, 1).reshape(-1)[:160].view(2, 1, 5, 16), c, inplace=True),
                                  ["separate memory", "different strides", "not worked out"]),
}

CU_BAD = [[0, 3, 6], [2, 5, 8], [0, 6, 3, 8], [0, 4, 12]]  # short of N; not from 0; not monotone; past N (wrote out of bounds)


@pytest.mark.parametrize("cu", CU_BAD)
@pytest.mark.parametrize("max_seqlen", [None, 6])
def test_bad_cu_seqlens_is_an_error(cu, max_seqlen):
    if DEVICE == "cuda" and max_seqlen is not None:
        pytest.skip("a CUDA cu_seqlens with max_seqlen given is not checked (it would cost a synchronization)")
    q, k = torch.randn(2, 8, 16, device=DEVICE), torch.randn(1, 8, 16, device=DEVICE)
    with pytest.raises(ValueError, match=r"cu_seqlens must start at 0, be non-decreasing and end at q.shape\[1\]=8"):
        K.rope_qk(q, k, K.rope_cache(16, device=DEVICE), cu_seqlens=torch.tensor(cu, dtype=torch.int32, device=DEVICE),
                  max_seqlen=max_seqlen)


@pytest.mark.parametrize("cu", CU_BAD + [[-3, 4, 8], [0, 8, 5]])
def test_an_unchecked_cu_seqlens_stays_inside_q_and_k(cu, monkeypatch):
    """The case the launcher leaves unchecked (on CUDA, max_seqlen given; simulated here by switching the
    check off): the kernel clamps each sequence to the packed tensor, so the values may be wrong but
    nothing outside q and k is read or written. Before the clamp, [0, 4, 12] wrote past q, [-3, 4, 8] before it."""
    from ropebook.kernels import autograd

    monkeypatch.setattr(autograd, "_check_cu_seqlens", lambda fn, cu_seqlens, n_tokens, max_seqlen=None, **kw: 6)
    pad, n = 16, 8
    qb = torch.full((2, pad + n + pad, 16), 7.0, device=DEVICE)  # q is rows pad … pad + n - 1 of each head
    kb = torch.full((1, pad + n + pad, 16), 7.0, device=DEVICE)
    q, k = qb[:, pad:pad + n], kb[:, pad:pad + n]
    q.copy_(torch.randn_like(q))
    k.copy_(torch.randn_like(k))
    K.rope_qk(q, k, K.rope_cache(16, device=DEVICE), cu_seqlens=torch.tensor(cu, dtype=torch.int32, device=DEVICE),
              max_seqlen=6, inplace=True)
    for buf in (qb, kb):
        outside = torch.cat([buf[:, :pad], buf[:, pad + n:]], dim=1)
        assert (outside == 7.0).all(), f"cu_seqlens={cu}: rows outside q/k written"


def test_in_place_on_views_of_one_fused_projection():
    """q and k sliced from one qkv tensor share storage but not elements: in place is allowed and right."""
    qkv = torch.randn(1, 4, 2 * 2 * 16, device=DEVICE)  # (B, T, (Hq + Hk) · D)
    q = qkv[..., :32].view(1, 4, 2, 16).transpose(1, 2)
    k = qkv[..., 32:].view(1, 4, 2, 16).transpose(1, 2)
    want_q, want_k = rb.apply_rope(q.clone()), rb.apply_rope(k.clone())
    K.rope_qk(q, k, K.rope_cache(16, device=DEVICE), inplace=True)
    assert_close_dtype(q, want_q)
    assert_close_dtype(k, want_k)


def test_in_place_overlap_is_checked_on_every_call_of_a_plan():
    """A plan's signature holds shapes and strides but not where q and k start: views of one buffer with the
    same layout may be apart in one call and overlap in the next, which a repeat must refuse too."""
    buf = torch.randn(1, 4, 5 * 16, device=DEVICE)  # (B, T, 5 heads · D)
    q = buf[..., :48].view(1, 4, 3, 16).transpose(1, 2)
    cache = K.rope_cache(16, device=DEVICE)
    apart = buf[..., 48:64].view(1, 4, 1, 16).transpose(1, 2)
    inside = buf[..., 32:48].view(1, 4, 1, 16).transpose(1, 2)  # q's third head
    assert (apart.stride(), apart.shape) == (inside.stride(), inside.shape)
    K.rope_qk(q, apart, cache, inplace=True)
    with pytest.raises(ValueError, match=r"share elements .*storage_offset\(\) = 32"):
        K.rope_qk(q, inside, cache, inplace=True)


def _element_offsets(shape, stride, offset) -> set:
    return {offset + sum(i * s for i, s in zip(index, stride)) for index in itertools.product(*map(range, shape))}


def test_shared_elements_against_every_element():
    """The in-place overlap test (``_solve_shared``) against the sets of memory offsets themselves, on random
    strided layouts without a repeated element: never wrong; "not worked out" only where strides differ."""
    from ropebook.kernels._aliasing import _solve_shared

    rng = random.Random(0)
    checked = unsure = 0
    for _ in range(2000):
        ndim = rng.randint(1, 4)
        q_shape, k_shape = [rng.randint(1, 4) for _ in range(ndim)], [rng.randint(1, 4) for _ in range(ndim)]
        q_stride = [rng.randint(1, 12) for _ in range(ndim)]
        k_stride = q_stride if rng.random() < 0.7 else [rng.randint(1, 12) for _ in range(ndim)]
        q_off, k_off = rng.randint(0, 60), rng.randint(0, 60)
        q_set, k_set = _element_offsets(q_shape, q_stride, q_off), _element_offsets(k_shape, k_stride, k_off)
        if len(q_set) != math.prod(q_shape) or len(k_set) != math.prod(k_shape):
            continue  # a repeated element: refused before this test is asked
        verdict = _solve_shared(tuple(q_shape), tuple(q_stride), tuple(k_shape), tuple(k_stride), k_off - q_off)
        if verdict is None:
            unsure += 1
            assert any(a > 1 and b > 1 and s != t for a, s, b, t in zip(q_shape, q_stride, k_shape, k_stride))
        else:
            checked += 1
            assert verdict == bool(q_set & k_set), (q_shape, q_stride, k_shape, k_stride, q_off, k_off)
    assert checked > 1000 and unsure < checked / 4, (checked, unsure)


def test_apply_cos_sin_checks_its_arguments():
    x = torch.randn(1, 2, 4, 16, device=DEVICE)
    cos, sin = rb.rope_cos_sin(torch.arange(4, device=DEVICE), 16)
    with pytest.raises(ValueError, match=r"layout must be one of .*got layout='neox'"):
        K.apply_cos_sin(x, cos, sin, layout="neox", rotary_dim=16)  # ran the half layout
    with pytest.raises(ValueError, match=r"rotary_dim must be at most head_dim=16, got rotary_dim=18"):
        K.apply_cos_sin(x, cos, sin, layout="half", rotary_dim=18)
    with pytest.raises(ValueError, match=r"cos must broadcast to .*\(1, 2, 4, 8\), got cos.shape=\(3, 8\)"):
        K.apply_cos_sin(x, cos[:3], sin[:3], layout="half", rotary_dim=16)


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_message(case):
    fn, words = BAD[case]
    q, k = qk()
    with pytest.raises(ValueError) as info:
        fn(q, k, K.rope_cache(16, max_positions=4, device=DEVICE))
    for w in words:
        assert w in str(info.value), (w, str(info.value))


@pytest.mark.skipif(DEVICE == "cuda", reason="the CPU-without-interpreter error")
def test_sincos_block_sets_and_restores():
    from ropebook.kernels import rope_triton

    before = rope_triton.SINCOS
    with pytest.raises(RuntimeError, match="inside"):
        with rope_triton.sincos("quadrant"):
            assert rope_triton.SINCOS == "quadrant"
            raise RuntimeError("inside")
    assert rope_triton.SINCOS == before
    with pytest.raises(ValueError, match=r"method must be 'libdevice' or 'quadrant', got 'poly'"):
        with rope_triton.sincos("poly"):
            pass


def test_unknown_sincos_is_a_clear_error(monkeypatch):
    from ropebook.kernels import rope_triton

    monkeypatch.setattr(rope_triton, "SINCOS", "quadrants")
    with pytest.raises(ValueError, match=r"SINCOS must be 'libdevice' or 'quadrant', got 'quadrants'"):
        K.rope_qk(*qk(), K.rope_cache(16, device=DEVICE))


def test_cpu_without_interpreter_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET")
    q, k = qk()
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        K.rope_qk(q, k, K.rope_cache(16))
    with pytest.raises(RuntimeError, match="backend='triton'"):
        rb.apply_rope(q, backend="triton")


def _captured_args(angles="table", consts=False):
    """The argument list of one decode-shaped launch, recorded instead of run (and its constexprs, by name)."""
    from ropebook.kernels import rope_triton

    q, k = qk(B=2, T=1, HQ=4, HK=2, D=16, dtype=torch.bfloat16)
    rope_triton._capture = captured = []
    try:
        K.rope_qk(q, k, K.rope_cache(16, max_positions=64, device=DEVICE), offsets=torch.tensor([3, 9], device=DEVICE),
                  angles=angles)
    finally:
        rope_triton._capture = None
    args = list(captured[0][2])
    return (args, dict(zip(rope_triton._CONSTEXPRS, captured[0][3]))) if consts else args


def _variants(args):
    """Argument lists that differ from ``args`` in one place: a pointer shifted off 16-byte alignment or of
    another dtype; an integer set to values on either side of what Triton specializes on; the float changed."""
    buf = torch.zeros(64, dtype=torch.float32)
    ints = (0, 1, 2, 16, 17, 48, 2**31 - 16, 2**31 - 1, 2**31, 2**31 + 16, 2**32, 2**63 - 16, 2**63, 2**63 + 16)
    for i, a in enumerate(args):
        for b in ((buf[:8], buf[1:9], buf[:8].to(torch.bfloat16), buf[:8].to(torch.int64)) if isinstance(a, torch.Tensor)
                  else (0.5, 1.0) if isinstance(a, float) else ints):
            yield args[:i] + [b] + args[i + 1:]


def test_launch_key_separates_what_triton_specializes_on():
    """The direct-launch cache reuses a compiled kernel only for arguments Triton would compile the same."""
    from ropebook.kernels.rope_triton import _POINTERS, _spec_key

    args = _captured_args()
    assert all(isinstance(a, torch.Tensor) for a in args[:_POINTERS]) and isinstance(args[-1], float)
    assert all(type(a) is int for a in args[_POINTERS:-1])

    def key_with(i, value):
        return _spec_key(args[:i] + [value] + args[i + 1:])

    buf = torch.zeros(64, dtype=torch.bfloat16)
    assert key_with(0, buf[:32]) != key_with(0, buf[1:33]) != key_with(0, buf[:32].float())
    keys = [key_with(_POINTERS, v) for v in (1, 16, 17, 2**31, 2**31 + 1, 2**63)]
    assert len(set(keys)) == len(keys)
    assert key_with(_POINTERS, 32) == key_with(_POINTERS, 48) and key_with(_POINTERS, 3) == key_with(_POINTERS, 5)


@pytest.mark.parametrize("angles", ["table", "kernel"])
def test_launch_key_is_as_fine_as_the_pinned_tritons_specialization(angles):
    """Equal launch keys must mean equal specialization by Triton's own argument binder, over argument lists
    that differ in one place from a real launch's (so a cached kernel is never reused where Triton would
    have compiled another one: say, one that assumes a 16-byte-aligned pointer)."""
    from ropebook.kernels import aot
    from ropebook.kernels.rope_triton import _rope_kernel, _spec_key

    if not aot.supported():  # only off the pinned Triton: test_aot_works_with_the_pinned_triton fails on it
        pytest.skip("this Triton has no argument binder to compare with")
    from triton.backends.compiler import GPUTarget
    from triton.compiler import make_backend
    from triton.runtime.jit import JITFunction

    fn = JITFunction(_rope_kernel)
    binder = aot.create_function_from_signature(fn.signature, fn.params, make_backend(GPUTarget("cuda", 90, 32)))
    args, consts = _captured_args(angles, consts=True)
    seen: dict = {}
    variants = list(_variants(args))
    for v in variants:
        _, specialization, _ = binder(*v, **consts, num_warps=4, debug=False)
        seen.setdefault(_spec_key(v), set()).add(tuple(specialization))
    assert all(len(specs) == 1 for specs in seen.values()), [s for s in seen.values() if len(s) > 1][:2]
    assert 10 < len(seen) < len(variants)  # the key does merge argument lists, and does tell many apart


def test_a_plans_kernel_key_is_as_fine_as_the_pinned_tritons_specialization():
    """A plan fixes the pointers' dtypes and every integer argument but the offset; its key for a compiled
    kernel adds the rest. Over argument lists that differ from a real launch's in a pointer's alignment or
    in the offset, equal keys must mean equal specialization by Triton's own binder."""
    from ropebook.kernels import aot
    from ropebook.kernels.rope_triton import _POINTERS, _plan_key, _rope_kernel

    if not aot.supported():
        pytest.skip("this Triton has no argument binder to compare with")
    from triton.backends.compiler import GPUTarget
    from triton.compiler import make_backend
    from triton.runtime.jit import JITFunction

    fn = JITFunction(_rope_kernel)
    binder = aot.create_function_from_signature(fn.signature, fn.params, make_backend(GPUTarget("cuda", 90, 32)))
    args, consts = _captured_args("table", consts=True)
    offset = len(args) - 2
    seen: dict = {}
    variants = [v for v in _variants(args) if all(  # what the plan fixes, kept: dtypes, integers but the offset
        (x.dtype == y.dtype) if i < _POINTERS else (x == y or i == offset) for i, (x, y) in enumerate(zip(v, args)))]
    for v in variants:
        _, specialization, _ = binder(*v, **consts, num_warps=4, debug=False)
        seen.setdefault(_plan_key(True, v[:_POINTERS], v[offset]), set()).add(tuple(specialization))
    assert all(len(specs) == 1 for specs in seen.values()), [s for s in seen.values() if len(s) > 1][:2]
    assert 5 < len(seen) < len(variants)


def test_address_arithmetic_is_32_bit_only_where_every_offset_fits(monkeypatch):
    """32-bit offsets where the storages of q, k, their outputs and the tables hold fewer than 2^31 elements
    (a view's offsets are bounded by its storage), 64-bit otherwise; both rotate the same."""
    import triton.language as tl

    from ropebook.kernels import rope_triton

    fits = rope_triton._fits_int32
    small = torch.zeros(4, 8)
    assert fits(small, None, small[:, :2])
    assert fits(torch.empty(2**31 - 1, dtype=torch.int8, device="meta"))  # meta: a storage size, no memory
    assert not fits(small, torch.empty(2**31, dtype=torch.int8, device="meta"))
    assert fits(torch.empty(2**30, dtype=torch.bfloat16, device="meta"))  # elements count, not bytes
    assert not fits(torch.empty(2**31, dtype=torch.bfloat16, device="meta")[:4])  # a small view of a large storage

    q, k = qk(B=2, T=5, HQ=3, HK=1, D=16, dtype=torch.bfloat16)
    cache = K.rope_cache(16, max_positions=64, device=DEVICE)
    offsets = torch.tensor([3, 40], device=DEVICE)
    results = {}
    for wide in (False, True):
        if wide:
            monkeypatch.setattr(rope_triton, "_fits_int32", lambda *tensors: False)
        rope_triton._capture = captured = []
        try:
            K.rope_qk(q, k, cache, offsets=offsets, angles="table")
        finally:
            rope_triton._capture = None
        assert dict(zip(rope_triton._CONSTEXPRS, captured[0][3]))["IDX"] == (tl.int64 if wide else tl.int32)
        results[wide] = K.rope_qk(q, k, cache, offsets=offsets, angles="table")
    for x, y in zip(results[False], results[True]):
        assert torch.equal(x, y)
    assert_close_dtype(results[True][0], rb.apply_rope(q, offset=offsets.view(2, 1, 1), backend="torch"))
    assert_close_dtype(results[True][1], rb.apply_rope(k, offset=offsets.view(2, 1, 1), backend="torch"))


def _signature_variants():
    """Calls that each differ from the first in one thing a launch's plan depends on (a shape, a stride, a
    dtype, an option, the cache, the kind of offsets, module state), plus int offsets either side of what
    Triton specializes on. In-place calls rotate a fresh copy, so every call can be repeated."""
    from ropebook.kernels import rope_triton

    q, k = qk(B=2, T=5, HQ=4, HK=2, D=16, dtype=torch.bfloat16)
    q32, k32 = qk(B=2, T=5, HQ=4, HK=2, D=16, dtype=torch.float32, seed=1)
    q_padded = torch.randn(2, 5, 4, 18, dtype=torch.float64).to(DEVICE, torch.bfloat16)[..., :16].transpose(1, 2)
    q_strided = torch.randn(2, 4, 5, 32, dtype=torch.float64).to(DEVICE, torch.bfloat16)[..., ::2]  # stride(-1) 2
    cache, cache12 = K.rope_cache(16, max_positions=64, device=DEVICE), K.rope_cache(12, max_positions=64, device=DEVICE)
    off32, off64 = (torch.tensor([3, 9], device=DEVICE, dtype=dt) for dt in (torch.int32, torch.int64))
    pos = torch.tensor([[0, 1, 2, 3, 4], [7, 8, 9, 10, 30]], device=DEVICE)
    qp, kp = q.transpose(1, 2).reshape(10, 4, 16).transpose(0, 1), k.transpose(1, 2).reshape(10, 2, 16).transpose(0, 1)
    cu = torch.tensor([0, 4, 10], device=DEVICE, dtype=torch.int32)
    c, s = (t.to(DEVICE) for t in rb.rope_cos_sin(torch.arange(5), 16))  # (T, 8)
    cb, sb = (t.to(DEVICE) for t in rb.rope_cos_sin(torch.tensor([[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]), 16))  # (B, T, 8)

    def fresh(x):
        return x.clone()  # keeps the strides

    def quadrant():
        with rope_triton.sincos("quadrant"):
            return K.rope_qk(q, k, cache, offsets=3, angles="kernel")

    def config(T, H, table):
        return 2, 2, 1, True

    def configured():
        with mock.patch.object(rope_triton, "default_config", config):
            return K.rope_qk(q, k, cache, offsets=3)

    calls = {f"offsets={o}": (lambda o=o: K.rope_qk(q, k, cache, offsets=o)) for o in (3, 0, 1, 16, 17, 59)}
    calls.update({
        "no k": lambda: K.rope_qk(q, None, cache, offsets=3),
        "float32": lambda: K.rope_qk(q32, k32, cache, offsets=3),
        "(B, H, T, D) memory": lambda: K.rope_qk(q.contiguous(), k, cache, offsets=3),
        "padded heads": lambda: K.rope_qk(q_padded, k, cache, offsets=3),
        "strided features": lambda: K.rope_qk(q_strided, k, cache, offsets=3),
        "interleaved": lambda: K.rope_qk(q, k, cache, offsets=3, layout="interleaved"),
        "in place": lambda: K.rope_qk(fresh(q), fresh(k), cache, offsets=3, inplace=True),
        "kernel angles": lambda: K.rope_qk(q, k, cache, offsets=3, angles="kernel"),
        "quadrant": quadrant,
        "another config": configured,
        "partial rotary cache": lambda: K.rope_qk(q, k, cache12, offsets=3),
        "int32 offsets": lambda: K.rope_qk(q, k, cache, offsets=off32),
        "int64 offsets": lambda: K.rope_qk(q, k, cache, offsets=off64),
        "positions": lambda: K.rope_qk(q, k, cache, positions=pos),
        "positions transposed": lambda: K.rope_qk(q, k, cache, positions=pos.t().contiguous().t()),  # read by strides
        "positions (T,), shared": lambda: K.rope_qk(q, k, cache, positions=pos[1]),  # a (B, T) view, batch stride 0
        "positions (1, T), shared": lambda: K.rope_qk(q, k, cache, positions=pos[1:]),
        "offsets 0-dim": lambda: K.rope_qk(q, k, cache, offsets=off64[1]),  # expanded to (B,) on the device
        "offsets numpy int": lambda: K.rope_qk(q, k, cache, offsets=np.int64(3)),
        "packed": lambda: K.rope_qk(qp, kp, cache, cu_seqlens=cu, max_seqlen=6),
        "packed, max_seqlen 7": lambda: K.rope_qk(qp, kp, cache, cu_seqlens=cu, max_seqlen=7),
        "cos_sin (T, r/2)": lambda: K.rope_qk_cos_sin(q, k, c, s),
        "cos_sin (B, T, r/2)": lambda: K.rope_qk_cos_sin(q, k, cb, sb),
        "cos_sin bf16": lambda: K.rope_qk_cos_sin(q, k, c.bfloat16(), s.bfloat16()),
        "cos_sin, cos alone bf16": lambda: K.rope_qk_cos_sin(q, k, c.bfloat16(), s),
        "cos_sin (1, T, r/2)": lambda: K.rope_qk_cos_sin(q, k, c[None], s[None]),
        "cos_sin features stride 2": lambda: K.rope_qk_cos_sin(q, k, *(x.repeat_interleave(2, -1)[..., ::2] for x in (c, s))),
        "cohere drop-in (B, T, D)": lambda: K.hf_apply_rotary_pos_emb_cohere(q, k, *(x.repeat_interleave(2, -1) for x in (cb, sb))),
        "cohere drop-in (1, T, D)": lambda: K.hf_apply_rotary_pos_emb_cohere(q, k, *(x.repeat_interleave(2, -1)[None]
                                                                                   for x in (c, s))),
        "hf drop-in (B, T, D)": lambda: K.hf_apply_rotary_pos_emb(q, k, *(torch.cat((x, x), -1) for x in (cb, sb))),
        "hf drop-in (1, T, D)": lambda: K.hf_apply_rotary_pos_emb(q, k, *(torch.cat((x, x), -1)[None] for x in (c, s))),
        "cos_sin r/2 = 6": lambda: K.rope_qk_cos_sin(q, k, c[:, :6], s[:, :6]),
        "cos_sin no k": lambda: K.rope_qk_cos_sin(q, None, c, s),
        "cos_sin in place": lambda: K.rope_qk_cos_sin(fresh(q), fresh(k), c, s, inplace=True),
    })
    return calls


def _launch_and_result(call):
    """What ``call`` launches (grid, warps, constexprs, its integers (strides among them) and float, each
    pointer's dtype and alignment, whether the outputs are the inputs), recorded; then its outputs from a
    real run."""
    from ropebook.kernels import rope_triton

    rope_triton._capture = captured = []
    try:
        call()
    finally:
        rope_triton._capture = None
    (grid, num_warps, args, consts), = captured
    described = tuple((a.dtype, a.data_ptr() % 16) if isinstance(a, torch.Tensor) else a for a in args)  # pointers
    in_place = (args[1] is args[0], args[3] is args[2])
    return (grid, num_warps, consts, described, in_place), call()


def test_a_repeated_call_signature_launches_what_a_first_call_works_out():
    """A call whose signature was seen before launches through the remembered plan: with every signature
    of _signature_variants in the cache at once, each call must launch exactly what it does from an empty
    cache, and rotate the same (a key that missed something would hand one call another's plan)."""
    from ropebook.kernels import autograd, rope_triton

    calls = _signature_variants()
    first = {}
    for name, call in calls.items():
        autograd._plans.clear()
        first[name] = _launch_and_result(call)
    # each variant launches differently, but five: the strided features, copied to (B, H, T, D) memory
    # first, and cos of (1, T, r/2), read as (T, r/2) is (both with a batch stride of 0); and the three
    # arguments made what another variant passes before the signature is formed: positions (1, T) as
    # (T,) (both a (B, T) view, batch stride 0), a 0-dim offsets as int64 (B,) offsets, numpy's 3 as 3
    assert len({launch for launch, _ in first.values()}) == len(calls) - 5
    # On CUDA a plan keeps its compiled kernels by what it does not fix, so it must always be run with
    # the pointer dtypes it was made with (the interpreter would run a wrong pairing correctly)
    dtypes_of: dict = {}
    real_run = rope_triton.Plan.run

    def run(plan, q, q_out, k, k_out, tensors, offset, compiled=None):
        dtypes = tuple(None if t is None else t.dtype for t in (q, q_out, k, k_out, *tensors))
        assert dtypes_of.setdefault(plan, dtypes) == dtypes
        return real_run(plan, q, q_out, k, k_out, tensors, offset, compiled)

    with mock.patch.object(rope_triton.Plan, "run", run):
        for _ in range(2):  # the second round: every call a repeat
            for name, call in calls.items():
                launch, outputs = _launch_and_result(call)
                assert launch == first[name][0], name
                for got, want in zip(outputs, first[name][1]):
                    assert (got is None and want is None) or torch.equal(got, want), name
    # one signature for the six int offsets and numpy's, one for both int64 offsets (shared positions (T,) and
    # (1, T) are remembered as given: their repeats hand the kernel the same memory the (B, T) view had)
    assert len(autograd._plans) == len(calls) - 7


def test_a_repeated_signature_still_checks_what_it_does_not_fix():
    """The cache fixes shapes, strides and dtypes; an int offset's range, and anything else that changes the
    signature, is still checked on every call."""
    from ropebook.kernels import autograd

    q, k = qk(B=2, T=5, HQ=4, HK=2, D=16, dtype=torch.bfloat16)
    cache = K.rope_cache(16, max_positions=64, device=DEVICE)
    K.rope_qk(q, k, cache, offsets=3, angles="table")
    K.rope_qk(q, k, cache, offsets=torch.tensor([3, 9], device=DEVICE))
    assert len(autograd._plans) >= 2
    with pytest.raises(ValueError, match="the table holds 64 positions, got offsets=60 and 5 tokens"):
        K.rope_qk(q, k, cache, offsets=60, angles="table")
    with pytest.raises(ValueError, match="offsets must be a non-negative int"):
        K.rope_qk(q, k, cache, offsets=-1, angles="table")
    with pytest.raises(ValueError, match="offsets must be a non-negative int"):
        K.rope_qk(q, k, cache, offsets=True, angles="table")
    with pytest.raises(ValueError, match=r"offsets must be an integer tensor of shape \(2,\)"):
        K.rope_qk(q, k, cache, offsets=torch.tensor([3.0, 9.0], device=DEVICE))
    with pytest.raises(ValueError, match="positions must fit in int64"):
        K.rope_qk(q, k, cache, offsets=2**63 - 3, angles="kernel")


def test_a_packed_batch_without_max_seqlen_is_not_repeated_from_a_plan():
    """Without max_seqlen, the longest sequence is read from cu_seqlens's data, which the signature does not
    hold: two batches of the same shapes but other lengths must each be rotated in full."""
    g = torch.Generator().manual_seed(3)
    q = torch.randn(8, 2, 16, generator=g).to(DEVICE).transpose(0, 1)  # (H, N, D)
    cache = K.rope_cache(16, device=DEVICE)
    for lengths in ([2, 6], [6, 2], [1, 7]):
        cu = torch.tensor([0, lengths[0], 8], device=DEVICE, dtype=torch.int32)
        qr, _ = K.rope_qk(q, None, cache, cu_seqlens=cu)
        for start, n in ((0, lengths[0]), (lengths[0], lengths[1])):
            assert_close_dtype(qr[:, start:start + n], rb.apply_rope(q[:, start:start + n]))


def test_a_remembered_plan_does_not_keep_the_cache_alive():
    """A model's cos/sin table can be hundreds of MB: once the caller drops the cache, a plan made for it
    must not hold it; a new cache (perhaps at the same address) gets a plan of its own."""
    import gc
    import weakref

    q, k = qk(B=2, T=1, HQ=4, HK=2, D=16, dtype=torch.bfloat16)
    cache = K.rope_cache(16, max_positions=64, device=DEVICE)
    table = weakref.ref(cache.cos)
    for _ in range(2):
        K.rope_qk(q, k, cache, offsets=5, angles="table")
    del cache
    gc.collect()
    assert table() is None
    other = K.rope_cache(16, base=500.0, max_positions=64, device=DEVICE)
    for _ in range(2):
        qr, _ = K.rope_qk(q, k, other, offsets=5, angles="table")
        assert_close_dtype(qr, rb.apply_rope(q, offset=5, base=500.0))


def test_a_cache_on_another_device_than_q_is_copied_with_a_warning():
    """A cache left on the CPU for q on a GPU works, but copies its tables on every call: say so, and
    remember no plan for it. (q on the meta device stands in for another device; the launch is recorded.)"""
    from ropebook.kernels import autograd, rope_triton

    q = torch.empty(2, 4, 1, 16, device="meta")
    for angles, nbytes in (("table", 2 * 64 * 8 * 4), ("kernel", 8 * 8)):
        cache = K.rope_cache(16, max_positions=64)
        autograd._plans.clear()
        rope_triton._capture = []
        try:
            with pytest.warns(RuntimeWarning, match=rf"rope_qk: cache is on cpu and q on meta, so {nbytes} bytes of it "
                                                    r"are copied to meta on every call; .*device='meta'"):
                K.rope_qk(q, None, cache, offsets=3, angles=angles)
        finally:
            rope_triton._capture = None
        assert not autograd._plans


def test_a_call_that_records_a_graph_is_not_cached():
    """Training calls go through torch.autograd every time (its bookkeeping dominates there): no plan."""
    from ropebook.kernels import autograd

    q, k = qk(B=1, T=3, HQ=2, HK=1, D=16)
    cache = K.rope_cache(16, device=DEVICE)
    autograd._plans.clear()
    K.rope_qk(q.requires_grad_(), k, cache)[0].sum().backward()
    assert not autograd._plans
    with torch.no_grad():
        K.rope_qk(q, k, cache)
    assert len(autograd._plans) == 1


def test_the_plan_cache_is_bounded(monkeypatch):
    from ropebook.kernels import autograd

    monkeypatch.setattr(autograd, "PLANS_MAX", 3)
    cache = K.rope_cache(16, device=DEVICE)
    for T in range(1, 8):
        q, k = qk(B=1, T=T, HQ=2, HK=1, D=16)
        K.rope_qk(q, k, cache)
        assert 1 <= len(autograd._plans) <= 3


def test_direct_launch_passes_constants_in_the_kernels_order():
    """On CUDA the direct launch passes the constexprs by position, after the other arguments: their
    names must be the kernel's last parameters, in order (the interpreter passes them by name)."""
    import inspect

    from ropebook.kernels.rope_triton import _CONSTEXPRS, _rope_kernel

    params = list(inspect.signature(_rope_kernel).parameters)
    assert tuple(params[-len(_CONSTEXPRS):]) == _CONSTEXPRS


@pytest.mark.parametrize("angles", ANGLES)
def test_repeated_launches_with_new_alignment_and_strides(angles):
    """Same shapes, different pointer alignment and strides: each call must still be right (on CUDA the
    second and third calls take the direct launch, or must not)."""
    cache = K.rope_cache(16, max_positions=32, device=DEVICE)
    q, k = qk(B=2, T=5, HQ=4, HK=2, D=16, dtype=torch.bfloat16)
    storage = torch.randn(1 + q.numel(), dtype=torch.float64).to(DEVICE, torch.bfloat16)
    q_shifted = storage[1:].view(2, 5, 4, 16).transpose(1, 2)  # 2 bytes off 16-byte alignment
    q_wide = torch.randn(2, 5, 4, 17, dtype=torch.float64).to(DEVICE, torch.bfloat16)[..., :16].transpose(1, 2)
    for x in (q, q_shifted, q_wide, q):
        qr, kr = K.rope_qk(x, k, cache, offsets=2, angles=_source(angles))
        assert_close_dtype(qr, rb.apply_rope(x, offset=2))
        assert_close_dtype(kr, rb.apply_rope(k, offset=2))


def test_rope_qk_cos_sin_broadcasts_one_set_of_positions():
    """cos/sin of shape (1, T, r/2) serve every sequence of the batch, as (T, r/2) does."""
    q, k = qk(B=3, T=5, HQ=2, HK=1, D=16, dtype=torch.bfloat16)
    c, s = (t.to(DEVICE) for t in rb.rope_cos_sin(torch.arange(5), 16))
    for got, want in zip(K.rope_qk_cos_sin(q, k, c[None], s[None]), (rb.apply_rope(q), rb.apply_rope(k))):
        assert_close_dtype(got, want)
    with pytest.raises(ValueError, match=r"cos must be a float tensor of shape \(5, r/2\) or \(3 or 1, 5, r/2\)"):
        K.rope_qk_cos_sin(q, k, c[None].expand(2, 5, 8), s[None].expand(2, 5, 8))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("batched", [False, True])
@pytest.mark.parametrize("inplace", [False, True])
def test_rope_qk_cos_sin(layout, batched, inplace):
    """cos/sin formed by the caller, (T, r/2) or per sequence (B, T, r/2), in Hugging Face's bf16 too."""
    q, k = qk(B=2, T=5, HQ=3, HK=1, D=16, dtype=torch.bfloat16)
    pos = torch.tensor([[0, 1, 2, 3, 4], [9, 10, 11, 12, 13]]) if batched else torch.arange(5)
    cos, sin = (t.to(DEVICE) for t in rb.rope_cos_sin(pos, 12))  # r = 12 of D = 16: partial rotary
    want_q = rb.apply_rope(q, pos.to(DEVICE)[:, None] if batched else pos.to(DEVICE), layout=layout, rotary_dim=12)
    want_k = rb.apply_rope(k, pos.to(DEVICE)[:, None] if batched else pos.to(DEVICE), layout=layout, rotary_dim=12)
    qr, kr = K.rope_qk_cos_sin(q.clone() if inplace else q, k.clone() if inplace else k, cos, sin,
                               layout=layout, inplace=inplace)
    assert_close_dtype(qr, want_q)
    assert_close_dtype(kr, want_k)
    # Hugging Face hands over duplicated (B, T, D) bf16 tensors: their first half is one value per pair
    cos_hf, sin_hf = (torch.cat((c, c), -1).to(torch.bfloat16) for c in (cos, sin))
    qh, _ = K.rope_qk_cos_sin(q, None, cos_hf[..., :6], sin_hf[..., :6], layout=layout)
    assert (qh.double() - want_q.double()).abs().max().item() < 4 * EPS[torch.bfloat16] * want_q.double().abs().max().item()


@pytest.mark.parametrize("layout", LAYOUTS)
def test_cos_and_sin_with_strided_features_are_read_in_place(layout):
    """cos and sin whose features are not contiguous (every other value of Cohere's (…, T, r), a column of a
    wider table, features expanded from one) are read where they lie, by their feature stride: the kernel
    is handed their own pointer, no copy is made, and the result is the contiguous tensors' to the bit, on
    the first call, on a repeat (the remembered plan) and in backward."""
    from ropebook.kernels import rope_triton

    q, k = qk(B=2, T=5, HQ=3, HK=1, D=16, dtype=torch.bfloat16)
    pos = torch.tensor([[0, 1, 2, 3, 4], [9, 10, 11, 12, 13]])
    c, s = (t.to(DEVICE) for t in rb.rope_cos_sin(pos, 16))  # (B, T, 8)
    wide = {"in a row (stride 2)": lambda x: x.repeat_interleave(2, -1)[..., ::2],
            "every third (stride 3)": lambda x: x.repeat_interleave(3, -1)[..., ::3],
            "one value expanded (stride 0)": lambda x: x[..., :1].expand(x.shape)}
    for name, view in wide.items():
        cv, sv = view(c), view(s)
        want = K.rope_qk_cos_sin(q, k, cv.contiguous(), sv.contiguous(), layout=layout)
        rope_triton._capture = captured = []
        try:
            K.rope_qk_cos_sin(q, k, cv, sv, layout=layout)
        finally:
            rope_triton._capture = None
        (_, _, args, _), = captured
        assert args[4].data_ptr() == cv.data_ptr() and args[5].data_ptr() == sv.data_ptr(), name  # no copy
        for _ in range(2):  # the first call, then a repeat through its plan
            for got, w in zip(K.rope_qk_cos_sin(q, k, cv, sv, layout=layout), want):
                assert torch.equal(got, w), name
        qg = q.float().requires_grad_()
        K.rope_qk_cos_sin(qg, None, cv, sv, layout=layout)[0].sum().backward()
        qw = q.float().requires_grad_()
        K.rope_qk_cos_sin(qw, None, cv.contiguous(), sv.contiguous(), layout=layout)[0].sum().backward()
        assert torch.equal(qg.grad, qw.grad), name


def test_rope_qk_cos_sin_gradient_and_errors():
    q = torch.randn(1, 2, 3, 8, dtype=torch.float64, device=DEVICE, requires_grad=True)
    cos, sin = (t.to(DEVICE, torch.float64) for t in rb.rope_cos_sin(torch.arange(3), 8))
    assert torch.autograd.gradcheck(lambda q: K.rope_qk_cos_sin(q, None, cos, sin)[0], (q,), fast_mode=True)
    with pytest.raises(ValueError, match=r"cos must be a float tensor of shape \(3, r/2\).*cos.shape=\(4, 4\)"):
        K.rope_qk_cos_sin(q, None, cos[:, :4].repeat(2, 1)[:4], sin)
    with pytest.raises(ValueError, match="cos and sin must have the same shape"):
        K.rope_qk_cos_sin(q, None, cos, sin[:, :2])
    with pytest.raises(ValueError, match="requires grad"):
        K.rope_qk_cos_sin(q, None, cos.clone().requires_grad_(), sin)


def test_positions_outside_the_table_come_out_nan():
    """Per-sequence offsets live on the device, so the launcher cannot check them against the table
    without a sync: the kernel masks the read, and a position outside the table gives NaN, not garbage."""
    q, k = qk(B=2, T=3)
    cache = K.rope_cache(16, max_positions=8, device=DEVICE)
    offsets = torch.tensor([2, 6], device=DEVICE)  # sequence 1 reaches positions 6, 7, 8: 8 is outside
    qr, kr = K.rope_qk(q, k, cache, offsets=offsets, angles="table")
    want = rb.apply_rope(q, offset=offsets.view(2, 1, 1))
    assert_close_dtype(qr[0], want[0])
    assert_close_dtype(qr[1, :, :2], want[1, :, :2])
    assert qr[1, :, 2].isnan().all() and kr[1, :, 2].isnan().all()
    qr, _ = K.rope_qk(q, k, cache, offsets=offsets, angles="kernel")  # exact angles: any position
    assert_close_dtype(qr, want)


def test_default_angles_table_for_decoding_kernel_for_prefill(monkeypatch):
    from ropebook.kernels import rope_triton

    seen = []
    real = rope_triton.launch
    monkeypatch.setattr(rope_triton, "launch", lambda *a, **kw: seen.append(kw.get("cos") is not None) or real(*a, **kw))
    cache = K.rope_cache(16, max_positions=64, device=DEVICE)
    for T in (1, 16, 17):
        K.rope_qk(*qk(B=1, T=T), cache)
    assert seen == [True, True, False]


# ----------------------------------------------------------------------------- compiled for a GPU that is not here


def _aot():
    """ropebook.kernels.aot, or a skip where this Triton lacks the internals it uses. That can happen only
    off the pinned Triton (a GPU machine's own): test_aot_works_with_the_pinned_triton keeps CI honest."""
    from ropebook.kernels import aot

    if not aot.supported():
        pytest.skip(f"ropebook.kernels.aot needs Triton 3.9's argument binder; this is Triton {triton_version()}")
    return aot


def triton_version() -> str:
    import triton

    return triton.__version__


def test_aot_works_with_the_pinned_triton():
    from ropebook.kernels import aot

    if triton_version() == _pinned_triton():
        assert aot.supported()
    elif not aot.supported():
        with pytest.raises(RuntimeError, match=r"needs Triton's argument binder.*this is Triton"):
            aot.compile_launches(lambda: None)


def test_the_kernel_source_hash_does_not_depend_on_the_interpreter():
    """tools/sass_counts.py records a hash of the kernel's source next to its counts, and the chapter compares it
    with the hash of the kernel it is built with to say whether the counts are current. Both must hash the same
    functions whether or not the module was imported under TRITON_INTERPRET (which decides whether the kernel's
    own JITFunction, ``_native``, exists): else the chapter calls fresh counts stale."""
    code = ("import sys; sys.path.insert(0, 'tools'); import sass_counts; from ropebook.kernels import rope_triton; "
            "print(sass_counts.kernel_functions_sha256(rope_triton))")
    root = Path(__file__).parents[1]
    hashes = {subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True,
                             env={**os.environ, "TRITON_INTERPRET": flag}).stdout.strip() for flag in ("0", "1")}
    assert len(hashes) == 1 and len(next(iter(hashes))) == 64, hashes


def _pinned_triton() -> str:
    """The Triton version requirements.txt pins: the one CI runs."""
    return re.search(r"^triton==(\S+)", (Path(__file__).parents[1] / "requirements.txt").read_text(), re.M).group(1)


def _aot_cases():
    """Calls that together reach every branch of the kernel: dtypes, angle sources, both cos/sin ways,
    position modes, layouts, the backward's CONJ, packed batches, the copied tail, caller-formed cos/sin."""
    from ropebook.kernels import rope_triton

    def patched(call, **attrs):  # call() with some of rope_triton's module attributes set
        def run():
            with mock.patch.multiple(rope_triton, **attrs):
                call()
        return run

    def with_sincos(method, call):
        return patched(call, SINCOS=method)

    def wide(call):  # as for tensors whose storages pass 2^31 elements
        return patched(call, _fits_int32=lambda *tensors: False)

    def together(call):  # programs of q's heads with k's share
        return patched(call, default_config=lambda T, H, table: (1, 32, 4, True))

    def backward_fp16():
        q, k = (x.detach().requires_grad_() for x in qk(B=2, T=3, HQ=4, HK=2, D=16, dtype=torch.float16))
        positions = torch.tensor([[5, 1, 9], [0, 3, 30]], device=DEVICE)
        qr, kr = K.rope_qk(q, k, K.rope_cache(16, max_positions=64, device=DEVICE), positions=positions, layout="interleaved")
        (qr.float().sum() + kr.float().sum()).backward()

    def packed_fp32():
        q, k = torch.randn(4, 10, 24, device=DEVICE), torch.randn(2, 10, 24, device=DEVICE)  # (H, N, D): 16 of 24 rotate
        cu = torch.tensor([0, 3, 10], dtype=torch.int32, device=DEVICE)
        K.rope_qk(q, k, K.rope_cache(16, device=DEVICE), cu_seqlens=cu, max_seqlen=7)

    decode = qk(B=4, T=1, HQ=8, HK=2, D=128, dtype=torch.bfloat16)
    offsets = torch.tensor([3, 70, 500, 9], dtype=torch.int32, device=DEVICE)
    table = K.rope_cache(128, max_positions=1024, device=DEVICE)
    prefill = qk(B=1, T=64, HQ=8, HK=2, D=128, dtype=torch.bfloat16)
    cos, sin = rb.rope_cos_sin(torch.arange(64), 128)
    hf = tuple(torch.cat((c, c), -1).to(DEVICE, torch.bfloat16)[..., :64] for c in (cos, sin))  # HF's, as views
    hf_decode = tuple(c[None, 9:10].expand(4, 1, 64) for c in hf)  # (B, T, r/2): position 9 for every sequence
    cohere = tuple(c.repeat_interleave(2, -1).to(DEVICE, torch.bfloat16) for c in (cos, sin))  # (T, D), read at stride 2

    def deepseek_backward():  # MLA's rotary part: 64 features, one key head; interleaved in, Llama's layout out
        q, k = (torch.zeros(1, h, 64, 64, dtype=torch.bfloat16, device=DEVICE, requires_grad=True) for h in (8, 1))
        qr, kr = K.hf_apply_rotary_pos_emb_interleave(q, k, *(c[..., :32].repeat(1, 2) for c in hf))
        (qr.float().sum() + kr.float().sum()).backward()
    return {
        "bf16 decode, table": lambda: K.rope_qk(*decode, table, offsets=offsets, angles="table"),
        "bf16 prefill, computed, library": lambda: K.rope_qk(*prefill, table, angles="kernel"),
        "bf16 decode, computed, quadrant": with_sincos("quadrant", lambda: K.rope_qk(*decode, table, offsets=offsets,
                                                                                   angles="kernel")),
        "fp16 interleaved, positions, forward and backward": backward_fp16,
        "fp32 packed, partial rotary, quadrant": with_sincos("quadrant", packed_fp32),
        "fp64, computed": lambda: K.rope_qk(*qk(D=16, dtype=torch.float64), K.rope_cache(16, device=DEVICE)),
        "bf16 caller's HF cos/sin, in place": lambda: K.rope_qk_cos_sin(*prefill, *hf, inplace=True),
        "bf16 decode, table, 64-bit addresses": wide(lambda: K.rope_qk(*decode, table, offsets=offsets, angles="table")),
        "bf16 decode, caller's cos/sin, q and k together": together(lambda: K.rope_qk_cos_sin(*decode, *hf_decode)),
        "fp16 interleaved, positions, together, forward and backward": together(backward_fp16),
        "fp32 packed, partial rotary, quadrant, together": together(with_sincos("quadrant", packed_fp32)),
        "bf16 Cohere's cos/sin, every other feature": lambda: K.hf_apply_rotary_pos_emb_cohere(*prefill, *cohere),
        "bf16 DeepSeek's interleave, forward and backward": deepseek_backward,
    }


@pytest.mark.parametrize("case", ["bf16 decode, table", "bf16 prefill, computed, library", "bf16 decode, computed, quadrant",
                                  "fp16 interleaved, positions, forward and backward", "fp32 packed, partial rotary, quadrant",
                                  "fp64, computed", "bf16 caller's HF cos/sin, in place",
                                  "bf16 decode, table, 64-bit addresses", "bf16 decode, caller's cos/sin, q and k together",
                                  "fp16 interleaved, positions, together, forward and backward",
                                  "fp32 packed, partial rotary, quadrant, together",
                                  "bf16 Cohere's cos/sin, every other feature",
                                  "bf16 DeepSeek's interleave, forward and backward"])
def test_kernel_compiles_for_an_h100_without_spilling(case):
    """A real compile for sm_90 of the launches these calls make, specialized by Triton's own binder, and
    disassembled. The interpreter forgives what the compiler does not: this test found a tail-copy index
    that the quadrant branch had shadowed (pointer + float). Computing in float32, no thread touches local
    memory (no spills). In float64 the math library's cos and sin keep an array on the stack for huge
    arguments, which the kernel's angles in [-π, π) never reach; so do its float32 ones as Triton 3.6
    compiles them (a 40-byte stack; the GPU machine's Triton), not as the pinned Triton does."""
    aot = _aot()
    compile_launches, sass_stats = aot.compile_launches, aot.sass_stats
    kernels = compile_launches(_aot_cases()[case])
    assert len(kernels) == (2 if "backward" in case else 1)
    for kernel in kernels:
        stats = sass_stats(kernel)
        assert stats["instructions"] > 100, stats
        if "fp64" not in case and ("library" not in case or triton_version() == _pinned_triton()):
            assert stats["local"] == 0 and stats["stack_bytes"] == 0, stats


def test_a_unit_feature_stride_of_cos_is_a_constant_of_the_compile():
    """The kernel indexes cos and sin by a feature stride, cs_d, for Cohere's (every other value). Everywhere
    else it is 1, which Triton's binder makes a constant of the compile, so those kernels multiply by nothing
    (their machine code is what it was before cs_d existed: compared instruction for instruction when it was
    added); Cohere's stride 2 is a run-time argument."""
    import inspect

    from ropebook.kernels import rope_triton

    aot = _aot()
    cs_d = list(inspect.signature(rope_triton._rope_kernel).parameters).index("cs_d")
    cases = _aot_cases()
    for case, unit in (("bf16 decode, table", True), ("bf16 caller's HF cos/sin, in place", True),
                       ("bf16 decode, caller's cos/sin, q and k together", True),
                       ("bf16 Cohere's cos/sin, every other feature", False)):
        (kernel,) = aot.compile_launches(cases[case])
        assert kernel.src.constants.get((cs_d,)) == (1 if unit else None), (case, kernel.src.constants)


def test_benchmark_shapes_compile_to_wide_accesses_and_quadrant_to_less_code():
    """The benchmark's decode and 1k prefill, compiled for an H100: q and k are stored (only they are) in
    accesses as wide as a thread's share of a tile's half-rows allows, up to 16 bytes (vectorized, where
    unaligned or unspecialized strides would give 2-byte ones), and SINCOS="quadrant" gives fewer
    instructions and branches than the math library (ch-rope-gpu says so)."""
    from ropebook.kernels import rope_triton

    aot = _aot()
    compile_launches, sass_stats = aot.compile_launches, aot.sass_stats
    cache = K.rope_cache(128, max_positions=1024)
    decode = qk(B=64, T=1, HQ=32, HK=8, D=128, dtype=torch.bfloat16)
    offsets = torch.randint(0, 1000, (64,), dtype=torch.int32).to(DEVICE)
    prefill = qk(B=1, T=1024, HQ=32, HK=8, D=128, dtype=torch.bfloat16)
    for q, k, off in ((*decode, offsets), (*prefill, 0)):
        stats = {}
        for sincos in ("libdevice", "quadrant"):
            with rope_triton.sincos(sincos):
                (kernel,) = compile_launches(lambda: K.rope_qk(q, k, cache, offsets=off, angles="kernel"))
            stats[sincos] = sass_stats(kernel)
        (table,) = compile_launches(lambda: K.rope_qk(q, k, cache, offsets=off, angles="table"))
        T = q.shape[2]
        for st, uses_table in ((stats["libdevice"], False), (stats["quadrant"], False), (sass_stats(table), True)):
            _, block_h, warps = rope_triton.default_config(T, 32, uses_table)
            share = block_h * 64 * 2 // (32 * warps)  # bytes of one half-row tile (64 bf16 a head) a thread holds
            assert st["widest_store_bits"] == 8 * min(share, 16), (st, block_h, warps)
        library, quadrant = stats["libdevice"], stats["quadrant"]
        assert quadrant["instructions"] < 0.8 * library["instructions"], (library, quadrant)
        assert quadrant["branches"] < library["branches"], (library, quadrant)
        if isinstance(off, torch.Tensor):  # decoding: the table's row needs the offset, and the compiled code waits for it first
            assert sass_stats(table)["loads_before_first_wait"] == 1
            assert quadrant["loads_before_first_wait"] >= 3


# a Triton kernel for test_compile_call_counts_bf16_math: y = x·x + x, in bf16 or widened to float32
def _square(X, Y, N: tl.constexpr, WIDEN: tl.constexpr):
    i = tl.arange(0, N)
    x = tl.load(X + i)
    if WIDEN:
        x = x.to(tl.float32)
    tl.store(Y + i, (x * x + x).to(Y.dtype.element_ty))


def test_compile_call_counts_bf16_math():
    """aot.compile_call compiles any Triton kernel (tools/sass_counts.py compiles Liger-Kernel's with it) and
    sass_stats counts arithmetic done in bf16: the chapter says Liger-Kernel's rotation is, and ours is not."""
    from triton.runtime.jit import JITFunction

    aot = _aot()
    x, y = (torch.zeros(256, dtype=torch.bfloat16) for _ in range(2))
    kernel = JITFunction(_square)
    in_bf16 = aot.sass_stats(aot.compile_call(kernel, (x, y), dict(N=256, WIDEN=False)))
    widened = aot.sass_stats(aot.compile_call(kernel, (x, y), dict(N=256, WIDEN=True)))
    assert in_bf16["bf16_math"] > 0 and widened["bf16_math"] == 0, (in_bf16, widened)
    for case in ("bf16 decode, table", "bf16 caller's HF cos/sin, in place"):  # ours: bf16 in memory, float32 math
        (ours,) = aot.compile_launches(_aot_cases()[case])
        assert aot.sass_stats(ours)["bf16_math"] == 0


def test_sass_counts_compiles_a_liger_kernel_folder(tmp_path, monkeypatch):
    """tools/sass_counts.py --liger: a stand-in for Liger-Kernel's unpacked wheel (its version in the dist-info
    folder's name, a kernel launched as kernel[grid](...) from rope_forward, compile-time constants passed by
    position and by name, as Liger's launch passes them) goes through the tool's recording and compile, one
    launch a case, with the programs and warps the launch asked for; the tool's file gets a Liger row in
    every case, and a later run without --liger refuses to drop them."""
    _aot()
    ops = tmp_path / "liger_kernel" / "ops"
    ops.mkdir(parents=True)
    (tmp_path / "liger_kernel-9.8.7.dist-info").mkdir()
    (ops / "rope.py").write_text(
        "import triton\nimport triton.language as tl\n\n\n@triton.jit\n"
        "def _triton_rope(Q, N: tl.constexpr, TWICE: tl.constexpr):\n"
        "    i = tl.arange(0, N)\n    tl.store(Q + i, tl.load(Q + i) * (2 if TWICE else 1))\n\n\n"
        "def rope_forward(q, k, cos, sin):\n    _triton_rope[(q.shape[0] * q.shape[2],)](q, 16, TWICE=True, num_warps=2)\n")
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "tools"))
    import sass_counts

    version, rows = sass_counts.liger_rows(tmp_path)
    assert version == "9.8.7" and set(rows) == set(sass_counts.CASES)
    for case, (B, T) in sass_counts.CASES.items():
        assert rows[case]["programs"] == B * T and rows[case]["num_warps"] == 2
        assert rows[case]["global_loads"] == 1 and rows[case]["widest_store_bits"] > 0  # the stand-in's one load
    out = tmp_path / "counts.json"
    assert sass_counts.main(["--liger", str(tmp_path), "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["liger_kernel"] == "9.8.7"
    assert all(set(rows) == set(sass_counts.ROWS) | {"Liger-Kernel"} for rows in record["cases"].values())
    with pytest.raises(SystemExit):
        sass_counts.main(["--out", str(out)])


def test_loads_before_first_wait_reads_sass():
    """The count stops at the first instruction that reads a register a pending load writes; a 128-bit
    load writes four registers, and ``R8.64`` in an address is the pair R8, R9."""
    from ropebook.kernels.aot import _loads_before_first_wait

    def sass(*lines):
        return "\n".join(f"        /*{16 * i:04x}*/                   {line} ;" for i, line in enumerate(lines))

    assert _loads_before_first_wait(sass("LDG.E R15, desc[UR10][R6.64]", "IADD3 R14, P1, R0, R15, RZ",
                                         "LDG.E.128 R4, desc[UR10][R20.64]")) == 1
    assert _loads_before_first_wait(sass("LDG.E.128 R4, desc[UR10][R20.64]", "LDG.E.64 R12, desc[UR10][R2.64]",
                                         "FMUL R0, R7, R13", "LDG.E R1, desc[UR10][R2.64]")) == 2  # R7 is the 4th of R4
    assert _loads_before_first_wait(sass("LDG.E R9, desc[UR10][R2.64]", "LDG.E R8, desc[UR10][R8.64]",
                                         "STG.E desc[UR10][R10.64], R1")) == 1  # R8.64 reads R9 too
    assert _loads_before_first_wait(sass("@P0 LDG.E R3, desc[UR10][R4.64]", "MOV R6, R5", "EXIT")) == 1


# ----------------------------------------------------------------------------- torch.compile


def _compile_cases():
    """Calls of the public functions, each a function of (q, k) with everything else fixed: the variants
    that take different paths to the operator (angles, offsets, positions, packed, k None, in place, cos/sin)."""
    cache = K.rope_cache(16, max_positions=64, device=DEVICE)
    yarn = K.rope_cache(16, scaling=rb.scaling.YaRN(4.0, 16), device=DEVICE)  # factor 0.1 ln 4 + 1, in the kernel
    off = torch.tensor([3, 40], device=DEVICE)
    pos = torch.tensor([[5, 1, 9, 2, 7], [0, 30, 31, 32, 60]], device=DEVICE)
    cu = torch.tensor([0, 3, 5], device=DEVICE, dtype=torch.int32)
    c, s = rb.rope_cos_sin(pos.cpu(), 12)
    c, s = c.to(DEVICE), s.to(DEVICE)  # (B, T, 6): partial rotary
    hc, hs = torch.cat((c, c), -1).to(DEVICE), torch.cat((s, s), -1).to(DEVICE)  # Hugging Face's (B, T, 12)
    return {
        "table, int offset": lambda q, k: K.rope_qk(q, k, cache, offsets=7, angles="table"),
        "kernel angles, offsets tensor": lambda q, k: K.rope_qk(q, k, cache, offsets=off, angles="kernel"),
        "kernel angles, YaRN's factor": lambda q, k: K.rope_qk(q, k, yarn, offsets=off, angles="kernel"),
        "interleaved, positions": lambda q, k: K.rope_qk(q, k, cache, positions=pos, layout="interleaved"),
        "shared positions (T,)": lambda q, k: K.rope_qk(q, k, cache, positions=pos[1]),  # a batch-stride-0 view
        "0-dim offsets, table": lambda q, k: K.rope_qk(q, k, cache, offsets=off[1], angles="table"),  # expanded to (B,)
        "k None": lambda q, k: (K.rope_qk(q, None, cache, offsets=2)[0], k * 1),
        "packed": lambda q, k: K.rope_qk(q.transpose(0, 1).flatten(1, 2)[:, :5], k.transpose(0, 1).flatten(1, 2)[:, :5],
                                         cache, cu_seqlens=cu, max_seqlen=3),
        "in place": lambda q, k: K.rope_qk(q * 1, k * 1, cache, offsets=off, inplace=True),
        "cos_sin, partial": lambda q, k: K.rope_qk_cos_sin(q, k, c, s),
        "hf drop-in, partial": lambda q, k: K.hf_apply_rotary_pos_emb(q[..., :12], k[..., :12], hc, hs),
        "apply_rope, backend=triton": lambda q, k: (rb.apply_rope(q, pos[:, None], backend="triton"), k * 1),
    }


@pytest.mark.parametrize("case", list(_compile_cases()))
def test_torch_compile_traces_the_kernel_into_one_graph(case):
    """Under torch.compile(fullgraph=True) each public function becomes one graph around the custom operator
    (ropebook::rope): the same outputs as the eager call, bit for bit (the same launch runs), and the
    same gradients through the operator's registered backward."""
    from torch._dynamo.testing import CompileCounterWithBackend

    fn = _compile_cases()[case]
    q, k = qk(B=2, T=5, HQ=3, HK=1, D=16)
    q.requires_grad_(True)
    k.requires_grad_(True)
    want = fn(q, k)
    gq, gk = torch.autograd.grad((want[0] * 1.5).sum() + (want[1] * 0.5).sum(), (q, k))
    counter = CompileCounterWithBackend("aot_eager")
    torch._dynamo.reset()
    compiled = torch.compile(fn, backend=counter, fullgraph=True)
    got = compiled(q, k)
    assert counter.frame_count == 1
    (graph,) = counter.graphs
    ops = [n.target for n in graph.graph.nodes if n.op == "call_function" and isinstance(n.target, torch._ops.OpOverload)]
    assert ops.count(torch.ops.ropebook.rope.default) == 1  # one launch: q and k together
    for a, b in zip(got, want):
        assert torch.equal(a, b)
    hq, hk = torch.autograd.grad((got[0] * 1.5).sum() + (got[1] * 0.5).sum(), (q, k))
    assert torch.equal(hq, gq) and torch.equal(hk, gk)


def _op_args(mode: str):
    """Arguments of torch.ops.ropebook.rope for each way it reads positions and angles (q, k require grad),
    and the positions of q's tokens for rb.apply_rope (broadcastable to (..., T))."""
    q, k = qk(B=2, T=5, HQ=3, HK=1, D=16)
    q.requires_grad_(True)
    k.requires_grad_(True)
    cache = K.rope_cache(12, max_positions=64, device=DEVICE)
    none = dict(cos=None, sin=None, turns=None, positions=None, offsets=None, cu_seqlens=None, offset=0, max_seqlen=None)
    if mode == "table, offset":
        a = {**none, "cos": cache.cos, "sin": cache.sin, "offset": 9}
        ref = torch.arange(5) + 9
    elif mode == "turns, offsets":
        a = {**none, "turns": cache.turns, "offsets": torch.tensor([3, 40], device=DEVICE)}
        ref = torch.tensor([3, 40]).view(2, 1, 1) + torch.arange(5)
    elif mode == "turns, positions, k None":
        ref = torch.tensor([[5, 1, 9, 2, 7], [0, 30, 31, 32, 60]])
        a = {**none, "turns": cache.turns, "positions": ref.to(DEVICE)}
        ref, k = ref.view(2, 1, 5), None
    elif mode == "packed":
        q = q.detach().transpose(0, 1).flatten(1, 2)[:, :5].requires_grad_(True)  # (H, N, D), features contiguous
        k = k.detach().transpose(0, 1).flatten(1, 2)[:, :5].requires_grad_(True)
        a = {**none, "turns": cache.turns, "cu_seqlens": torch.tensor([0, 3, 5], device=DEVICE, dtype=torch.int32),
             "max_seqlen": 3}
        ref = torch.tensor([0, 1, 2, 0, 1])
    else:  # per-sequence cos/sin, shared by the batch
        c, s = rb.rope_cos_sin(torch.arange(5), 12)
        a = {**none, "cos": c[None].to(DEVICE), "sin": s[None].to(DEVICE)}
        ref = torch.arange(5)
    return (q, k, a["cos"], a["sin"], a["turns"], a["positions"], a["offsets"], a["cu_seqlens"], 6, "half",
            1.0, a["offset"], a["max_seqlen"], False), ref.to(DEVICE)


@pytest.mark.parametrize("mode", ["table, offset", "turns, offsets", "turns, positions, k None", "packed", "cos_sin"])
def test_the_custom_operator_passes_torch_library_opcheck(mode):
    """torch.library.opcheck: the schema matches what the operator does (no mutation, no aliasing), the fake
    implementation gives the real outputs' shapes, strides and dtypes, the autograd registration is used,
    and AOT dispatch traces it; then the outputs against the eager path."""
    args, positions = _op_args(mode)
    torch.library.opcheck(torch.ops.ropebook.rope.default, args)
    q_out, k_out = torch.ops.ropebook.rope.default(*args)
    assert q_out.stride() == args[0].stride()
    assert_close_dtype(q_out.detach(), rb.apply_rope(args[0].detach(), positions, rotary_dim=12))
    if args[1] is None:
        assert k_out.numel() == 0
    else:
        assert_close_dtype(k_out.detach(), rb.apply_rope(args[1].detach(), positions, rotary_dim=12))


def test_a_compiled_decoding_loop_is_not_recompiled_for_each_offset():
    """A decoding loop passes a new int offset at every step: torch.compile makes it symbolic after the
    first change (its automatic dynamic shapes), so the loop runs on at most two graphs, each step exact."""
    from torch._dynamo.testing import CompileCounterWithBackend

    cache = K.rope_cache(16, max_positions=64, device=DEVICE)
    q, k = qk(B=2, T=1, HQ=4, HK=2, D=16, dtype=torch.bfloat16)
    counter = CompileCounterWithBackend("aot_eager")
    torch._dynamo.reset()
    step = torch.compile(lambda q, k, offset: K.rope_qk(q, k, cache, offsets=offset), backend=counter, fullgraph=True)
    compiled = []
    for offset in range(3, 10):
        got, want = step(q, k, offset), K.rope_qk(q, k, cache, offsets=offset)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
        compiled.append(counter.frame_count)
    assert compiled[1] == compiled[-1]  # compiled for the first offset and the second (symbolic), then never
    with pytest.raises(ValueError, match="the table holds 64 positions"):  # the checks run in the graph too
        step(q, k, 64)


def test_a_compiled_call_past_the_tables_end_raises_at_offset_zero_too():
    """Compiled, the int offset's range is checked in the operator's body, and it must be checked at 0 as
    well: T tokens from position 0 read rows 0..T-1 of the table, unmasked, so a table shorter than T
    would be read past its end (garbage, not NaN) instead of raising as the eager call does."""
    cache = K.rope_cache(16, max_positions=4, device=DEVICE)
    q = qk(B=1, T=8, HQ=2, HK=1, D=16)[0]
    with pytest.raises(ValueError, match="the table holds 4 positions, got offsets=0 and 8 tokens"):
        K.rope_qk(q, None, cache, angles="table")  # eager
    torch._dynamo.reset()
    f = torch.compile(lambda q: K.rope_qk(q, None, cache, angles="table")[0], backend="aot_eager", fullgraph=True)
    with pytest.raises(ValueError, match="the table holds 4 positions, got offsets=0 and 8 tokens"):
        f(q)
    short = qk(B=1, T=4, HQ=2, HK=1, D=16)[0]  # the whole table, from 0: allowed, and exact
    assert torch.equal(f(short), K.rope_qk(short, None, cache, angles="table")[0])


def test_compiled_packed_calls_check_a_cpu_cu_seqlens():
    """Compiled, cu_seqlens's values are unknown while tracing: a CPU one is checked in the operator's body
    when the code runs (it used to pass silently, [0, 5, 3] giving a NaN row)."""
    if DEVICE == "cuda":
        pytest.skip("a CUDA cu_seqlens with max_seqlen given is not checked (it would cost a synchronization)")
    cache = K.rope_cache(16)
    q, k = torch.randn(2, 5, 16), torch.randn(1, 5, 16)  # (H, N, D), packed
    torch._dynamo.reset()
    f = torch.compile(lambda q, k, cu: K.rope_qk(q, k, cache, cu_seqlens=cu, max_seqlen=3), backend="aot_eager",
                      fullgraph=True)
    good = torch.tensor([0, 3, 5], dtype=torch.int32)
    for a, b in zip(f(q, k, good), K.rope_qk(q, k, cache, cu_seqlens=good, max_seqlen=3)):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match=r"cu_seqlens must start at 0, be non-decreasing .* got cu_seqlens=\[0, 5, 3\]"):
        f(q, k, torch.tensor([0, 5, 3], dtype=torch.int32))
    with pytest.raises(ValueError, match=r"max_seqlen must be at least the longest packed sequence, 4 tokens"):
        f(q, k, torch.tensor([0, 4, 5], dtype=torch.int32))


def test_compiled_in_place_with_q_as_k_rotates_once():
    """ch-rope-gpu: eager, the same tensor as q and k in place is refused (it would be rotated twice); compiled,
    the pointer comparison cannot be traced, and the functional operator reads the tensor once: rotated once."""
    cache = K.rope_cache(16, device=DEVICE)
    x = torch.randn(1, 2, 5, 16, device=DEVICE)
    z = x.clone()
    with pytest.raises(ValueError, match="inplace=True needs q and k in separate memory"):
        K.rope_qk(z, z, cache, inplace=True)
    torch._dynamo.reset()
    f = torch.compile(lambda x: K.rope_qk(x, x, cache, inplace=True), backend="aot_eager", fullgraph=True)
    y = x.clone()
    f(y)
    assert_close_dtype(y, rb.apply_rope(x))


def test_a_compiled_packed_call_needs_max_seqlen():
    """On any device: finding max_seqlen means reading cu_seqlens, which the tracer cannot (it was Dynamo's
    "Could not guard on data-dependent expression"; now an error that says what to pass)."""
    cache = K.rope_cache(16, device=DEVICE)
    q, k = torch.randn(2, 5, 16, device=DEVICE), torch.randn(1, 5, 16, device=DEVICE)  # (H, N, D), packed
    cu = torch.tensor([0, 3, 5], dtype=torch.int32, device=DEVICE)
    torch._dynamo.reset()
    g = torch.compile(lambda q, k: K.rope_qk(q, k, cache, cu_seqlens=cu), backend="aot_eager", fullgraph=True)
    with pytest.raises(Exception, match=r"under torch.compile, pass max_seqlen with cu_seqlens"):
        g(q, k)


def test_a_max_seqlen_shorter_than_a_cpu_sequence_is_an_error():
    """On the CPU the values are read anyway: a too small max_seqlen is an error there (it gave NaN rows, and
    out of place with partial rotary, unwritten features). On CUDA it stays the NaN guard (no synchronization)."""
    if DEVICE == "cuda":
        pytest.skip("a CUDA cu_seqlens with max_seqlen given is not checked (it would cost a synchronization)")
    q = torch.randn(2, 8, 16)
    with pytest.raises(ValueError, match=r"rope_qk: max_seqlen must be at least the longest packed sequence, 5 tokens "
                                         r"\(from cu_seqlens\), got max_seqlen=2"):
        K.rope_qk(q, None, K.rope_cache(8), cu_seqlens=torch.tensor([0, 3, 8], dtype=torch.int32), max_seqlen=2)


def test_a_compiled_function_with_dynamic_shapes_serves_every_length():
    """dynamic=True: one graph for prompts of any length; the checks become guards on symbolic sizes."""
    from torch._dynamo.testing import CompileCounterWithBackend

    cache = K.rope_cache(16, device=DEVICE)
    counter = CompileCounterWithBackend("aot_eager")
    torch._dynamo.reset()
    f = torch.compile(lambda q, k: K.rope_qk(q, k, cache, angles="kernel"), backend=counter, fullgraph=True,
                      dynamic=True)
    compiled = []
    for T in (5, 7, 9):  # none equal to another size: torch would guard on the equality (duck sizing)
        q, k = qk(B=2, T=T, HQ=3, HK=1, D=16)
        got, want = f(q, k), K.rope_qk(q, k, cache, angles="kernel")
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
        compiled.append(counter.frame_count)
    assert compiled[0] >= 1 and compiled[-1] == compiled[0]  # the first length compiled; no other did


@pytest.mark.parametrize("form", ["half", "cohere"])
def test_hf_drop_in_asserts_the_halves_inside_a_compiled_graph(form):
    """Under torch.compile the halves check cannot branch in Python: it is an assertion in the graph, and
    cos or sin whose halves differ still fail, when the compiled code runs. So for Cohere's drop-in, whose
    cos holds each value twice in a row and is read at every other feature (a strided view in the graph)."""
    q, k = qk(B=1, T=3, HQ=2, HK=1, D=8)
    c, s = rb.rope_cos_sin(torch.arange(3), 8)
    if form == "half":
        cos, sin = torch.cat((c, c), -1).to(DEVICE), torch.cat((s, s), -1).to(DEVICE)
        fn, layout = K.hf_apply_rotary_pos_emb, "half"
    else:
        cos, sin = c.repeat_interleave(2, -1).to(DEVICE), s.repeat_interleave(2, -1).to(DEVICE)
        fn, layout = K.hf_apply_rotary_pos_emb_cohere, "interleaved"
    torch._dynamo.reset()
    f = torch.compile(fn, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(f(q, k, cos, sin)[0], rb.apply_rope(q, layout=layout))
    bad = cos.clone()
    bad[..., -1] += 0.5
    with pytest.raises(RuntimeError, match="must hold each value twice"):
        f(q, k, bad, sin)
        if DEVICE == "cuda":
            torch.cuda.synchronize()


@pytest.mark.parametrize("fn", ["hf_apply_rotary_pos_emb", "hf_apply_rotary_pos_emb_cohere"])
def test_hf_drop_in_compiles_once_for_every_rotary_width_under_dynamic_shapes(fn):
    """torch.compile(dynamic=True): one graph serves every head size. The compiled check's message once held
    r/2 read from cos's shape, which made the compiler specialize on it: a recompilation per width."""
    from torch._dynamo.testing import CompileCounterWithBackend

    torch._dynamo.reset()
    counter = CompileCounterWithBackend("aot_eager")
    f = torch.compile(getattr(K, fn), backend=counter, dynamic=True, fullgraph=True)
    for D in (8, 16, 32):
        q, k = qk(B=1, T=5, HQ=2, HK=1, D=D)
        c, s = rb.rope_cos_sin(torch.arange(5), D)
        cos, sin = ((torch.cat((x, x), -1) if fn == "hf_apply_rotary_pos_emb" else x.repeat_interleave(2, -1)).to(DEVICE)
                    for x in (c, s))
        torch.testing.assert_close(f(q, k, cos, sin)[0], getattr(K, fn)(q, k, cos, sin)[0], rtol=0, atol=0)
    assert counter.frame_count == 1


def test_patch_hf_in_a_tiny_llama_under_torch_compile():
    """The real compiler (Inductor) on a whole patched Llama: one graph (fullgraph=True), a ropebook::rope
    node per layer, the logits of the unpatched eager model; and training through the operator's backward
    (aot_eager) gives eager's gradients."""
    import transformers.models.llama.modeling_llama as llama
    from torch._dynamo.testing import CompileCounterWithBackend

    model = tiny_llama()
    ids = torch.randint(0, 97, (2, 9), generator=torch.Generator().manual_seed(1)).to(DEVICE)
    with torch.no_grad():
        want = model(ids, use_cache=False).logits
    model(ids, labels=ids, use_cache=False).loss.backward()
    want_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    counter = CompileCounterWithBackend("inductor")
    torch._dynamo.reset()
    with K.patch_hf(llama):
        with torch.no_grad():
            got = torch.compile(lambda ids: model(ids, use_cache=False).logits, backend=counter, fullgraph=True)(ids)
        torch._dynamo.reset()
        loss = torch.compile(lambda ids: model(ids, labels=ids, use_cache=False).loss, backend="aot_eager",
                             fullgraph=True)(ids)
        loss.backward()
    assert counter.frame_count == 1
    ops = [n.target for n in counter.graphs[0].graph.nodes if n.op == "call_function"]
    assert ops.count(torch.ops.ropebook.rope.default) == 2  # 2 layers, q and k in one launch each
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    for g, p in zip(want_grads, model.parameters()):
        torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-6)


def test_the_operators_remembered_plans_launch_what_a_first_call_does():
    """The operator's body remembers a plan per signature of its arguments, as eager calls do: with every
    mode's plan in the cache at once, each call gives exactly what it gives from an empty cache."""
    from ropebook.kernels import op

    modes = ["table, offset", "turns, offsets", "turns, positions, k None", "packed", "cos_sin"]
    calls = [_op_args(mode)[0] for mode in modes]
    with torch.no_grad():
        cold = []
        for args in calls:
            op._plans.clear()
            cold.append(torch.ops.ropebook.rope.default(*args))
        assert len(op._plans) == 1
        for _ in range(2):
            for args, want in zip(calls, cold):
                got = torch.ops.ropebook.rope.default(*args)
                assert all(torch.equal(a, b) for a, b in zip(got, want))
    assert len(op._plans) == len(modes)


def test_the_operator_skips_the_dispatcher_only_for_plain_tensors():
    """Without a gradient to record, the operator's autograd kernel calls its body directly for plain tensors;
    a dispatch mode, or fake tensors, must still see the operator (torch.compile's tracing relies on it)."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.utils._python_dispatch import TorchDispatchMode

    from ropebook.kernels import op

    class Seen(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops.append(func)
            return func(*args, **(kwargs or {}))

    args, _ = _op_args("turns, offsets")
    args = (args[0].detach(), args[1].detach(), *args[2:])
    with torch.no_grad(), mock.patch.object(op, "rope", wraps=op.rope) as body:
        want = torch.ops.ropebook.rope.default(*args)
        assert body.call_count == 1  # plain tensors: straight to the body
        with Seen() as seen:
            got = torch.ops.ropebook.rope.default(*args)
        assert seen.ops == [torch.ops.ropebook.rope.default]  # (the mode runs the registered body, not the mock)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
        with FakeTensorMode() as mode:
            fake = [mode.from_tensor(a) if isinstance(a, torch.Tensor) else a for a in args]
            out = torch.ops.ropebook.rope.default(*fake)
        assert body.call_count == 1 and out[0].shape == want[0].shape  # the fake implementation, not the body


@pytest.mark.skipif(DEVICE != "cuda", reason="needs a CUDA device")
def test_a_compiled_decoding_step_replays_in_a_cuda_graph():
    """mode="reduce-overhead": Inductor's code, with the operator inside, captured in a CUDA graph and
    replayed at each step (new offsets in the same buffer each time); every step as the eager call."""
    cache = K.rope_cache(128, max_positions=4096, device=DEVICE)
    q, k = qk(B=64, T=1, HQ=32, HK=8, D=128, dtype=torch.bfloat16)
    offsets = torch.randint(0, 4000, (64,), generator=torch.Generator().manual_seed(3)).to(DEVICE, torch.int32)
    torch._dynamo.reset()
    step = torch.compile(lambda q, k, o: K.rope_qk(q, k, cache, offsets=o), mode="reduce-overhead", fullgraph=True)
    for i in range(5):
        o = offsets + i
        got = [t.clone() for t in step(q, k, o)]  # a replay's outputs live in the graph's memory: copy them out
        want = K.rope_qk(q, k, cache, offsets=o)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


def test_torch_export_keeps_the_operator_in_the_exported_program():
    """torch.export traces as torch.compile does: the exported program holds one ropebook::rope node and
    runs as the eager module does (a program loaded elsewhere needs ropebook.kernels imported, which registers it)."""

    class Rotate(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.cache = K.rope_cache(16, max_positions=64, device=DEVICE)

        def forward(self, q, k, offsets):
            return K.rope_qk(q, k, self.cache, offsets=offsets)

    q, k = qk(B=2, T=5, HQ=3, HK=1, D=16)
    offsets = torch.tensor([3, 9], device=DEVICE)
    module = Rotate()
    program = torch.export.export(module, (q, k, offsets))
    targets = [n.target for n in program.graph.nodes if n.op == "call_function"]
    assert targets.count(torch.ops.ropebook.rope.default) == 1
    got, want = program.module()(q, k, offsets), module(q, k, offsets)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


# ----------------------------------------------------------------------------- found by fuzzing the public API


def test_self_overlap_verdict_against_every_element():
    """``_overlaps_itself`` against the set of memory offsets: it never passes a layout that reaches one
    location twice; it refuses a layout that does not only when its strides are not nested."""
    from ropebook.kernels._aliasing import _overlaps_itself

    rng = random.Random(1)
    refused_distinct = passed = 0
    for _ in range(3000):
        ndim = rng.randint(1, 4)
        shape, stride = [rng.randint(1, 4) for _ in range(ndim)], [rng.randint(0, 12) for _ in range(ndim)]
        distinct = len(_element_offsets(shape, stride, 0)) == math.prod(shape)
        verdict = _overlaps_itself(tuple(shape), tuple(stride))
        if not distinct:
            assert verdict, (shape, stride)
        elif verdict:
            refused_distinct += 1
        else:
            passed += 1
    assert passed > 500 and refused_distinct < passed / 4, (passed, refused_distinct)


def test_in_place_refuses_a_q_that_overlaps_itself():
    base = torch.randn(64, device=DEVICE)
    q = base.as_strided((1, 1, 4, 8), (32, 32, 2, 1))  # token t covers features 2t … 2t + 7: rows overlap
    with pytest.raises(ValueError, match=r"rope_qk: inplace=True needs each element of q in its own memory, "
                                         r"got q.shape=\(1, 1, 4, 8\), q.stride\(\)=\(32, 32, 2, 1\)"):
        K.rope_qk(q, None, K.rope_cache(8), inplace=True)
    cos, sin = rb.rope_cos_sin(torch.arange(4, device=DEVICE), 8)
    with pytest.raises(ValueError, match="rope_qk_cos_sin: inplace=True needs each element of q"):
        K.rope_qk_cos_sin(q, None, cos, sin, inplace=True)
    out, _ = K.rope_qk(q, None, K.rope_cache(8))  # out of place it is only read
    torch.testing.assert_close(out, rb.apply_rope(q.clone()))


@pytest.mark.parametrize("repeat", [False, True])
def test_an_in_place_write_invalidates_what_autograd_saved(repeat):
    """A graph that saved q for its backward must refuse to run after q is rotated in place, as after
    ``q.mul_(2)``; it computed gradients from the rotated values before the version counter was bumped."""
    cache = K.rope_cache(8)
    cos, sin = rb.rope_cos_sin(torch.arange(3, device=DEVICE), 8)
    for call in (lambda q: K.rope_qk(q, None, cache, inplace=True), lambda q: K.rope_qk_cos_sin(q, None, cos, sin, inplace=True)):
        if repeat:
            call(torch.randn(1, 1, 3, 8, device=DEVICE))  # the second call below goes through the plan
        w = torch.randn(1, 1, 3, 8, device=DEVICE, requires_grad=True)
        q = torch.randn(1, 1, 3, 8, device=DEVICE)
        loss = (w * q).sum()  # saves q
        call(q)
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            loss.backward()


def test_the_backward_is_itself_differentiable():
    """create_graph=True (a gradient penalty, a Hessian-vector product): the backward records the rotation by
    −θ, whose own derivative is the rotation by +θ; gradgradcheck on every way in."""
    # small: gradgradcheck launches the kernel twice per input element, through the interpreter in CI
    q = torch.randn(2, 1, 2, 4, dtype=torch.float64, device=DEVICE, requires_grad=True)
    k = torch.randn(2, 1, 2, 4, dtype=torch.float64, device=DEVICE, requires_grad=True)
    cache = K.rope_cache(4)
    cos, sin = rb.rope_cos_sin(torch.arange(2, device=DEVICE), 4)
    turns = cache.turns.to(DEVICE)
    ways = {
        "rope_qk": lambda q, k: K.rope_qk(q, k, cache, offsets=torch.tensor([3, 7], device=DEVICE)),
        "rope_qk_cos_sin": lambda q, k: K.rope_qk_cos_sin(q, k, cos.double(), sin.double()),
        "apply_rope triton": lambda q, k: (rb.apply_rope(q, offset=5, backend="triton"), k * 1),
        "operator": lambda q, k: torch.ops.ropebook.rope.default(q, k, None, None, turns, None, None, None, 2, "half",
                                                                 1.0, 2, None, False),
    }
    for name, f in ways.items():
        assert torch.autograd.gradgradcheck(f, (q, k), fast_mode=True), name  # random projections: 1/10 the launches
    g, = torch.autograd.grad((rb.apply_rope(q, backend="triton") ** 3).sum(), q, create_graph=True)
    g_ref, = torch.autograd.grad((rb.apply_rope(q, backend="torch") ** 3).sum(), q, create_graph=True)
    assert g.requires_grad
    torch.testing.assert_close(torch.autograd.grad((g ** 2).sum(), q)[0], torch.autograd.grad((g_ref ** 2).sum(), q)[0])


def test_in_place_on_views_that_record_a_graph():
    """In place on a transposed (B, T, H, D) projection or a fused qkv's slices, with a graph: the result and
    the gradients of the torch path (autograd records the write on the views)."""
    P = torch.randn(2, 3, 3 * 16, device=DEVICE, requires_grad=True)  # (B, T, 3·H·D), H = 2, D = 8
    weights = torch.arange(48.0, device=DEVICE)

    def split(qkv):
        return [qkv[..., i * 16:(i + 1) * 16].unflatten(-1, (2, 8)).transpose(1, 2) for i in range(3)]

    qkv = P * 1
    q, k, _ = split(qkv)
    q_out, k_out = K.rope_qk(q, k, K.rope_cache(8), offsets=1, inplace=True)
    assert q_out is q and k_out is k
    ((qkv ** 2) * weights).sum().backward()
    grad, P.grad = P.grad, None
    ref = P * 1
    q2, k2, v2 = split(ref)
    rotated = torch.cat([rb.apply_rope(x, offset=1).transpose(1, 2).flatten(-2) for x in (q2, k2)] + [ref[..., 32:]], -1)
    ((rotated ** 2) * weights).sum().backward()
    torch.testing.assert_close(qkv, rotated)
    torch.testing.assert_close(grad, P.grad)


def test_an_empty_q_still_copies_ks_unrotated_features():
    """Hq = 0 with partial rotary, out of place: k's features past the rotary ones are copied (an empty tensor
    and its output both have data_ptr 0, which read as 'in place')."""
    q, k = torch.randn(1, 0, 3, 16, device=DEVICE), torch.randn(1, 2, 3, 16, device=DEVICE)
    _, k_out = K.rope_qk(q, k, K.rope_cache(8))
    torch.testing.assert_close(k_out, rb.apply_rope(k, rotary_dim=8))
    cos, sin = rb.rope_cos_sin(torch.arange(3, device=DEVICE), 8)
    _, k_out = K.rope_qk_cos_sin(q, k, cos, sin)
    torch.testing.assert_close(k_out, rb.apply_rope(k, rotary_dim=8))


@pytest.mark.parametrize("args, message", [
    ((8, torch.zeros(2, dtype=torch.int64), None, None, 1.0), r"turns must be an int64 tensor of shape \(4,\).*turns.shape=\(2,\)"),
    ((8, torch.zeros(4), None, None, 1.0), r"turns must be an int64 tensor.*turns.dtype=torch.float32"),
    ((7, torch.zeros(3, dtype=torch.int64), None, None, 1.0), r"rotary_dim must be a positive even int, got rotary_dim=7"),
    ((8, torch.zeros(4, dtype=torch.int64), torch.zeros(5, 3), torch.zeros(5, 3), 1.0), r"cos must be a floating-point \(P, 4\) table.*cos.shape=\(5, 3\)"),
    ((8, torch.zeros(4, dtype=torch.int64), torch.zeros(5, 4), None, 1.0), r"cos and sin must both be tables or both None"),
    ((8, torch.zeros(4, dtype=torch.int64), torch.zeros(5, 4), torch.zeros(6, 4), 1.0), r"sin must be .*shaped as cos, got sin.shape=\(6, 4\)"),
    ((8, torch.zeros(4, dtype=torch.int64), None, None, float("nan")), r"attention_factor must be a positive finite number"),
])
def test_a_hand_built_cache_is_checked(args, message):
    """RopeCache is public: a cache built by hand with a short ``turns`` or a narrow table made the kernel read
    past them (wrong values, no error)."""
    with pytest.raises(ValueError, match="RopeCache: " + message):
        K.RopeCache(*args)


def test_packed_and_empty_inputs_get_clear_answers():
    with pytest.raises(ValueError, match=r"rope_qk: cu_seqlens must be an integer tensor of shape \(B \+ 1,\), got type\(cu_seqlens\)=list"):
        K.rope_qk(torch.randn(2, 5, 8, device=DEVICE), None, K.rope_cache(8), cu_seqlens=[0, 2, 5], max_seqlen=3)
    for shape in [(2, 0, 8), (0, 3, 8), (2, 0, 3, 8)]:  # what backend="torch" returns: an empty tensor
        x = torch.randn(shape, device=DEVICE)
        assert rb.apply_rope(x, backend="triton").shape == x.shape == rb.apply_rope(x, backend="torch").shape


def test_shared_positions_and_a_one_element_offset_broadcast_as_apply_rope_does():
    """rb.apply_rope takes positions that broadcast and an offset tensor of one element; rope_qk refused
    positions (T,) or (1, T) for B > 1, a 0-dim offsets (cache_position[0]) and numpy integers."""
    q, k = qk(B=3, T=4, HQ=2, HK=1, D=16)
    cache = K.rope_cache(16, max_positions=32, device=DEVICE)
    m = torch.tensor([5, 6, 9, 20], device=DEVICE)
    want = rb.apply_rope(q, m), rb.apply_rope(k, m)
    for angles in ["kernel", "table"]:
        for positions in [m, m[None], m.int(), m[None].expand(3, 4)]:
            for _ in range(2):  # a first call, then a repeat through its plan
                got = K.rope_qk(q, k, cache, positions=positions, angles=angles)
                assert_close_dtype(got[0], want[0])
                assert_close_dtype(got[1], want[1])
        q2, k2 = q.clone(), k.clone()
        K.rope_qk(q2, k2, cache, positions=m, angles=angles, inplace=True)
        assert_close_dtype(q2, want[0])
        assert_close_dtype(k2, want[1])
    want = rb.apply_rope(q, offset=7), rb.apply_rope(k, offset=7)
    seven = torch.tensor(7, device=DEVICE)
    for offsets in [seven, seven[None], seven.int(), np.int64(7), np.int32(7)]:
        for _ in range(2):
            got = K.rope_qk(q, k, cache, offsets=offsets)
            assert_close_dtype(got[0], want[0])
            assert_close_dtype(got[1], want[1])
    qg = q.detach().requires_grad_()  # the graph path: the gradient is the rotation by -θ at the shared positions
    K.rope_qk(qg, None, cache, positions=m)[0].sum().backward()
    qt = q.detach().requires_grad_()
    rb.apply_rope(qt, m).sum().backward()
    assert_close_dtype(qg.grad, qt.grad)
    qp, cu = torch.randn(2, 9, 16, device=DEVICE), torch.tensor([0, 4, 9], dtype=torch.int32, device=DEVICE)
    ref, _ = K.rope_qk(qp, None, cache, cu_seqlens=cu, max_seqlen=5, offsets=torch.tensor([7, 7], device=DEVICE))
    torch.testing.assert_close(K.rope_qk(qp, None, cache, cu_seqlens=cu, max_seqlen=np.int64(5), offsets=seven)[0], ref)
    assert K.rope_cache(16, max_positions=np.int64(8)).cos.shape == (8, 8)
    with pytest.raises(ValueError, match=r"positions must be an integer tensor of shape \(3, 4\), or \(4,\) or \(1, 4\) "
                                         r"for every sequence, got positions.shape=\(2, 4\)"):
        K.rope_qk(q, k, cache, positions=m[None].expand(2, 4))  # (2, T) does not broadcast to (3, T)
    for shape in [(3, 1), (1, 1), (1,)]:  # broadcastable to (B, T), but one position for every token: refused
        with pytest.raises(ValueError, match=rf"got positions.shape={re.escape(str(shape))}"):
            K.rope_qk(q, k, cache, positions=torch.full(shape, 5, device=DEVICE))
    with pytest.raises(ValueError, match=r"pass positions or offsets, not both, got positions and offsets=tensor\(7\)"):
        K.rope_qk(q, k, cache, positions=m, offsets=seven)  # (the offsets as given, not as expanded)
    with pytest.raises(ValueError, match=r"offsets must be an integer tensor of shape \(3,\), got offsets.shape=\(2,\)"):
        K.rope_qk(q, k, cache, offsets=seven.expand(2))
    with pytest.raises(ValueError, match=r"offsets must be an integer tensor of shape \(3,\), got offsets.shape=\(\), offsets.dtype=torch.float32"):
        K.rope_qk(q, k, cache, offsets=torch.tensor(7.0, device=DEVICE))
    with pytest.raises(ValueError, match=r"offsets.dtype=torch.complex64"):  # complex passed as "integer" before
        K.rope_qk(q, k, cache, offsets=torch.zeros(3, dtype=torch.complex64, device=DEVICE))


def test_a_packed_offset_is_checked_against_the_sequences_when_their_lengths_are_known():
    """With a table and an int offset, a generous max_seqlen was refused although every sequence fits: the
    range is now checked against the lengths read from a CPU cu_seqlens; on the device, where they are
    not read, against max_seqlen, which the message names."""
    cache = K.rope_cache(16, max_positions=12)
    qp, cu = torch.randn(2, 9, 16), torch.tensor([0, 4, 9], dtype=torch.int32)
    want = torch.cat([rb.apply_rope(qp[:, :4], offset=7), rb.apply_rope(qp[:, 4:], offset=7)], 1)
    for _ in range(2):  # a first call, then a repeat through its plan
        with mock.patch.dict(os.environ, TRITON_INTERPRET="1"):
            got, _ = K.rope_qk(qp, None, cache, cu_seqlens=cu, max_seqlen=10, offsets=7, angles="table")
        assert_close_dtype(got, want)
    with pytest.raises(ValueError, match=r"the table holds 12 positions, got offsets=8 and 5 tokens"):
        K.rope_qk(qp, None, cache, cu_seqlens=cu, max_seqlen=10, offsets=8, angles="table")
    torch._dynamo.reset()  # compiled, the operator's body makes the same check when the code runs
    f = torch.compile(lambda q, cu, off: K.rope_qk(q, None, cache, cu_seqlens=cu, max_seqlen=10, offsets=off, angles="table"),
                      backend="aot_eager", fullgraph=True)
    with mock.patch.dict(os.environ, TRITON_INTERPRET="1"):
        assert_close_dtype(f(qp, cu, 7)[0], want)
        with pytest.raises(ValueError, match=r"the table holds 12 positions, got offsets=8 and 5 tokens"):
            f(qp, cu, 8)
    meta = K.rope_cache(16, max_positions=12, device="meta")
    with pytest.raises(ValueError, match=r"the table holds 12 positions, got offsets=7 and max_seqlen=10 \(cu_seqlens is on "
                                         r"the device and not read"):
        K.rope_qk(qp.to("meta"), None, meta, cu_seqlens=cu.to("meta"), max_seqlen=10, offsets=7, angles="table")


def test_meta_tensors_come_back_as_meta_tensors_of_the_right_shape():
    """A model built on torch.device("meta") (to count shapes, or before loading weights) runs its forward
    on tensors without data: the kernel launches nothing; the Triton interpreter failed copying them."""
    q, k = torch.empty(2, 4, 3, 16, device="meta"), torch.empty(2, 2, 3, 16, device="meta")
    cache = K.rope_cache(16, max_positions=8, device="meta")
    for angles in ["kernel", "table"]:
        qr, kr = K.rope_qk(q, k, cache, angles=angles, offsets=2)
        assert qr.is_meta and kr.is_meta and qr.shape == q.shape and kr.shape == k.shape
    assert K.rope_qk(q, k, cache, inplace=True)[0] is q
    c, s = torch.empty(3, 8, device="meta"), torch.empty(3, 8, device="meta")
    assert K.rope_qk_cos_sin(q, k, c, s)[1].shape == k.shape
    c, s = torch.empty(3, 16, device="meta"), torch.empty(3, 16, device="meta")  # Hugging Face's (T, D): no values to compare
    assert K.hf_apply_rotary_pos_emb(q, k, c, s)[0].is_meta
    qg = torch.empty(2, 4, 3, 16, device="meta", requires_grad=True)
    qr, _ = K.rope_qk(qg, None, cache)
    qr.sum().backward()
    assert qg.grad.is_meta and qg.grad.shape == q.shape
    qp, cu = torch.empty(4, 9, 16, device="meta"), torch.empty(3, dtype=torch.int32, device="meta")
    assert K.rope_qk(qp, None, cache, cu_seqlens=cu, max_seqlen=5)[0].shape == qp.shape
    with pytest.raises(ValueError, match=r"on the meta device, pass max_seqlen with cu_seqlens"):
        K.rope_qk(qp, None, cache, cu_seqlens=cu)


def test_cos_sin_message_for_one_sequence():
    q = torch.randn(1, 2, 3, 16, device=DEVICE)
    c, s = rb.rope_cos_sin(torch.arange(2, device=DEVICE), 16)
    with pytest.raises(ValueError, match=r"cos must be a float tensor of shape \(3, r/2\) or \(1, 3, r/2\) with"):  # was "(1 or 1, 3, r/2)"
        K.rope_qk_cos_sin(q, None, c, s)


def test_shared_positions_for_one_sequence():
    q = torch.randn(1, 2, 4, 16, device=DEVICE)
    m = torch.tensor([3, 1, 4, 1], device=DEVICE)
    for positions in [m, m[None]]:
        assert_close_dtype(K.rope_qk(q, None, K.rope_cache(16), positions=positions)[0], rb.apply_rope(q, m))
