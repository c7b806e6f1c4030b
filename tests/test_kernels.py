"""The fused Triton kernel (ropebook.kernels) against rb.apply_rope's torch path.

Without CUDA the kernel runs on the CPU through the Triton interpreter: the
autouse fixture sets TRITON_INTERPRET=1 for every test of this module (the
kernel module reads it at launch, so import order does not matter). With CUDA
the same tests run natively on the GPU. The GPU benchmark's tests are in
test_kernel_bench.py.
"""

import itertools
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

import ropebook as rb  # noqa: E402
from kernel_cases import DEVICE, EPS, assert_close_dtype, interpret_on_cpu, qk  # noqa: E402
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
    cache = K.rope_cache(16, max_position=16, device=DEVICE)
    qr, kr = K.rope_qk(q, k, cache, layout=layout, offsets=3, angles=_source(angles))
    assert qr.stride() == q.stride() and kr.stride() == k.stride()  # the output keeps the input's layout
    assert_close_dtype(qr, rb.apply_rope(q, layout=layout, offset=3))
    assert_close_dtype(kr, rb.apply_rope(k, layout=layout, offset=3))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("angles", ANGLES)
def test_many_tiles_every_element_written(layout, angles):
    """Llama-sized heads over several token tiles; outputs start as NaN, so an unwritten element fails."""
    q, k = qk(B=1, T=19, HQ=32, HK=8, D=128, dtype=torch.bfloat16)
    cache = K.rope_cache(128, max_position=64, device=DEVICE)
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
    cache = K.rope_cache(16, max_position=32, device=DEVICE)
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
    cache = K.rope_cache(r, max_position=8, device=DEVICE)
    qr, kr = K.rope_qk(q, k, cache, layout=layout, inplace=inplace, angles=_source(angles))
    assert (qr.data_ptr() == q.data_ptr()) == inplace
    assert_close_dtype(qr, want_q)
    assert_close_dtype(kr, want_k)
    if inplace:  # rotated in their own storage, q and k alike
        assert_close_dtype(q, want_q)
        assert_close_dtype(k, want_k)


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
    cache = K.rope_cache(r, max_position=16, device=DEVICE)
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
    qr, kr = K.rope_qk(q, k, K.rope_cache(16, max_position=64, device=DEVICE), offsets=offsets, angles=_source(angles))
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
    cache = K.rope_cache(16, max_position=16, device=DEVICE)
    qr, kr = K.rope_qk(q, k, cache, cu_seqlens=cu, max_seqlen=4, offsets=offsets, layout=layout, angles=_source(angles))
    for b, (start, n) in enumerate(zip([0, 3, 4], lengths)):
        for x, y in ((q, qr), (k, kr)):
            want = rb.apply_rope(x[:, start:start + n], layout=layout, offset=int(offsets[b]))
            assert_close_dtype(y[:, start:start + n], want)


@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("config", [(1, 4, 2), (2, 2, 1), (1, 4, 2, True), (4, 1, 1, True)])
def test_packed_tokens_past_a_too_small_max_seqlen_come_out_nan(monkeypatch, inplace, config):
    """No program is launched for tokens past max_seqlen, and on CUDA checking it would cost a device sync:
    the program of the last token tile writes NaN over them, in every head of q and k, in place or not. (On
    the CPU the launcher compares max_seqlen with cu_seqlens first; that comparison is switched off here.)"""
    from ropebook.kernels import autograd, op, rope_triton

    monkeypatch.setattr(rope_triton, "default_config", lambda T, H, table: config)
    monkeypatch.setattr(autograd, "_check_cu_seqlens", lambda fn, cu, n, max_seqlen=None: op.check_cu_seqlens(fn, cu, n))
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
    cache = K.rope_cache(16, max_position=1_000_000, device=DEVICE)
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
    value and so its own error
    are small), then cosf/sinf add up to 2 ulps of their value (CUDA's documented bound; numpy's under
    the interpreter is tighter): 4 (2.5 measured here). The quadrant reduction forms only the rest in
    [-π/4, π/4] that way (≤ 0.7 once weighted by the other function's value) and its polynomials are
    within 0.6 of cos and sin on that interval (checked by a dense scan when they were chosen): 1.5."""
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
    "no table": (lambda q, k, c: K.rope_qk(q, k, K.rope_cache(16), angles="table"), ["max_position"]),
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

    monkeypatch.setattr(autograd, "_check_cu_seqlens", lambda fn, cu_seqlens, n_tokens, max_seqlen=None: 6)
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
        fn(q, k, K.rope_cache(16, max_position=4, device=DEVICE))
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
        K.rope_qk(q, k, K.rope_cache(16, max_position=64, device=DEVICE), offsets=torch.tensor([3, 9], device=DEVICE),
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
    cache = K.rope_cache(16, max_position=64, device=DEVICE)
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
    cache, cache12 = K.rope_cache(16, max_position=64, device=DEVICE), K.rope_cache(12, max_position=64, device=DEVICE)
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
    cache = K.rope_cache(16, max_position=64, device=DEVICE)
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
    cache = K.rope_cache(16, max_position=64, device=DEVICE)
    table = weakref.ref(cache.cos)
    for _ in range(2):
        K.rope_qk(q, k, cache, offsets=5, angles="table")
    del cache
    gc.collect()
    assert table() is None
    other = K.rope_cache(16, base=500.0, max_position=64, device=DEVICE)
    for _ in range(2):
        qr, _ = K.rope_qk(q, k, other, offsets=5, angles="table")
        assert_close_dtype(qr, rb.apply_rope(q, offset=5, base=500.0))


def test_a_cache_on_another_device_than_q_is_copied_with_a_warning():
    """A cache left on the CPU for q on a GPU works, but copies its tables on every call: say so, and
    remember no plan for it. (q on the meta device stands in for another device; the launch is recorded.)"""
    from ropebook.kernels import autograd, rope_triton

    q = torch.empty(2, 4, 1, 16, device="meta")
    for angles, nbytes in (("table", 2 * 64 * 8 * 4), ("kernel", 8 * 8)):
        cache = K.rope_cache(16, max_position=64)
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
    cache = K.rope_cache(16, max_position=32, device=DEVICE)
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
    cache = K.rope_cache(16, max_position=8, device=DEVICE)
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
    cache = K.rope_cache(16, max_position=64, device=DEVICE)
    for T in (1, 16, 17):
        K.rope_qk(*qk(B=1, T=T), cache)
    assert seen == [True, True, False]


# ----------------------------------------------------------------------------- inside a Hugging Face model


def _tiny_llama(dtype=torch.float32):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=97, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    return transformers.LlamaForCausalLM(cfg).to(DEVICE, dtype).eval()


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

    model = _tiny_llama()
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
    model = _tiny_llama()
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
        qr, kr = K.rope_qk(q, k, K.rope_cache(16, max_position=64, device=DEVICE), positions=positions, layout="interleaved")
        (qr.float().sum() + kr.float().sum()).backward()

    def packed_fp32():
        q, k = torch.randn(4, 10, 24, device=DEVICE), torch.randn(2, 10, 24, device=DEVICE)  # (H, N, D): 16 of 24 rotate
        cu = torch.tensor([0, 3, 10], dtype=torch.int32, device=DEVICE)
        K.rope_qk(q, k, K.rope_cache(16, device=DEVICE), cu_seqlens=cu, max_seqlen=7)

    decode = qk(B=4, T=1, HQ=8, HK=2, D=128, dtype=torch.bfloat16)
    offsets = torch.tensor([3, 70, 500, 9], dtype=torch.int32, device=DEVICE)
    table = K.rope_cache(128, max_position=1024, device=DEVICE)
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


def test_benchmark_shapes_compile_to_wide_loads_and_quadrant_to_less_code():
    """The benchmark's decode and 1k prefill, compiled for an H100: q and k move in 128-bit loads, and
    SINCOS="quadrant" gives fewer instructions and branches than the math library (ch-rope-gpu says so)."""
    from ropebook.kernels import rope_triton

    aot = _aot()
    compile_launches, sass_stats = aot.compile_launches, aot.sass_stats
    cache = K.rope_cache(128, max_position=1024)
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
        for st in (*stats.values(), sass_stats(table)):
            assert st["widest_load_bits"] == 128, st
        library, quadrant = stats["libdevice"], stats["quadrant"]
        assert quadrant["instructions"] < 0.8 * library["instructions"], (library, quadrant)
        assert quadrant["branches"] < library["branches"], (library, quadrant)
        if isinstance(off, torch.Tensor):  # decoding: the table's row needs the offset, and the compiled code waits for it first
            assert sass_stats(table)["loads_before_first_wait"] == 1
            assert quadrant["loads_before_first_wait"] >= 3


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
    cache = K.rope_cache(16, max_position=64, device=DEVICE)
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
    cache = K.rope_cache(12, max_position=64, device=DEVICE)
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

    cache = K.rope_cache(16, max_position=64, device=DEVICE)
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
    cache = K.rope_cache(16, max_position=4, device=DEVICE)
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

    model = _tiny_llama()
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
    cache = K.rope_cache(128, max_position=4096, device=DEVICE)
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
            self.cache = K.rope_cache(16, max_position=64, device=DEVICE)

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
    cache = K.rope_cache(16, max_position=32, device=DEVICE)
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
    assert K.rope_cache(16, max_position=np.int64(8)).cos.shape == (8, 8)
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
    cache = K.rope_cache(16, max_position=12)
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
    meta = K.rope_cache(16, max_position=12, device="meta")
    with pytest.raises(ValueError, match=r"the table holds 12 positions, got offsets=7 and max_seqlen=10 \(cu_seqlens is on "
                                         r"the device and not read"):
        K.rope_qk(qp.to("meta"), None, meta, cu_seqlens=cu.to("meta"), max_seqlen=10, offsets=7, angles="table")


def test_meta_tensors_come_back_as_meta_tensors_of_the_right_shape():
    """A model built on torch.device("meta") (to count shapes, or before loading weights) runs its forward
    on tensors without data: the kernel launches nothing; the Triton interpreter failed copying them."""
    q, k = torch.empty(2, 4, 3, 16, device="meta"), torch.empty(2, 2, 3, 16, device="meta")
    cache = K.rope_cache(16, max_position=8, device="meta")
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
